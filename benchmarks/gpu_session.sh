#!/usr/bin/env bash
# One step of the H100 session behind docs/benchmarks.md. Run from the repo root on the GPU
# machine after ../shared/gpu's setup.sh (vLLM 0.26.0 in /tmp/site, SmolLM2 in /tmp/models):
#   bash benchmarks/gpu_session.sh offline|server [ngram draft self-draft]   (default: all three)
#   bash benchmarks/gpu_session.sh overhead|baseline|bench-serve|engine-start|false-alarm
#   bash benchmarks/gpu_session.sh gates|server-gates [ngram draft self-draft eagle3]   (lossless at every temperature)
#   bash benchmarks/gpu_session.sh shape|shape-server|jitter|floor [8b-draft|8b-ngram]   (8B-shaped target, random
#     weights; floor: a gate session vs a bare vllm.LLM script doing the same starts, warmups and windows)
#   bash benchmarks/gpu_session.sh eagle3-data|eagle3-train   (speculators wheels in /tmp/stage/spec; see benchmarks/gpu/eagle3)
#   bash benchmarks/gpu_session.sh client-timing   (the plugin's stream client against a server with known chunk times)
# SESSION_LIMIT_S stops a pytest session with SIGTERM after that many seconds: its report keeps what was measured.
#   bash benchmarks/gpu_session.sh bench-serve|overhead [ngram|eagle3]   (plugin vs `vllm bench serve` at concurrency
#     1 and 16, or CONCURRENCY="1 16 64", ROUNDS turns each; plugin vs a bare `vllm.LLM`, ROUNDS alternating rounds)
# Results go to $OUT (the device tool's folder) or benchmarks/results. Each step fits one
# 10-minute device call; server steps share vanilla through the baseline folder on the machine.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 SPECDECODE_MODEL_DIR=/tmp/models PYTHONUNBUFFERED=1
out=${OUT:-benchmarks/results}
mkdir -p "$out"
# result files are named for the card they were measured on (h100-..., h200-...)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | grep -o -i 'h[0-9][0-9]0' | tr 'H' 'h')
gpu=${gpu:-gpu}
step=${1:?offline, server, gates, overhead, baseline, bench-serve, engine-start or false-alarm}
shift
names=("${@:-ngram draft self-draft}")
names=(${names[*]})
configs=()
for name in "${names[@]}"; do configs+=("--spec-config=examples/gpu-$name.toml"); done
tag=$(IFS=-; echo "${names[*]}")
shape=8b-draft; [ $# -gt 0 ] && shape=$1   # shape, shape-server, jitter and floor: one examples/gpu-<name>.toml
gate_session() {
  # the plugin is not pip-installed there, so it is loaded by name; the bound CPU test is skipped
  timeout -s TERM -k 30 "${SESSION_LIMIT_S:-3000}" python3 -m pytest -p pytest_specdecode.plugin -p no:cacheprovider examples/test_gates.py -k "not TestBadDraft" \
    "${configs[@]}" --spec-max-engines=2 --spec-baseline-dir=/tmp/specdecode-baselines -rA "$@"
}
case $step in
  offline)
    gate_session --spec-report="$out/$gpu-offline.json" 2>&1 | tee "$out/$gpu-offline.log" ;;
  server)
    gate_session --spec-mode=server --spec-report="$out/$gpu-server-$tag.json" 2>&1 | tee "$out/$gpu-server-$tag.log" ;;
  gates)
    timeout -s TERM -k 30 "${SESSION_LIMIT_S:-3000}" python3 -m pytest -p pytest_specdecode.plugin -p no:cacheprovider benchmarks/gpu/test_h100_gates.py "${configs[@]}" \
      --spec-max-engines=2 -rA --spec-report="$out/$gpu-gates-$tag.json" 2>&1 | tee "$out/$gpu-gates-$tag.log" ;;
  server-gates)
    timeout -s TERM -k 30 "${SESSION_LIMIT_S:-3000}" python3 -m pytest -p pytest_specdecode.plugin -p no:cacheprovider benchmarks/gpu/test_h100_gates.py "${configs[@]}" \
      --spec-mode=server --spec-max-engines=2 -rA --spec-report="$out/$gpu-server-gates-$tag.json" 2>&1 \
      | tee "$out/$gpu-server-gates-$tag.log" ;;
  shape)
    # an 8B-shaped target with a 1B-shaped draft, random weights (examples/gpu-8b-draft*.toml)
    timeout -s TERM -k 30 "${SESSION_LIMIT_S:-540}" python3 -m pytest -p pytest_specdecode.plugin -p no:cacheprovider \
      examples/gpu/test_production_shape.py --spec-config="examples/gpu-$shape.toml" \
      --spec-max-engines=2 -rA --spec-report="$out/$gpu-$shape.json" 2>&1 | tee "$out/$gpu-$shape.log" ;;
  shape-server)
    timeout -s TERM -k 30 "${SESSION_LIMIT_S:-540}" python3 -m pytest -p pytest_specdecode.plugin -p no:cacheprovider \
      examples/gpu/test_production_shape.py --spec-config="examples/gpu-$shape-server.toml" --spec-mode=server \
      --spec-max-engines=2 -rA --spec-report="$out/$gpu-$shape-server.json" 2>&1 | tee "$out/$gpu-$shape-server.log" ;;
  floor)
    python3 benchmarks/session_floor.py "examples/gpu-$shape.toml" --test examples/gpu/test_production_shape.py \
      --pairs "${PAIRS:-1}" --report-dir "$out" --out "$out/$gpu-session-floor-$shape.json" 2>&1 | tail -40 ;;
  jitter)
    [ "$shape" = 8b-draft ] && file=$gpu-window-jitter.json || file=$gpu-window-jitter-$shape.json
    python3 benchmarks/window_jitter.py "examples/gpu-$shape.toml" --rounds "${ROUNDS:-6}" --ballast 2000000 \
      --out "$out/$file" 2>&1 | tail -40 ;;
  engine-start)
    python3 benchmarks/engine_start.py examples/gpu-ngram.toml --rounds 2 --out "$out/$gpu-engine-start.json" 2>&1 | tail -20 ;;
  false-alarm)
    python3 benchmarks/lossless_false_alarm.py examples/gpu-ngram.toml --rounds 48 --prompts 64 --max-tokens 128 \
      --temperature 0.8 --out "$out/$gpu-lossless-false-alarm.json" 2>&1 | tail -20 ;;
  overhead)
    # long rounds (1024 tokens each, EOS ignored): see benchmarks/overhead.py
    name=${names[0]}; [ "$name" = ngram ] && file=$gpu-overhead.json || file=$gpu-overhead-$name.json
    python3 benchmarks/overhead.py "examples/gpu-$name.toml" --rounds "${ROUNDS:-5}" --max-tokens 1024 --ignore-eos \
      --out "$out/$file" 2>&1 | tail -20 ;;
  baseline)
    python3 benchmarks/baseline_cache.py examples/gpu-ngram.toml --out "$out/$gpu-baseline-cache.json" \
      -- -p pytest_specdecode.plugin 2>&1 | tail -30 ;;
  bench-serve)
    # the first result file kept its old name; later configs are named after their config
    name=${names[0]}; [ "$name" = ngram ] && file=$gpu-vs-bench-serve.json || file=$gpu-vs-bench-serve-$name.json
    python3 benchmarks/vs_bench_serve.py "examples/gpu-$name.toml" --concurrency ${CONCURRENCY:-1 16} --rounds "${ROUNDS:-2}" \
      --out "$out/$file" 2>&1 | tail -20 ;;
  client-timing)
    # no GPU work: the plugin's client and bench serve's against a server with known chunk times, on
    # the GPU host's cores (the 2-core runner's figures are in docs/benchmarks.md)
    python3 benchmarks/client_timing.py --concurrency 1 16 64 --rounds "${ROUNDS:-3}" --out "$out/$gpu-client-timing.json" \
      2>&1 | tail -5 ;;
  eagle3-data)
    python3 benchmarks/gpu/eagle3/generate.py --target /tmp/models/smollm2-135m --out /tmp/eagle3/data.pt \
      --prompts "${EAGLE3_PROMPTS:-2000}" 2>&1 | grep -v -i warn | tail -5 | tee "$out/eagle3-generate.log" ;;
  eagle3-train)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/stage/spec/*.whl
    python3 benchmarks/gpu/eagle3/train.py --target /tmp/models/smollm2-135m --data /tmp/eagle3/data.pt \
      --out /tmp/models/smollm2-135m-eagle3 --minutes "${EAGLE3_MINUTES:-3}" --log "$out/eagle3-train.json" 2>&1 \
      | tee "$out/eagle3-train-full.log" | grep --line-buffered -E "^(step|held|sav|datasets|Timeout|Thread|  File)|Error|error" \
      | tee "$out/eagle3-train.log" ;;
esac
