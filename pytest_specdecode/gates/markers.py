"""The gate markers' names and help: what `pytest --markers` shows. Standard library only, since
the plugin registers them in every pytest run; what each marker means (options, range, figure,
direction, interval) is its row of `kinds.KINDS`, which reads its help from here. "Shown" means the
whole interval lies on that side; anything else is inconclusive (`--spec-inconclusive`)."""

GATE_MARKERS = ("min_acceptance", "min_speedup", "max_p99_regression", "lossless", "max_kv_capacity_loss")

MARKER_HELP = {
    "min_acceptance": "min_acceptance(x, *, temperature=None, position=None, percentile=None, concurrency=None, "
    "request_rate=None): fail when acceptance (accepted / drafted tokens; at one 0-based draft position; or a "
    "percentile of per-request acceptance) is shown below x, pass when shown at or above it",
    "min_speedup": "min_speedup(x, *, metric='throughput'|'tpot', temperature=None, concurrency=None, "
    "request_rate=None): fail when spec/vanilla speed is shown below x, pass when shown at or above it",
    "max_p99_regression": "max_p99_regression(x, *, metric='e2e'|'tpot'|'ttft'|'itl', temperature=None, "
    "concurrency=None, request_rate=None): fail when spec P99 is shown above vanilla P99 by more than x "
    "(0.10 = 10%), pass when shown within it",
    "lossless": "lossless(min_match=1.0, *, temperature=None): at T=0 fail when fewer than min_match "
    "of outputs equal vanilla's token for token; at T>0 pass when the outputs' target log-likelihood is shown "
    "within [gates] lossless_margin of vanilla's, fail when shown different",
    "max_kv_capacity_loss": "max_kv_capacity_loss(x=[gates] max_kv_capacity_loss, *, temperature=None, "
    "concurrency=None, request_rate=None): fail when the spec engine's KV-cache capacity is below vanilla's by more "
    "than x (0.15 = 15%: the draft's weights and its own KV), pass when within it",
}
