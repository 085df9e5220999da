"""pytest hooks and fixtures. Loaded in every pytest run of every project that installs us, so at
module level it imports only the standard library, pytest and three standard-library modules of
ours (options, markers, interrupts); the session, gates and reports (pydantic, numpy, scipy) load
when a test first needs a config, and vLLM and torch when the first engine starts.
`benchmarks/startup.py` measures what the plugin costs a run that does not use it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import interrupts
from .markers import GATE_MARKERS, MARKER_HELP
from .options import (
    DEFAULT_BASELINE_DIR,
    Options,
    config_file,
    endpoint_url,
    non_negative_hours,
    output_dir,
    positive_int,
    report_file,
    run_name,
)

if TYPE_CHECKING:
    from .engines.base import Engine
    from .gates import Gate
    from .results import ConfigResult, Verdict
    from .session import SpecSession

OPTIONS_KEY = pytest.StashKey[Options]()
SESSION_KEY = pytest.StashKey["SpecSession"]()
SIGTERM_KEY = pytest.StashKey[Any]()
STARTED_KEY = pytest.StashKey[float]()
GATES_KEY = pytest.StashKey["list[Gate]"]()
RESULT_KEY = pytest.StashKey["ConfigResult"]()
VERDICTS_KEY = pytest.StashKey["list[Verdict]"]()

CONFIG_FIXTURE = "_specdecode_config_path"
NEEDS_CONFIG = frozenset({"spec_config", "spec_run", "spec_engine", "vanilla_engine"})
NO_CONFIG_REASON = "no spec-config: pass --spec-config=FILE or mark the test with @pytest.mark.spec_config(FILE)"
REPORT_ATTR = "specdecode"


def spec_session(config: pytest.Config) -> SpecSession:
    """The session's cross-test state, made on first use: a run that never measures never loads it."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        from .session import SpecSession

        session = SpecSession(config.stash[OPTIONS_KEY], progress=lambda line: _progress(config, line),
                              started=config.stash[STARTED_KEY])
        config.stash[SESSION_KEY] = session
    return session


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("specdecode", "speculative-decoding gates (pytest-specdecode)")
    group.addoption("--spec-config", action="append", default=[], metavar="TOML", type=config_file,
                    help="spec-config file to measure; repeat for several (each is its own parametrization)")
    group.addoption("--spec-report", metavar="PATH", type=report_file, default=None,
                    help="write every measured run and gate verdict as JSON to PATH")
    group.addoption("--spec-mode", choices=("offline", "server"), default=None,
                    help="override every config's [run] mode")
    group.addoption("--spec-max-engines", type=positive_int, default=1, metavar="N",
                    help="engines kept running at once (default 1; 2 keeps spec and vanilla both up and "
                         "interleaves their repeats)")
    group.addoption("--spec-endpoint", metavar="URL", type=endpoint_url, default=None,
                    help="measure this running OpenAI-compatible vLLM server as the speculative side; starts nothing")
    group.addoption("--spec-baseline-endpoint", metavar="URL", type=endpoint_url, default=None,
                    help="with --spec-endpoint: the running vanilla server to compare against")
    group.addoption("--spec-verdict", choices=("point", "confident"), default="point",
                    help="point: compare the measured value; confident: fail only when the whole 95%% bootstrap "
                         "interval misses the threshold, warn 'inconclusive' when it straddles (default point)")
    group.addoption("--spec-strict", action="store_true",
                    help="with --spec-verdict=confident: an inconclusive gate fails")
    group.addoption("--spec-baseline-dir", metavar="DIR", type=output_dir, default=None,
                    help="reuse stored vanilla baselines from DIR (and keep saved runs there); without it vanilla "
                         "is measured every session, in windows paired with spec's (saved runs: <rootdir>/.specdecode)")
    group.addoption("--spec-refresh-baseline", action="store_true",
                    help="re-measure vanilla even when a matching stored baseline exists, and store the new one")
    group.addoption("--spec-baseline-max-age", type=non_negative_hours, default=24.0, metavar="HOURS",
                    help="with --spec-baseline-dir: a stored baseline older than this is not reused (default 24)")
    group.addoption("--spec-plots", metavar="DIR", type=output_dir, default=None,
                    help="write PNGs (per-position acceptance, speedup and P99 vs load, per-request acceptance "
                         "histogram) to DIR; needs matplotlib: pip install 'pytest-specdecode[plots]'")
    group.addoption("--spec-save", metavar="NAME", type=run_name, default=None,
                    help="store this session's results as NAME (one file per config) for --spec-compare")
    group.addoption("--spec-compare", metavar="NAME", type=run_name, nargs="?", const="latest", default=None,
                    help="fail gated tests whose acceptance or speedup fell since the stored run NAME "
                         "(default: the latest); limits from [gates] max_acceptance_drop / max_speedup_drop")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spec_config(path): measure this test's spec_run with this config file "
                            "(relative to the test file)")
    for name in GATE_MARKERS:
        config.addinivalue_line("markers", f"{MARKER_HELP[name]} (pytest-specdecode gate)")
    config.stash[STARTED_KEY] = time.perf_counter()
    options = Options(
        configs=tuple(config.getoption("--spec-config")),
        report=config.getoption("--spec-report"),
        mode=config.getoption("--spec-mode"),
        max_engines=config.getoption("--spec-max-engines"),
        endpoint=config.getoption("--spec-endpoint"),
        baseline_endpoint=config.getoption("--spec-baseline-endpoint"),
        confident=config.getoption("--spec-verdict") == "confident",
        strict=config.getoption("--spec-strict"),
        baseline_dir=config.getoption("--spec-baseline-dir"),
        history_dir=config.getoption("--spec-baseline-dir") or config.rootpath / DEFAULT_BASELINE_DIR,
        refresh_baseline=config.getoption("--spec-refresh-baseline"),
        baseline_max_age_s=config.getoption("--spec-baseline-max-age") * 3600,
        save=config.getoption("--spec-save"),
        compare=config.getoption("--spec-compare"),
    )
    if options.baseline_endpoint and not options.endpoint:
        raise pytest.UsageError("--spec-baseline-endpoint needs --spec-endpoint")
    config.stash[OPTIONS_KEY] = options
    if options.compare and options.compare != "latest":
        from .baseline import BaselineError

        try:
            spec_session(config).check_compare_target()
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[SIGTERM_KEY] = interrupts.install()
    config.pluginmanager.register(_ReportCollector(config), f"specdecode-collector-{id(config)}")


def _progress(config: pytest.Config, line: str) -> None:
    """Written past pytest's capture: engines start and measure inside a test's setup, where a
    captured line would show only after a half-hour gate had finished (and only if it failed).
    Without a terminal reporter (`-p no:terminal`) the run was asked to be quiet, so nothing is written."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    elapsed = time.perf_counter() - config.stash[STARTED_KEY]
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
        reporter.write_line(f"[specdecode +{elapsed:.1f}s] {line}")
        reporter.flush()  # a CI log is a pipe, block-buffered: without this the line shows at the end


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()
    interrupts.restore(config.stash.get(SIGTERM_KEY, None))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each config is one parametrization of every test that needs one; ids are the file stems."""
    needs = NEEDS_CONFIG & set(metafunc.fixturenames) or _has_gates(metafunc.definition)
    if not needs:
        return
    bound = metafunc.definition.get_closest_marker("spec_config")
    if bound is not None:
        if len(bound.args) != 1:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: spec_config takes exactly one path")
        paths = [Path(metafunc.definition.path).parent / bound.args[0]]
    else:
        paths = list(metafunc.config.stash[OPTIONS_KEY].configs)
    if paths:
        metafunc.parametrize(CONFIG_FIXTURE, [p.resolve() for p in paths], ids=[p.stem for p in paths], scope="session")


def _has_gates(node: Any) -> bool:
    return any(True for name in GATE_MARKERS for _ in node.iter_markers(name))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate every gate marker now: a bad threshold is a usage error before anything starts."""
    gated = [(item, marks) for item in items if (marks := [m for name in GATE_MARKERS for m in item.iter_markers(name)])]
    if not gated:
        return
    from .gates import GateUsageError, NoThreshold, gates_from_marks

    session = spec_session(config)
    for item, marks in gated:
        defaults = _config_defaults(session, item)
        try:
            item.stash[GATES_KEY] = gates_from_marks(marks, defaults)
        except NoThreshold as exc:
            if _config_path(item) is not None:
                raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
            # no config at all: the test is skipped when it runs (_specdecode_gates), as the docs promise
        except GateUsageError as exc:
            raise pytest.UsageError(f"{item.nodeid}: {exc}") from None


def _config_path(item: pytest.Item) -> Path | None:
    return getattr(item, "callspec", None) and item.callspec.params.get(CONFIG_FIXTURE)


def _config_defaults(session: SpecSession, item: pytest.Item) -> Any:
    from .config import ConfigError

    path = _config_path(item)
    if path is None:
        return None
    try:
        return session.config_for(path).gates
    except ConfigError:
        return None  # reported as the test's error when its fixture loads the config


@pytest.fixture(scope="session")
def _specdecode_config_path(request: pytest.FixtureRequest) -> Path | None:
    return getattr(request, "param", None)


@pytest.fixture(autouse=True)
def _specdecode_gates(request: pytest.FixtureRequest, _specdecode_config_path: Path | None) -> None:
    """Tests with gate markers measure their config in setup, so a failed start is an error.

    It names the config fixture so that a gated test without `spec_run` is parametrized too.
    """
    if request.node.stash.get(GATES_KEY, None) or _has_gates(request.node):
        request.getfixturevalue("spec_run")


@pytest.fixture
def spec_config(request: pytest.FixtureRequest, _specdecode_config_path: Path | None) -> Any:
    """The validated config (`pytest_specdecode.config.SpecConfig`) this test is parametrized with."""
    from .config import ConfigError

    if _specdecode_config_path is None:
        pytest.skip(NO_CONFIG_REASON)
    try:
        return spec_session(request.config).config_for(_specdecode_config_path)
    except ConfigError as exc:
        problem = str(exc)  # failed outside the handler: one line, not "during handling of..." twice
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def spec_run(request: pytest.FixtureRequest, spec_config: Any) -> ConfigResult:
    """The measured spec-vs-vanilla comparison; measured once per config per session."""
    from .baseline import BaselineError
    from .config import ConfigError
    from .engines.base import EngineStartError

    session = spec_session(request.config)
    try:
        result = session.result_for(spec_config.path)
    except (EngineStartError, ConfigError, BaselineError) as exc:
        problem = f"{spec_config.path.name}: {exc}"
    else:
        request.node.stash[RESULT_KEY] = result
        return result
    pytest.fail(problem, pytrace=False)


def _engine_fixture(request: pytest.FixtureRequest, spec_config: Any, role: str) -> Engine:
    from .config import ConfigError
    from .engines.base import EngineStartError

    try:
        return spec_session(request.config).engine_for(spec_config.path, role)
    except (EngineStartError, ConfigError) as exc:
        problem = f"{spec_config.path.name}: {role} engine: {exc}"
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def spec_engine(request: pytest.FixtureRequest, spec_config: Any) -> Engine:
    """The running speculative engine of this config (shared; do not close it)."""
    return _engine_fixture(request, spec_config, "spec")


@pytest.fixture
def vanilla_engine(request: pytest.FixtureRequest, spec_config: Any) -> Engine:
    """The running vanilla twin of this config (shared; do not close it)."""
    return _engine_fixture(request, spec_config, "vanilla")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After the test body passes, its gate markers are judged against the measured result."""
    outcome = yield
    gates = item.stash.get(GATES_KEY, None)
    result = item.stash.get(RESULT_KEY, None)
    if not gates or result is None:
        return outcome
    from .baseline import BaselineError
    from .gates import GateUsageError, judge

    session = spec_session(item.config)
    problem = None
    try:
        verdicts = [verdict for gate in gates for verdict in judge(gate, result, item.nodeid, session.options.confident)]
        if session.options.compare:
            verdicts.append(_regression_verdict(session, item.nodeid, result))
    except (GateUsageError, BaselineError) as exc:
        problem = f"{item.nodeid}: {exc}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    item.stash[VERDICTS_KEY] = verdicts
    for verdict in verdicts:
        item.user_properties.append(
            (f"specdecode:{verdict.gate}@{verdict.run}", f"measured={verdict.measured} {verdict.outcome}")
        )
    failing = {"fail", "inconclusive"} if session.options.strict else {"fail"}
    for verdict in verdicts:
        if verdict.outcome == "inconclusive" and not session.options.strict:
            warnings.warn(InconclusiveGate(verdict.message), stacklevel=1)
    failures = [verdict.message for verdict in verdicts if verdict.outcome in failing]
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    return outcome


class InconclusiveGate(UserWarning):
    """A confident verdict whose interval straddles the threshold (a failure with --spec-strict)."""


def _regression_verdict(session: SpecSession, test: str, result: ConfigResult) -> Verdict:
    from .results import Verdict

    defaults = session.config_for(Path(result.config)).gates
    name, comparison = session.regressions(result, defaults)
    outcome = comparison.outcome
    return Verdict(
        test, f"no_regression(vs {name})", result.config_name, defaults.max_acceptance_drop, None,
        outcome == "pass", "\n".join(comparison.messages), outcome,
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """The report carries the result and verdicts, so xdist's controller sees what workers measured."""
    report = yield
    result = item.stash.get(RESULT_KEY, None)
    if report.when == "call" and (result is not None or VERDICTS_KEY in item.stash):
        setattr(report, REPORT_ATTR, (result, item.stash.get(VERDICTS_KEY, [])))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(report: Any) -> Iterator[dict | None]:
    data = yield
    carried = getattr(report, REPORT_ATTR, None)
    if data is not None and carried is not None:
        result, verdicts = carried
        data[REPORT_ATTR] = {
            "result": result.model_dump(mode="json") if result is not None else None,
            "verdicts": [v.as_dict() for v in verdicts],
        }
    return data


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(data: dict) -> Iterator[Any]:
    report = yield
    carried = data.get(REPORT_ATTR) if isinstance(data, dict) else None
    if report is not None and carried:
        from .results import ConfigResult, Verdict

        result = ConfigResult.model_validate(carried["result"]) if carried["result"] else None
        verdicts = [Verdict(**{**v, "interval": tuple(v["interval"]) if v["interval"] else None}) for v in carried["verdicts"]]
        setattr(report, REPORT_ATTR, (result, verdicts))
    return report


def _write_plots(config: pytest.Config, results: list[ConfigResult]) -> list[Path]:
    folder = config.getoption("--spec-plots")
    if folder is None or not results:
        return []
    from .plots import PlotsUnavailable, write_plots

    try:
        return write_plots(results, folder)
    except PlotsUnavailable as exc:
        config.pluginmanager.get_plugin("terminalreporter").write_line(f"[specdecode] {exc}", red=True)
        return []


class _ReportCollector:
    """Registered per pytest config: `pytest_runtest_logreport` gets no config of its own."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        carried = getattr(report, REPORT_ATTR, None)
        if carried is not None:
            spec_session(self.config).record(*carried)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Iterator[None]:
        """Ahead of pytest-benchmark's own wrapper, which saves its JSON before any plain hook runs."""
        spec = self.config.stash.get(SESSION_KEY, None)
        if spec is not None and spec.results and not hasattr(session.config, "workerinput"):
            from .benchmark_export import add_to_benchmark_session

            add_to_benchmark_session(session.config, list(spec.results.values()))
        return (yield)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    from .report import failure_lines, terminal_lines

    lines = terminal_lines(list(session.results.values()), session.verdicts)
    lines += [f"failed {line}" for line in failure_lines(session.errors)]
    if lines:
        terminalreporter.write_sep("=", "speculative decoding")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Reports are written by the controller only, and also after failures or Ctrl-C; a session
    that measured nothing writes its --spec-report all the same (saying so), and nothing else."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    if SESSION_KEY not in config.stash and config.stash[OPTIONS_KEY].report is None:
        return
    from .baseline import BaselineError
    from .plots import plots_note
    from .report import markdown, write_json

    spec = spec_session(config)
    results = list(spec.results.values())
    try:
        spec.save_history()
    except BaselineError as exc:
        config.pluginmanager.get_plugin("terminalreporter").write_line(f"[specdecode] {exc}", red=True)
    if spec.options.report is not None:  # always: a CI artifact step needs it most when nothing was measured
        write_json(spec.options.report, results, spec.verdicts, spec.timing(), spec.errors)
    plots = _write_plots(config, results)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    text = markdown(results, spec.verdicts, spec.errors)
    if text and plots:
        text += "\n" + plots_note(plots)
    if summary_file and text:
        with open(summary_file, "a", encoding="utf-8") as handle:
            handle.write(text)
