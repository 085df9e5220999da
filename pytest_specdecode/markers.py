"""The gate markers' names and help: what `pytest --markers` shows. Standard library only, since
the plugin registers them in every pytest run; what each marker means (options, range, figure,
direction, interval) is its row of `gates.KINDS`, which reads its help from here."""

GATE_MARKERS = ("min_acceptance", "min_speedup", "max_p99_regression", "lossless")

MARKER_HELP = {
    "min_acceptance": "min_acceptance(x, *, temperature=None, position=None, percentile=None, concurrency=None, "
    "request_rate=None): fail when acceptance (accepted / drafted tokens; at one 0-based draft position; or a "
    "percentile of per-request acceptance) is below x",
    "min_speedup": "min_speedup(x, *, metric='throughput'|'tpot', temperature=None, concurrency=None, "
    "request_rate=None): fail when spec/vanilla speed is below x",
    "max_p99_regression": "max_p99_regression(x, *, metric='e2e'|'tpot'|'ttft'|'itl', temperature=None, "
    "concurrency=None, request_rate=None): fail when spec P99 exceeds vanilla P99 by more than x (0.10 = 10%)",
    "lossless": "lossless(min_match=1.0, *, alpha=0.01, temperature=None): at T=0 fail when fewer than min_match "
    "of outputs equal vanilla's token for token; at T>0 fail when the paired test of the outputs' target "
    "log-likelihood rejects 'same distribution' at false-alarm rate alpha",
}
