"""Option values are checked when pytest parses them: a bad one costs a usage error, not an engine run."""

import argparse

import pytest

from pytest_specdecode import options
from pytest_specdecode.gates.history import _RUN_NAME


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (options.positive_int, "0", "must be an integer >= 1, got '0'"),
        (options.positive_int, "two", "must be an integer >= 1, got 'two'"),
        (options.non_negative_hours, "-1", "must be a number of hours >= 0, got '-1'"),
        (options.non_negative_hours, "nan", "must be a number of hours >= 0, got 'nan'"),
        (options.run_name, "bad name", "may hold only letters, digits, '.', '_' and '-', got 'bad name'"),
        (options.run_name, "../up", "may hold only letters, digits, '.', '_' and '-', got '../up'"),
        (options.endpoint_url, "localhost:8000", "must be an http(s)://host[:port] URL"),
        (options.endpoint_url, "ftp://host", "must be an http(s)://host[:port] URL"),
        (options.endpoint_url, "http://:8000", "must be an http(s)://host[:port] URL"),
        (options.endpoint_url, "http://host:99999", "must be an http(s)://host[:port] URL"),
        (options.endpoint_url, "http://host:8000/v1", "must be the server's root URL, without a path such as /v1"),
        (options.endpoint_url, "http://host:8000?x=1", "must be an http(s)://host[:port] URL"),
        (options.config_file, "no-such.toml", "no such config file: 'no-such.toml'"),
        (options.report_file, ".", "is a directory, not a file to write the report to"),
    ],
)
def test_bad_values_raise_argument_type_errors(check, value, message):
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        check(value)
    assert message in str(caught.value)


def test_good_values_come_back_parsed(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("")
    assert options.positive_int("2") == 2
    assert options.non_negative_hours("0") == 0.0 and options.non_negative_hours("inf") == float("inf")
    assert options.run_name("main-2026.01_a") == "main-2026.01_a"
    assert options.endpoint_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/"
    assert options.endpoint_url("https://gpu-box") == "https://gpu-box"
    assert options.endpoint_url("http://[::1]:8000") == "http://[::1]:8000"
    assert options.config_file(str(config)) == config
    assert options.report_file(str(tmp_path / "new" / "r.json")) == tmp_path / "new" / "r.json"
    assert options.output_dir(str(tmp_path)) == tmp_path
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a directory"):
        options.output_dir(str(config))


def test_run_names_are_the_ones_the_history_store_accepts():
    assert options.RUN_NAME.pattern == _RUN_NAME.pattern


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--spec-save=bad name", "argument --spec-save: run name may hold only letters"),
        ("--spec-compare=a/b", "argument --spec-compare: run name may hold only letters"),
        ("--spec-max-engines=0", "argument --spec-max-engines: must be an integer >= 1"),
        ("--spec-baseline-max-age=-1", "argument --spec-baseline-max-age: must be a number of hours >= 0"),
        ("--spec-endpoint=localhost:8000", "argument --spec-endpoint: must be an http(s)://host[:port] URL"),
        ("--spec-endpoint=not-a-url", "argument --spec-endpoint: must be an http(s)://host[:port] URL, got 'not-a-url'"),
        ("--spec-endpoint=ftp://host", "argument --spec-endpoint: must be an http(s)://host[:port] URL, got 'ftp://host'"),
        ("--spec-baseline-endpoint=http://h/v1", "argument --spec-baseline-endpoint: must be the server's root URL"),
        ("--spec-metrics-url=ftp://h/metrics", "argument --spec-metrics-url: must be an http(s)://host[:port]/metrics URL"),
        ("--spec-config=missing.toml", "argument --spec-config: no such config file"),
    ],
)
def test_bad_option_values_are_usage_errors_before_any_test_runs(pytester, arg, message):
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError('ran')\n")
    outcome = pytester.runpytest(arg)
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    assert message in outcome.stderr.str()
    assert "ran" not in outcome.stdout.str()


def test_a_bare_spec_compare_means_the_latest_run(pytester):
    assert pytester.parseconfig("--spec-compare").getoption("--spec-compare") == "latest"


def test_a_saved_run_to_compare_with_must_exist_at_start(pytester):
    """Was found only at the first gate, after every engine had run."""
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError('ran')\n")
    outcome = pytester.runpytest("--spec-compare=nightly")
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    assert "no saved run named 'nightly' (--spec-save nightly stores one)" in outcome.stderr.str()
    runs = pytester.path / ".specdecode" / "runs"
    runs.mkdir(parents=True)
    (runs / "nightly.cpu-ngram.json").write_text("{}")
    assert pytester.runpytest("--spec-compare=nightly", "-k", "nothing").ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_metrics_targets_need_the_endpoint_they_describe(pytester):
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError('ran')\n")
    outcome = pytester.runpytest("--spec-metrics-url=http://replica-1:8000/metrics")
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    assert "--spec-metrics-url needs --spec-endpoint" in outcome.stderr.str()


def test_server_logs_are_kept_under_the_rootdir_unless_told_where(pytester):
    """Was: removed after a clean stop, so a slow start could not be read afterwards."""
    from pytest_specdecode.options import options_from

    assert options_from(pytester.parseconfig()).log_dir == str(pytester.path / ".specdecode" / "logs")
    assert options_from(pytester.parseconfig("--spec-log-dir=ci-logs")).log_dir == "ci-logs"
