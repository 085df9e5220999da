"""Finding what a pytest process under test left running: every process that inherited our tag in
its environment (its engines, their workers, resource trackers), wherever they were reparented to."""

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
