"""A config that cannot be loaded (a missing model path, a file that is not TOML) is an outcome of the
session: its tests error with one line, and the JSON report's `failed_configs`, the terminal's
`failed` lines and the report's `environment` say so, though nothing was measured."""

import json

import pytest

from pytest_specdecode.report.artifacts import installed_environment
from pytest_specdecode.engines import vllm_info

GATED = "import pytest\n\n@pytest.mark.min_speedup(1.0)\ndef test_fast(spec_run):\n    pass\n"
MISSING_MODEL = '[model]\nname = "./models/not-there"\n[speculative]\nmethod = "ngram"\nnum_speculative_tokens = 3\n'
NOT_TOML = '[model\nname = "org/m"\n'
ARGS = ("-p", "no:cacheprovider", "--spec-report=r.json")


def report(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "r.json").read_text())


def test_a_missing_model_path_is_a_failed_config_with_its_reason(pytester):
    """Was: the test errored with the reason, but the report said `failed_configs: {}`."""
    pytester.makefile(".toml", c=MISSING_MODEL)
    pytester.makepyfile(GATED)
    outcome = pytester.runpytest(*ARGS, "--spec-config=c.toml")
    outcome.assert_outcomes(errors=1)
    path = str((pytester.path / "c.toml").resolve())
    reason = f"[model] name: path does not exist: {pytester.path.resolve() / 'models' / 'not-there'}"
    assert report(pytester)["failed_configs"] == {path: reason}
    outcome.stdout.fnmatch_lines(["*= speculative decoding =*", f"failed {path}: {reason}"])


def test_every_broken_config_is_listed_once_however_many_tests_use_it(pytester):
    pytester.makefile(".toml", bad=NOT_TOML, c=MISSING_MODEL)
    pytester.makepyfile(GATED + "\ndef test_config(spec_config):\n    pass\n")
    outcome = pytester.runpytest(*ARGS, "--spec-config=bad.toml", "--spec-config=c.toml")
    outcome.assert_outcomes(errors=4)  # a fixture that fails in setup is an error
    failed = report(pytester)["failed_configs"]
    assert sorted(failed) == sorted(str((pytester.path / name).resolve()) for name in ("bad.toml", "c.toml"))
    assert failed[str((pytester.path / "bad.toml").resolve())].startswith("not valid TOML (")
    assert all("\n" not in reason for reason in failed.values())


def test_a_report_of_nothing_measured_still_names_the_environment(pytester):
    pytester.makefile(".toml", c=MISSING_MODEL)
    pytester.makepyfile(GATED)
    pytester.runpytest(*ARGS, "--spec-config=c.toml").assert_outcomes(errors=1)
    environment = report(pytester)["environment"]
    assert environment == installed_environment().model_dump(mode="json")
    assert environment["python"] and environment["device"]


def test_that_environment_is_a_measured_runs_though_neither_vllm_nor_torch_was_imported(pytester):
    """`import vllm` costs seconds (it imports torch, inductor and dynamo) at the end of a session
    that measured nothing; the versions are read from the files `__version__` comes from instead."""
    pytester.makefile(".toml", c=MISSING_MODEL)
    pytester.makepyfile(GATED)
    pytester.makeconftest(
        "import sys\n\n"
        "def pytest_unconfigure(config):\n"
        "    open('modules.txt', 'w').write(' '.join(m for m in ('vllm', 'torch') if m in sys.modules))\n"
    )
    pytester.runpytest_subprocess(*ARGS, "--spec-config=c.toml").assert_outcomes(errors=1)
    assert (pytester.path / "modules.txt").read_text() == ""
    assert report(pytester)["environment"] == vllm_info.environment().model_dump(mode="json")


def test_a_config_that_fails_on_an_xdist_worker_reaches_the_controllers_report(pytester):
    """Was: workers load configs and start engines, but test reports carried only results and
    verdicts back, so the controller's report said `failed_configs: {}` under `-n`."""
    pytester.makefile(".toml", c=MISSING_MODEL)
    pytester.makepyfile(GATED)
    outcome = pytester.runpytest_subprocess(*ARGS, "-n", "2", "--spec-config=c.toml")
    outcome.assert_outcomes(errors=1)
    path = str((pytester.path / "c.toml").resolve())
    assert list(report(pytester)["failed_configs"]) == [path]
    assert "path does not exist" in report(pytester)["failed_configs"][path]
