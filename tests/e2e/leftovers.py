"""Finding what a pytest process under test left running: every process that inherited our tag in
its environment (its engines, their workers, resource trackers), wherever they were reparented to."""

import time

import psutil

TAG = "SPECDECODE_CLEANUP_TEST"


def tagged_processes(tag: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(TAG) == tag and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def describe(processes: list[psutil.Process]) -> list[str]:
    """Names for an assertion message: what was left, not just how many."""
    names = []
    for process in processes:
        try:
            names.append(f"{process.pid} {process.name()} {' '.join(process.cmdline())[:120]}")
        except psutil.Error:
            continue
    return names


def left_after_exit(tag: str, grace_s: float = 15.0) -> tuple[int, list[str]]:
    """How many tagged processes ran when pytest exited, and those still running `grace_s` later.

    A multiprocessing resource tracker exits by itself once every process holding its pipe has
    gone, after releasing what they leaked; on a loaded 2-core runner that once took over 5 s
    after a `timeout`-killed server session (a CI run listed it, then found it a zombie), and a CI
    run of the Ctrl-C test found a `python` process still running the instant pytest returned. One
    that outlives 15 s is left behind, and is named (before it is killed: never left to the next test)."""
    at_exit = len(tagged_processes(tag))
    deadline = time.monotonic() + grace_s
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.25)
    names = describe(left)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            continue
    return at_exit, names
