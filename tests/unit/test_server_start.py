"""Where a `vllm serve` start went, read from its log, and where its log is kept."""

from pathlib import Path

import pytest

from pytest_specdecode.engines.start_log import start_phases
from pytest_specdecode.report.sections import start_lines
from pytest_specdecode.results import ConfigResult

#: vLLM 0.26's own lines from an H200 start (benchmarks/results/h200-8b-draft.log), trimmed
LOG = """\
(EngineCore pid=1594) INFO 12-03 10:19:01 [gpu_model_runner.py:4423] Model loading took 13.75 GiB memory and 1.13 seconds
(EngineCore pid=1594) INFO 12-03 10:19:24 [monitor.py:53] torch.compile took 2.15 s in total
(EngineCore pid=1594) INFO 12-03 10:19:43 [gpu_model_runner.py:6844] Graph capturing finished in 7 secs, took 0.74 GiB
(EngineCore pid=1594) INFO 12-03 10:19:44 [core.py:340] init engine (profile, create kv cache, warmup model) took 26.58 s (compilation: 6.21 s)
"""


def test_a_server_start_is_taken_apart_from_vllms_own_log_lines(tmp_path):
    """A start of 53 s at 8B could not be explained afterwards: the log was deleted after a clean
    stop and nothing read it. Now the phases go into the report and the terminal."""
    log = tmp_path / "vllm-serve-spec.log"
    log.write_text(LOG)
    phases = start_phases(log, total_s=53.0)
    assert phases == {"weights_s": 1.13, "compile_s": 2.15, "graph_capture_s": 7.0, "engine_init_s": 26.58,
                      "other_s": pytest.approx(53.0 - 1.13 - 26.58)}
    assert start_phases(tmp_path / "missing.log", 10.0) == {}
    result = ConfigResult(config="c.toml", config_name="c", runs=[], engine_start_s={"spec": 53.0},
                          engine_start_phases={"spec": phases})
    [line] = start_lines([result])
    assert line == ("c: spec engine started in 53.0 s: weights 1.1 s, vLLM init 26.6 s, of which torch.compile 2.1 s, "
                    "and CUDA graphs 7.0 s, the rest (processes, imports, a server's API) 25.3 s")


def test_spec_log_dir_reaches_every_server_the_session_starts(tmp_path):
    from pytest_specdecode.config.spec import parse_config
    from pytest_specdecode.measure.measurer import engine_specs

    config = parse_config({"model": {"name": "org/m"}, "speculative": {"method": "ngram", "num_speculative_tokens": 3},
                           "run": {"mode": "server"}}, tmp_path / "c.toml")
    spec, vanilla = engine_specs(config, {}, None, str(tmp_path / "logs"))
    assert spec.log_dir == vanilla.log_dir == str(tmp_path / "logs")
    assert spec.key == engine_specs(config, {})[0].key  # where a log goes is not which engine runs
