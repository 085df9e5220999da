"""pytest hooks and fixtures. Loaded in every pytest run of every project that installs us, so at
module level it imports only the standard library, pytest and modules of ours that do the same
(options, markers, interrupts, session); gates and reports (pydantic, numpy, scipy) load when a
test first needs a config, and vLLM and torch when the first engine starts.
`benchmarks/startup.py` measures what the plugin costs a run that does not use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import interrupts
from .gates.markers import GATE_MARKERS, MARKER_HELP
from .options import add_options, options_from
from .session import REPORT_ATTR, SpecSession

if TYPE_CHECKING:
    from .engines.base import Engine
    from .results import ConfigResult, Verdict

SESSION_KEY = pytest.StashKey[SpecSession]()
SIGTERM_KEY = pytest.StashKey[Any]()
RESULT_KEY = pytest.StashKey["ConfigResult"]()
VERDICTS_KEY = pytest.StashKey["list[Verdict]"]()

CONFIG_FIXTURE = "_specdecode_config_path"
NEEDS_CONFIG = frozenset({"spec_config", "spec_run", "spec_engine", "vanilla_engine"})
NO_CONFIG_REASON = "no spec-config: pass --spec-config=FILE or mark the test with @pytest.mark.spec_config(FILE)"


def spec_session(config: pytest.Config) -> SpecSession:
    """The session's cross-test state (registered as a plugin at configure time)."""
    return config.stash[SESSION_KEY]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spec_config(path): measure this test's spec_run with this config file "
                            "(relative to the test file)")
    for name in GATE_MARKERS:
        config.addinivalue_line("markers", f"{MARKER_HELP[name]} (pytest-specdecode gate)")
    options = options_from(config)
    if options.compare and options.compare != "latest":
        from .results.schema import BaselineError
        from .gates.compare import check_compare_target

        try:
            check_compare_target(options.compare_target)
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None
    session = config.stash[SESSION_KEY] = SpecSession(config, options)
    config.pluginmanager.register(session, f"specdecode-session-{id(config)}")
    config.stash[SIGTERM_KEY] = interrupts.install()


def pytest_unconfigure(config: pytest.Config) -> None:
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
        paths = list(spec_session(metafunc.config).options.configs)
    if paths:
        metafunc.parametrize(CONFIG_FIXTURE, [p.resolve() for p in paths], ids=[p.stem for p in paths], scope="session")


def _has_gates(node: Any) -> bool:
    return any(True for name in GATE_MARKERS for _ in node.iter_markers(name))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate every gate marker now (a bad threshold is a usage error before anything starts),
    and record each config's gates: sequential sampling measures until they are resolved."""
    gated = [(item, marks) for item in items if (marks := [m for name in GATE_MARKERS for m in item.iter_markers(name)])]
    if not gated:
        return
    from .gates.kinds import GateUsageError, NoThreshold, check_gates_fit, gates_from_marks

    session = spec_session(config)
    for item, marks in gated:
        loaded = _loaded_config(session, item)
        try:
            gates = gates_from_marks(marks, loaded.gates if loaded is not None else None)
            if loaded is not None:
                check_gates_fit(gates, loaded.speculative.vllm_dict())
        except NoThreshold as exc:
            if _config_path(item) is not None:
                raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
            # no config at all: the test is skipped when it runs (_specdecode_gates), as the docs promise
        except GateUsageError as exc:
            raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
        else:
            if (path := _config_path(item)) is not None:  # what sequential sampling measures until resolved
                session.gates_by_config.setdefault(path, []).extend(gates)


def _config_path(item: pytest.Item) -> Path | None:
    return getattr(item, "callspec", None) and item.callspec.params.get(CONFIG_FIXTURE)


def _loaded_config(session: SpecSession, item: pytest.Item) -> Any:
    from .config.spec import ConfigError

    path = _config_path(item)
    if path is None:
        return None
    try:
        return session.config_for(path)
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
    if _has_gates(request.node):
        request.getfixturevalue("spec_run")


@pytest.fixture
def spec_config(request: pytest.FixtureRequest, _specdecode_config_path: Path | None) -> Any:
    """The validated config (`pytest_specdecode.config.spec.SpecConfig`) this test is parametrized with."""
    from .config.spec import ConfigError

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
    from .results.schema import BaselineError
    from .config.spec import ConfigError
    from .engines.base import EngineStartError

    session = spec_session(request.config)
    try:
        result = session.result_for(spec_config.path)
    except (EngineStartError, ConfigError, BaselineError) as exc:
        problem = f"{spec_config.path.name}: {exc}"
    else:
        request.node.stash[RESULT_KEY] = result
        return result.bound_to(partial(_record, request.node, session.options.inconclusive))
    pytest.fail(problem, pytrace=False)


def _record(item: pytest.Item, policy: str, verdicts: list[Verdict]) -> str:
    """An assertion helper's verdicts, kept for the test's reports under its node id; the policy
    they are judged by."""
    _keep(item, [verdict.model_copy(update={"test": verdict.test or item.nodeid}) for verdict in verdicts])
    return policy


def _keep(item: pytest.Item, verdicts: list[Verdict]) -> None:
    """Verdicts for the test's report (and xdist's controller) and its JUnit properties."""
    item.stash.setdefault(VERDICTS_KEY, []).extend(verdicts)
    for verdict in verdicts:
        item.user_properties.append(
            (f"specdecode:{verdict.gate}@{verdict.run}", f"measured={verdict.measured} {verdict.outcome}")
        )


def _engine_fixture(request: pytest.FixtureRequest, spec_config: Any, role: str) -> Engine:
    from .config.spec import ConfigError
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
    """After the test body passes, its gate markers are judged against the measured result: the
    markers it has now, so one added while it ran (`request.applymarker`) is judged too."""
    outcome = yield
    result = item.stash.get(RESULT_KEY, None)
    if result is None or not _has_gates(item):
        return outcome
    from .results.schema import BaselineError
    from .gates.kinds import GateUsageError, gates_from_marks
    from .gates.policy import failures, verdicts_for

    session = spec_session(item.config)
    try:
        defaults = session.config_for(Path(result.config)).gates
        gates = gates_from_marks((m for name in GATE_MARKERS for m in item.iter_markers(name)), defaults)
        verdicts = verdicts_for(item.nodeid, gates, result, defaults, session.options.compare_target)
    except (GateUsageError, BaselineError) as exc:
        problem = f"{item.nodeid}: {exc}"
    else:
        problem = None
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    _keep(item, verdicts)
    failing = failures(session.options.inconclusive, verdicts)
    if failing:
        pytest.fail("\n".join(failing), pytrace=False)
    return outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """The report carries the result and verdicts (call) and its config's failure (any phase), so
    xdist's controller sees what workers measured and which configs failed, and why."""
    report = yield
    result = item.stash.get(RESULT_KEY, None)
    path = _config_path(item)
    error = spec_session(item.config).errors.get(str(path)) if path is not None else None
    failed = {str(path): error} if error is not None else {}
    if report.when == "call" and (result is not None or VERDICTS_KEY in item.stash):
        setattr(report, REPORT_ATTR, (result, item.stash.get(VERDICTS_KEY, []), failed))
    elif failed:
        setattr(report, REPORT_ATTR, (None, [], failed))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(report: Any) -> Iterator[dict | None]:
    data = yield
    carried = getattr(report, REPORT_ATTR, None)
    if data is not None and carried is not None:
        from .transport import to_data

        data[REPORT_ATTR] = to_data(carried)
    return data


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(data: dict) -> Iterator[Any]:
    report = yield
    carried = data.get(REPORT_ATTR) if isinstance(data, dict) else None
    if report is not None and carried:
        from .transport import from_data

        setattr(report, REPORT_ATTR, from_data(carried))
    return report
