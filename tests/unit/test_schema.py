"""Every JSON file we write is strict JSON under one schema version, whatever non-finite numbers
the results hold (request_rate = inf at an unpaced level, an interval that ran off to infinity)."""

import json

import pytest

from pytest_specdecode.measure.baseline import BaselineStore
from pytest_specdecode.gates.kinds import judge, parse_gate
from pytest_specdecode.gates.history import HistoryStore
from pytest_specdecode.report import write_json
from pytest_specdecode.results import Environment
from pytest_specdecode.results.schema import SCHEMA_VERSION

from .builders import figures, result, run


def _strict(path):
    def refuse(constant):
        raise ValueError(f"{path.name}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_report_baselines_and_runs_are_strict_json_of_one_schema_version(tmp_path):
    unpaced = run(request_rate=float("inf"))
    measured = result(run(), unpaced)
    verdicts = judge(parse_gate("min_acceptance", (0.3,), {}), measured, "t")
    verdicts.append(verdicts[0].model_copy(update={"measured": float("nan"), "interval": (0.1, float("inf"))}))
    written = [
        tmp_path / "report.json",
        BaselineStore(tmp_path, environment=Environment).save("ab" * 12, figures(), {"rate": float("-inf")}),
        HistoryStore(tmp_path).save("nightly", measured),
    ]
    write_json(written[0], [measured], verdicts, timing={"total": 1.0})
    documents = [_strict(path) for path in written]
    assert {document["schema_version"] for document in documents} == {SCHEMA_VERSION}
    report = documents[0]
    assert report["runs"][1]["request_rate"] == "Infinity"
    assert report["gates"][-1]["measured"] == "NaN" and report["gates"][-1]["interval"] == [0.1, "Infinity"]
    assert documents[1]["meta"] == {"rate": "-Infinity"}
    assert documents[2]["result"]["runs"][1]["request_rate"] == "Infinity"


def test_a_stored_infinite_rate_reads_back_as_a_float(tmp_path):
    store = HistoryStore(tmp_path)
    store.save("nightly", result(run(request_rate=float("inf"))))
    assert store.load("nightly").runs[0].request_rate == pytest.approx(float("inf"))
