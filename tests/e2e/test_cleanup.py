"""Nothing left behind: a real pytest process, interrupted after measuring, stops its engines and
still reports what it measured."""

import json
import sys
import uuid

import psutil

TAG = "SPECDECODE_CLEANUP_TEST"


def _tagged_processes(tag: str) -> list[psutil.Process]:
    """Processes that inherited our tag: the session's engines, wherever they were reparented to."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(TAG) == tag:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_ctrl_c_after_measuring_stops_engines_and_keeps_the_report(pytester, ngram_toml, monkeypatch, engines_stopped):
    pytester.makepyfile(
        """
        def test_measure(spec_run):
            assert spec_run.runs

        def test_interrupt(spec_run):
            raise KeyboardInterrupt
        """
    )
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG, tag)
    report = pytester.path / "interrupted.json"
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--spec-config={ngram_toml}",
                          f"--spec-report={report}", timeout=900)
    assert result.ret == 2  # pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*speculative decoding*", "ngram T=0 *", "*KeyboardInterrupt*"])
    assert {run["temperature"] for run in json.loads(report.read_text())["runs"]} == {0.0, 0.8}
    assert _tagged_processes(tag) == []


def test_sigterm_while_measuring_stops_every_engine_process_and_writes_the_report(pytester, ngram_toml, monkeypatch,
                                                                                 engines_stopped):
    """What CI timeouts and `docker stop` send: before, pytest died at once and the engine core was orphaned."""
    import signal
    import subprocess
    import time

    pytester.makepyfile("def test_measure(spec_run):\n    assert spec_run.runs\n")
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG, tag)
    report = pytester.path / "terminated.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--spec-config={ngram_toml}", f"--spec-report={report}"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "spec engine started in" in line:  # the engine core is up: the case that was orphaned
                break
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
        seconds = time.monotonic() - signalled
    finally:
        process.kill()
    output = "".join(seen) + rest
    assert process.returncode == 2, output
    assert "received SIGTERM" in output
    assert seconds < 60
    data = json.loads(report.read_text())
    assert list(data["failed_configs"].values()) == ["interrupted before its measurement finished"]
    deadline = time.monotonic() + 15
    while _tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _tagged_processes(tag) == []
