#!/usr/bin/env bash
# One step of the H100 session behind docs/benchmarks.md. Run from the repo root on the GPU
# machine after ../shared/gpu's setup.sh (vLLM 0.26.0 in /tmp/site, SmolLM2 in /tmp/models):
#   bash benchmarks/gpu_session.sh offline|server [ngram draft self-draft]   (default: all three)
#   bash benchmarks/gpu_session.sh overhead|baseline|bench-serve|engine-start|false-alarm
#   bash benchmarks/gpu_session.sh gates|server-gates [ngram draft self-draft eagle3]   (lossless at every temperature)
#   bash benchmarks/gpu_session.sh eagle3-data|eagle3-train   (speculators wheels in /tmp/stage/spec; see benchmarks/gpu/eagle3)
# SESSION_LIMIT_S stops a pytest session with SIGTERM after that many seconds: its report keeps what was measured.
#   bash benchmarks/gpu_session.sh bench-serve [ngram|eagle3]   (plugin vs `vllm bench serve`, concurrency 1 and 16)
# Results go to $OUT (the device tool's folder) or benchmarks/results. Each step fits one
# 10-minute device call; server steps share vanilla through the baseline folder on the machine.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 SPECDECODE_MODEL_DIR=/tmp/models PYTHONUNBUFFERED=1
out=${OUT:-benchmarks/results}
mkdir -p "$out"
step=${1:?offline, server, gates, overhead, baseline, bench-serve, engine-start or false-alarm}
shift
names=("${@:-ngram draft self-draft}")
names=(${names[*]})
configs=()
for name in "${names[@]}"; do configs+=("--spec-config=examples/gpu-$name.toml"); done
tag=$(IFS=-; echo "${names[*]}")
gate_session() {
  # the plugin is not pip-installed there, so it is loaded by name; the bound CPU test is skipped
  timeout -s TERM -k 30 "${SESSION_LIMIT_S:-3000}" python3 -m pytest -p pytest_specdecode.plugin -p no:cacheprovider examples/test_gates.py -k "not TestBadDraft" \
    "${configs[@]}" --spec-max-engines=2 --spec-baseline-dir=/tmp/specdecode-baselines -rA "$@"
}
case $step in
  offline)
    gate_session --spec-report="$out/h100-offline.json" 2>&1 | tee "$out/h100-offline.log" ;;
  server)
    gate_session --spec-mode=server --spec-report="$out/h100-server-$tag.json" 2>&1 | tee "$out/h100-server-$tag.log" ;;
  gates)
    timeout -s TERM -k 30 "${SESSION_LIMIT_S:-3000}" python3 -m pytest -p pytest_specdecode.plugin -p no:cacheprovider benchmarks/gpu/test_h100_gates.py "${configs[@]}" \
      --spec-max-engines=2 -rA --spec-report="$out/h100-gates-$tag.json" 2>&1 | tee "$out/h100-gates-$tag.log" ;;
  server-gates)
    timeout -s TERM -k 30 "${SESSION_LIMIT_S:-3000}" python3 -m pytest -p pytest_specdecode.plugin -p no:cacheprovider benchmarks/gpu/test_h100_gates.py "${configs[@]}" \
      --spec-mode=server --spec-max-engines=2 -rA --spec-report="$out/h100-server-gates-$tag.json" 2>&1 \
      | tee "$out/h100-server-gates-$tag.log" ;;
  engine-start)
    python3 benchmarks/engine_start.py examples/gpu-ngram.toml --rounds 2 --out "$out/h100-engine-start.json" 2>&1 | tail -20 ;;
  false-alarm)
    python3 benchmarks/lossless_false_alarm.py examples/gpu-ngram.toml --rounds 48 --prompts 64 --max-tokens 128 \
      --temperature 0.8 --out "$out/h100-lossless-false-alarm.json" 2>&1 | tail -20 ;;
  overhead)
    python3 benchmarks/overhead.py examples/gpu-ngram.toml --out "$out/h100-overhead.json" 2>&1 | tail -20 ;;
  baseline)
    python3 benchmarks/baseline_cache.py examples/gpu-ngram.toml --out "$out/h100-baseline-cache.json" \
      -- -p pytest_specdecode.plugin 2>&1 | tail -30 ;;
  bench-serve)
    # the first result file kept its old name; later configs are named after their config
    name=${names[0]}; [ "$name" = ngram ] && file=h100-vs-bench-serve.json || file=h100-vs-bench-serve-$name.json
    python3 benchmarks/vs_bench_serve.py "examples/gpu-$name.toml" --concurrency 1 16 --out "$out/$file" 2>&1 | tail -20 ;;
  eagle3-data)
    python3 benchmarks/gpu/eagle3/generate.py --target /tmp/models/smollm2-135m --out /tmp/eagle3/data.pt \
      --prompts "${EAGLE3_PROMPTS:-2000}" 2>&1 | grep -v -i warn | tail -5 | tee "$out/eagle3-generate.log" ;;
  eagle3-train)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/stage/spec/*.whl
    python3 benchmarks/gpu/eagle3/train.py --target /tmp/models/smollm2-135m --data /tmp/eagle3/data.pt \
      --out /tmp/models/smollm2-135m-eagle3 --minutes "${EAGLE3_MINUTES:-3}" --log "$out/eagle3-train.json" 2>&1 \
      | grep -E "^(step|held|datasets)|Error|error" | tee "$out/eagle3-train.log" ;;
esac
