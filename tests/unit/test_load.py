import asyncio
import math
import time

import pytest

from pytest_specdecode.config.load import LoadLevel, arrival_offsets, levels, run_requests


def test_labels():
    assert LoadLevel(concurrency=8).label == "c=8"
    assert LoadLevel(request_rate=4.0).label == "rate=4"
    assert LoadLevel(request_rate=0.5, burstiness=0.5).label == "rate=0.5 burstiness=0.5"
    assert LoadLevel().label == "rate=inf"
    assert LoadLevel(request_rate=math.inf).label == "rate=inf"


@pytest.mark.parametrize(
    "bad",
    [{"concurrency": 0}, {"request_rate": 0.0}, {"request_rate": -1.0}, {"burstiness": 0.0},
     {"concurrency": 2, "request_rate": 3.0}],
)
def test_invalid_levels_are_refused(bad):
    with pytest.raises(ValueError):
        LoadLevel(**bad)


def test_levels_are_two_sweeps():
    assert levels([], [], 1.0) == [LoadLevel()]
    assert levels([1, 8], [4.0], 0.5) == [
        LoadLevel(concurrency=1),
        LoadLevel(concurrency=8),
        LoadLevel(request_rate=4.0, burstiness=0.5),
    ]


def test_unpaced_arrivals_are_all_at_once():
    assert arrival_offsets(4, LoadLevel(), seed=0) == [0.0] * 4
    assert arrival_offsets(3, LoadLevel(concurrency=2), seed=0) == [0.0] * 3
    assert arrival_offsets(3, LoadLevel(request_rate=math.inf), seed=0) == [0.0] * 3
    assert arrival_offsets(0, LoadLevel(request_rate=2.0), seed=0) == []


def test_paced_arrivals_are_seeded_and_average_one_over_rate():
    level = LoadLevel(request_rate=4.0)
    offsets = arrival_offsets(4001, level, seed=7)
    assert offsets == arrival_offsets(4001, level, seed=7)
    assert offsets != arrival_offsets(4001, level, seed=8)
    assert offsets[0] == 0.0
    gaps = [later - earlier for earlier, later in zip(offsets, offsets[1:])]
    assert all(gap >= 0 for gap in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(0.25, rel=0.05)


def test_burstiness_keeps_the_mean_but_widens_the_spread():
    def gaps(burstiness):
        offsets = arrival_offsets(4001, LoadLevel(request_rate=2.0, burstiness=burstiness), seed=1)
        return [later - earlier for earlier, later in zip(offsets, offsets[1:])]

    def variance(values):
        mean = sum(values) / len(values)
        return sum((v - mean) ** 2 for v in values) / len(values)

    bursty, smooth = gaps(0.25), gaps(4.0)
    assert sum(bursty) / len(bursty) == pytest.approx(0.5, rel=0.1)
    assert sum(smooth) / len(smooth) == pytest.approx(0.5, rel=0.1)
    assert variance(bursty) > 4 * variance(smooth)


class InFlight:
    """A fake async send that records how many calls overlap."""

    def __init__(self, seconds=0.02):
        self.seconds = seconds
        self.now = 0
        self.max = 0
        self.started: list[float] = []

    async def __call__(self, index):
        self.started.append(time.perf_counter())
        self.now += 1
        self.max = max(self.max, self.now)
        await asyncio.sleep(self.seconds)
        self.now -= 1
        return index * 10


def test_concurrency_cap_is_respected_and_results_keep_request_order():
    send = InFlight()
    results = asyncio.run(run_requests(send, 9, LoadLevel(concurrency=3), seed=0))
    assert results == [i * 10 for i in range(9)]
    assert send.max == 3


def test_without_a_cap_everything_is_in_flight_at_once():
    send = InFlight()
    asyncio.run(run_requests(send, 6, LoadLevel(), seed=0))
    assert send.max == 6


def test_requests_start_no_earlier_than_their_arrival_offset():
    level = LoadLevel(request_rate=50.0)
    send = InFlight(seconds=0.0)
    began = time.perf_counter()
    asyncio.run(run_requests(send, 5, level, seed=3))
    for started, offset in zip(send.started, arrival_offsets(5, level, seed=3)):
        assert started - began >= offset - 1e-3


def test_one_failure_cancels_the_rest():
    finished = []

    async def send(index):
        if index == 0:
            raise RuntimeError("boom")
        await asyncio.sleep(5)
        finished.append(index)

    began = time.perf_counter()
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(run_requests(send, 4, LoadLevel(), seed=0))
    assert finished == []
    assert time.perf_counter() - began < 4
