"""A stored vanilla baseline replaces the vanilla engine (counted in engine starts, on real engines),
and one from an older schema or another device is measured again, never reused.

Each session forgets what the ones before it measured, as a new CI job would, but keeps the
engines: with `--spec-max-engines=2` the spec and vanilla engines stay up from one to the next.
"""

import json
import logging

import pytest

#: The same runner, as if it had another GPU: a baseline from one device is never another's.
ANOTHER_DEVICE = """
import pytest
from pytest_specdecode.engines import vllm_info

@pytest.fixture(autouse=True, scope="session")
def _another_device():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vllm_info, "device_name", lambda: "1x NVIDIA H100 80GB HBM3 (driver 580.82)")
        yield
"""
GATED = "import pytest\n\n@pytest.mark.min_acceptance(0.3)\ndef test_gate(spec_run):\n    pass\n"


def test_a_fresh_baseline_skips_the_vanilla_engine_and_a_changed_one_does_not(pytester, tiny_toml, shared_engines,
                                                                              caplog):
    pytester.makepyfile(test_gate=GATED)
    baselines = pytester.path / "baselines"

    def run(*args: str) -> pytest.RunResult:
        shared_engines.forget()
        return pytester.runpytest(f"--spec-config={tiny_toml}", f"--spec-baseline-dir={baselines}",
                                  "--spec-max-engines=2", *args, plugins=[shared_engines])

    def session(name: str) -> dict:
        report = pytester.path / f"{name}.json"
        run(f"--spec-report={report}").assert_outcomes(passed=1)
        return json.loads(report.read_text())

    first = session("first")
    assert first["runs"][0]["baseline"]["source"] == "measured"
    assert len(list((baselines / "baselines").glob("*.json"))) == 1

    with caplog.at_level(logging.WARNING, logger="vllm"):
        shared_engines.stop()  # so that the engines this session needs are the ones it starts
    # both engines stopped at once, each core given the time it needs to exit (vLLM's default 5 s ran
    # out for two of the demo's engines tearing down at once on two cores, and it SIGKILLed them)
    assert not [r.getMessage() for r in caplog.records if "force killing" in r.getMessage()]
    second = session("second")
    assert set(second["engine_start_s"]["tiny"]) == {"spec"}  # no vanilla engine was started
    # the start taken apart from the engine's own log, which stays in the session's folder
    phases = second["engine_start_phases"]["tiny"]["spec"]
    assert phases["weights_s"] > 0 and 0 < phases["engine_init_s"] < second["engine_start_s"]["tiny"]["spec"]
    assert list((pytester.path / ".specdecode" / "logs").glob("vllm-offline-spec-*.log"))
    cached = second["runs"][0]["baseline"]
    assert cached["source"] == "cached" and cached["fingerprint"] == first["runs"][0]["baseline"]["fingerprint"]
    assert cached["age_s"] > 0
    assert second["runs"][0]["vanilla"]["output_tokens"] == first["runs"][0]["vanilla"]["output_tokens"]
    assert second["runs"][0]["outputs_match"] is not None

    stored = baselines / "baselines" / f"{cached['fingerprint']}.json"
    older = json.loads(stored.read_text())
    stored.write_text(json.dumps({**older, "schema_version": older["schema_version"] - 1}))
    from_older_schema = session("older-schema")  # its fields would read as empty: measured again, never read
    assert from_older_schema["runs"][0]["baseline"]["source"] == "measured"
    assert json.loads(stored.read_text())["schema_version"] == older["schema_version"]  # and stored anew

    pytester.makeconftest(ANOTHER_DEVICE)
    elsewhere = session("another-device")
    assert elsewhere["runs"][0]["baseline"]["source"] == "measured"
    assert elsewhere["runs"][0]["baseline"]["fingerprint"] != cached["fingerprint"]
    (pytester.path / "conftest.py").unlink()

    tiny_toml.write_text(tiny_toml.read_text().replace("max_tokens = 12", "max_tokens = 10"))  # the workload changed
    third = session("third")
    assert third["runs"][0]["baseline"]["source"] == "measured"
    assert third["runs"][0]["baseline"]["fingerprint"] != cached["fingerprint"]

    corrupt = baselines / "baselines" / f"{third['runs'][0]['baseline']['fingerprint']}.json"
    corrupt.write_text("{not json")
    result = run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{corrupt}*"])
