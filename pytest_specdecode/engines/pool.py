"""Engines shared by every test of a process, started on first use and stopped exactly once.

Two configs with the same target and engine arguments share one vanilla engine. At most
`max_live` engines run at a time (`engines_that_fit`: two when the configs leave room for two, else
one); the least recently used one is stopped to make room (with two, that is the previous config's
spec engine: the measurer uses the vanilla engine last, to score T>0 outputs or read its figures). A failed start is remembered, so the tests of a broken
config all error with the same reason instead of each paying for another failed start.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from .base import Engine, EngineSpec, EngineStartError

EngineFactory = Callable[[EngineSpec], Engine]


class EnginePool:
    def __init__(self, factories: dict[str, EngineFactory], max_live: int = 1) -> None:
        if max_live < 1:
            raise ValueError("max_live must be >= 1")
        self._factories = factories
        self.max_live = max_live
        self._live: OrderedDict[str, Engine] = OrderedDict()
        self._failed: dict[str, str] = {}
        self.starts: list[tuple[str, str, float]] = []  # (key, role, seconds): the session's start bill
        #: what each start (by its index in `starts`) spent its time on, where the engine can say
        self.start_phases: dict[int, dict[str, float]] = {}
        self._start_of: dict[str, int] = {}  # a live engine's index in `starts`

    def get(self, spec: EngineSpec) -> Engine:
        key = spec.key
        if key in self._failed:
            raise EngineStartError(self._failed[key])
        if key in self._live:
            self._live.move_to_end(key)
            return self._live[key]
        self.make_room(spec)
        try:
            with _quiet():
                engine = self._factories[spec.mode](spec)
        except EngineStartError as exc:
            self._failed[key] = str(exc)
            raise
        self._live[key] = engine
        self._start_of[key] = len(self.starts)
        phases = getattr(engine, "start_phases", None)
        if phases:
            self.start_phases[len(self.starts)] = dict(phases)
        self.starts.append((key, spec.role, engine.start_s))
        return engine

    def make_room(self, spec: EngineSpec) -> None:
        """Stop the least recently used engines until `spec`'s engine, live or not, fits: a caller
        that times starts and stops apart calls this first."""
        while spec.key not in self._live and len(self._live) >= self.max_live:
            _, oldest = self._live.popitem(last=False)
            with _quiet():
                oldest.close()

    def start_index(self, spec: EngineSpec) -> int | None:
        """Which of the session's engine starts (`starts`) the live engine for `spec` came from:
        windows of one start share its process's state (caches, compiled graphs, clocks)."""
        return self._start_of.get(spec.key) if spec.key in self._live else None

    def live(self) -> list[Engine]:
        return list(self._live.values())

    def is_live(self, spec: EngineSpec) -> bool:
        return spec.key in self._live

    def close_all(self) -> None:
        """Every live engine stopped at once: an engine's own shutdown is mostly waiting for its
        processes to exit (about 5 s for a vLLM engine core), so stopping two in turn waited twice."""
        engines = list(self._live.values())
        self._live.clear()
        with _quiet(), ThreadPoolExecutor(max_workers=max(1, len(engines)), thread_name_prefix="specdecode-stop") as stops:
            for stopped in [stops.submit(engine.close) for engine in engines]:
                stopped.result()


@contextmanager
def _quiet() -> Iterator[None]:
    """Engine start and stop without their libraries' warnings (torch deprecations, multiprocessing's
    resource tracker): they are vLLM's to fix, and in a user's warnings summary they bury the user's own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def offline_factory(spec: EngineSpec) -> Engine:
    from .offline import OfflineEngine

    return OfflineEngine(spec)


def server_factory(spec: EngineSpec) -> Engine:
    from .server import ServerEngine

    return ServerEngine(spec, spec.start_timeout_s, log_dir=spec.log_dir, request_timeout_s=spec.request_timeout_s)


def endpoint_factory(spec: EngineSpec) -> Engine:
    from .endpoint import EndpointEngine

    if spec.url is None:
        raise EngineStartError(f"no endpoint URL for the {spec.role} side")
    return EndpointEngine(spec, spec.url, spec.request_timeout_s, metrics_urls=spec.metrics_urls)


DEFAULT_FACTORIES: dict[str, EngineFactory] = {
    "offline": offline_factory,
    "server": server_factory,
    "endpoint": endpoint_factory,
}


#: Two engines each asking at most this share of the device fit it together, with room to spare.
TWO_ENGINES_UTILIZATION = 0.45


def engines_that_fit(utilizations: Iterable[float | None]) -> int:
    """How many engines may run at once by default: two (spec and vanilla up together, windows
    paired ABBA, a shared vanilla engine never restarted for the next config) when every config
    sets `gpu_memory_utilization` at most 0.45; else one, since vLLM's default (0.9) leaves room
    for a single engine on a GPU, and on vLLM-CPU for a single engine's share of RAM."""
    shares = list(utilizations)
    return 2 if shares and all(u is not None and u <= TWO_ENGINES_UTILIZATION for u in shares) else 1
