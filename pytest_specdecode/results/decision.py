"""What a config's figures decide: where speculation pays, where to leave it off and why.

Teams measure to decide (ship the head or not, which K, at what load to switch speculation off),
so every report ends in statements, each carrying its figure and interval. The rules are the
field's rules of thumb (docs/reading-the-numbers.md cites them): acceptance below 0.5 is
net-negative; a tail regression beyond tolerance or a draft eating more than a share of the KV
cache costs more than the throughput gains; speculation does not shorten the time to the first
token. A statement whose interval straddles its line says "unresolved", never a guess.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .break_even import BreakEven
from .ranking import rank
from .run import RunResult
from .schema import Model

#: Below this acceptance rate speculation is net-negative (the seed articles' rule of thumb).
MIN_USEFUL_ACCEPTANCE = 0.5

Advice = Literal["use", "leave off", "unresolved", "why"]


class Statement(Model):
    """One line of a decision: what to do (or why a figure is what it is) where, with its evidence."""

    advice: Advice = Field(description="use / leave off / unresolved (the interval straddles the line) / why")
    where: str | None = Field(default=None, description="the run's condition label, or None for the whole config")
    text: str


def _interval(ci: list[float] | tuple[float, float] | None, spec: str = ".2f") -> str:
    return "no interval" if ci is None else f"{ci[0]:{spec}}-{ci[1]:{spec}}"


def speed_statement(run: RunResult) -> Statement | None:
    """Whether the run is faster than vanilla, by its interval: throughput, or TPOT at a paced rate."""
    metric = "throughput" if run.speedup is not None else "tpot"
    value, ci = run.speedup_of(metric), run.speedup_ci_of(metric)
    if value is None or not run.valid:
        return None
    figure = f"{metric} speedup {value:.2f}x ({_interval(ci)}, level {run.interval_level:.3g})"
    if run.random_weights:  # real step costs at a meaningless acceptance: a figure, not advice
        return Statement(advice="why", where=run.condition.label,
                         text=f"{figure} at the acceptance of random weights: not a verdict on the method")
    if ci is not None and ci[0] > 1:
        return Statement(advice="use", where=run.condition.label, text=f"pays: {figure}")
    if ci is not None and ci[1] < 1:
        return Statement(advice="leave off", where=run.condition.label, text=f"slower than vanilla: {figure}")
    unresolved = "the interval straddles 1x" if ci is not None else "fewer than 3 windows a side"
    return Statement(advice="unresolved", where=run.condition.label,
                     text=f"{figure}: {unresolved}; more windows ([run] max_repeats) or longer ones would resolve it")


def why_statement(run: RunResult) -> Statement | None:
    """The speedup taken apart: tokens gained per engine step over what a step costs, and what the
    acceptance alone predicts, naming the factor that lost a speedup short of its acceptance."""
    gain, cost, length, measured = run.tokens_per_step_gain, run.step_cost_ratio, run.mean_acceptance_length, run.speedup
    if None in (gain, cost, length, measured) or not run.valid:
        return None
    text = (f"accepts {length:.2f} tokens per verify step and its engine steps yield {gain:.2f}x vanilla's tokens, "
            f"but each step costs {cost:.2f}x a vanilla step ({_interval(run.step_cost_ratio_ci)}): "
            f"{gain:.2f} / {cost:.2f} = {measured:.2f}x measured; acceptance alone predicts {length / cost:.2f}x")
    if measured < 0.8 * length:  # well short of its acceptance: name the factor that lost more
        if length / gain >= cost:
            text += (f"; most is lost in tokens per step ({length:.2f} accepted, {gain:.2f}x yielded): steps without "
                     "a draft, or emptier batches, lose tokens per step (a batch runs until its slowest request ends)")
        else:
            text += (f"; most is lost to the step cost ({cost:.2f}x): a costly draft or verify pass, or a "
                     "compute-bound batch")
    return Statement(advice="why", where=run.condition.label, text=text)


def tokens_per_step(acceptance: float, k: int) -> float:
    """The seed's expected tokens per verify step when each draft token is accepted with probability
    `acceptance`, independently, until the first rejection: 1 + a + a^2 + ... + a^K."""
    return float(sum(acceptance ** i for i in range(k + 1)))


def break_even_acceptance(cost: float, k: int) -> float | None:
    """The per-token acceptance at which K drafts a step pay for a step costing `cost` vanilla
    steps (tokens_per_step = cost); None when even full acceptance (K + 1 tokens) does not."""
    if cost <= 1:
        return 0.0
    if tokens_per_step(1.0, k) <= cost:
        return None
    low, high = 0.0, 1.0
    for _ in range(50):  # tokens_per_step grows with acceptance: bisect
        middle = (low + high) / 2
        low, high = (middle, high) if tokens_per_step(middle, k) < cost else (low, middle)
    return (low + high) / 2


def random_weights_statement(run: RunResult) -> Statement | None:
    """What real weights would need, from the one figure random weights measure right: the cost of
    a speculative step. Single-stream arithmetic (every step verifies K drafts of one request)."""
    cost, k = run.step_cost_ratio, run.num_speculative_tokens
    if not run.random_weights or cost is None or not run.valid:
        return None
    needed = break_even_acceptance(cost, k)
    if needed is None:
        return Statement(advice="why", where=run.condition.label,
                         text=f"a step costs {cost:.2f}x a vanilla step: even K={k} drafts all accepted "
                              f"({k + 1} tokens a step) would not pay")
    return Statement(advice="why", where=run.condition.label,
                     text=f"a step costs {cost:.2f}x a vanilla step ({_interval(run.step_cost_ratio_ci)}): real "
                          f"weights pay above a per-token acceptance of {needed:.2f} at K={k} "
                          f"(1 + a + ... + a^{k} tokens a step)")


def acceptance_statement(run: RunResult) -> Statement | None:
    rate, ci = run.acceptance_rate, run.acceptance_rate_ci
    if rate is None or not run.valid or run.random_weights:  # random weights: acceptance is noise, no advice
        return None
    figure = f"acceptance {rate:.3f} ({_interval(ci, '.3f')})"
    if ci is not None and ci[1] < MIN_USEFUL_ACCEPTANCE:
        return Statement(advice="leave off", where=run.condition.label,
                         text=f"{figure} is below {MIN_USEFUL_ACCEPTANCE}: speculation is net-negative at this temperature")
    if ci is not None and ci[0] < MIN_USEFUL_ACCEPTANCE:
        return Statement(advice="unresolved", where=run.condition.label,
                         text=f"{figure} straddles {MIN_USEFUL_ACCEPTANCE}: near break-even; judge by the speedup and P99")
    return None


def p99_statement(run: RunResult, tolerance: float) -> Statement | None:
    regression, ci = run.p99_regression["e2e"], run.p99_regression_ci.get("e2e")
    if regression is None or not run.p99_judged or not run.valid:
        return None
    figure = f"E2E P99 {regression:+.0%} vs vanilla ({_interval(ci, '+.2f')})"
    if ci is not None and ci[0] > tolerance:
        return Statement(advice="leave off", where=run.condition.label,
                         text=f"{figure}, beyond the {tolerance:.0%} tolerance: the tail pays for the mean")
    return None


def ttft_statement(run: RunResult, tolerance: float) -> Statement | None:
    spec, vanilla = run.spec.ttft_ms.p50, run.vanilla.ttft_ms.p50
    if spec is None or not vanilla or spec <= vanilla * (1 + tolerance):
        return None
    return Statement(advice="why", where=run.condition.label,
                     text=f"TTFT P50 {spec / vanilla:.2f}x vanilla's ({spec:.0f} vs {vanilla:.0f} ms): speculation "
                          "shortens decoding, not the first token; a TTFT-bound SLO gains nothing")


def kv_statement(runs: list[RunResult], limit: float) -> Statement | None:
    ratio = next((run.kv_cache_ratio for run in runs if run.kv_cache_ratio is not None), None)
    if ratio is None or ratio >= 1:
        return None
    loss = 1 - ratio
    where = "of vanilla's KV-cache capacity (the draft's weights and its own KV cache)"
    if loss > limit:
        return Statement(advice="leave off", text=f"speculation takes {loss:.0%} {where}, over {limit:.0%}: fewer "
                         "concurrent or long sequences fit; where memory binds, that costs more than the speedup gains")
    return Statement(advice="why", text=f"speculation takes {loss:.0%} {where}, within {limit:.0%}")


def break_even_statement(found: BreakEven) -> Statement | None:
    if found.first_level_not_paying is None:
        return None
    ci = found.speedup_ci
    shown = ci is not None and ci[1] < 1
    label = "c" if found.axis == "concurrency" else "rate"
    return Statement(
        advice="leave off" if shown else "unresolved", where=f"T={found.temperature:g}",
        text=f"stops paying at {label}={found.first_level_not_paying:g} ({found.metric} speedup "
             f"{found.speedup_at_first_level_not_paying:.2f}x, {_interval(ci)})"
             + ("" if shown else ": not shown below 1 there"),
    )


def best_k_statements(runs: list[RunResult]) -> list[Statement]:
    """In a K sweep, per condition: the K whose speedup beats the next one's by its interval, or
    that none does, and whether the per-position advice agrees with what the sweep measured."""
    swept = [run for run in runs if run.k_swept]
    statements = []
    for ranking in rank(swept):
        best = next(run for run in swept if run.condition.model_copy(update={"k": None}).label == ranking.condition
                    and f"{run.config_name} K={run.num_speculative_tokens}" == ranking.entries[0].name)
        advice: Advice = "use" if ranking.winner else "unresolved"
        head = f"best K = {best.num_speculative_tokens}" if ranking.winner else "no K is shown best"
        statements.append(Statement(advice=advice, where=ranking.condition, text=f"{head}: {ranking.summary}"))
    return statements


def decide(runs: list[RunResult], break_evens: list[BreakEven], p99_tolerance: float, kv_limit: float) -> list[Statement]:
    """Every statement the figures support, run by run, then the config's memory and break-even."""
    statements: list[Statement | None] = []
    for run in runs:
        statements += [speed_statement(run), why_statement(run), acceptance_statement(run), random_weights_statement(run),
                       p99_statement(run, p99_tolerance), ttft_statement(run, p99_tolerance)]
    statements += best_k_statements(runs)
    statements.append(kv_statement(runs, kv_limit))
    random = any(run.random_weights for run in runs)  # break-even at a random acceptance is a figure, not advice
    statements += [_as_why(break_even_statement(found), random) for found in break_evens]
    return [statement for statement in statements if statement is not None]


def _as_why(statement: Statement | None, random_weights: bool) -> Statement | None:
    if statement is None or not random_weights:
        return statement
    return statement.model_copy(update={"advice": "why", "text": f"{statement.text}, at the acceptance of random weights"})
