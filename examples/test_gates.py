"""Gates a team would keep in CI, run against the CPU examples.

    pytest --spec-config=examples/cpu-ngram.toml examples/

The unbound tests measure whichever config `--spec-config` names; `TestBadDraft` is bound to
cpu-draft.toml, whose 8-layer draft is bad on purpose: its gate fails (marked xfail here, so that
the demo stays green while showing what a red gate says: run with `--runxfail` to see it fail).
"""

import pytest

from pytest_specdecode import assert_lossless, assert_min_acceptance


@pytest.mark.min_acceptance(temperature=0.0)  # threshold from the config's [gates]
@pytest.mark.min_speedup(0.4, temperature=0.0)  # on a 2-core CPU speculation rarely pays: this catches collapses
def test_acceptance_gate(spec_run):
    pass


def test_first_draft_position_is_accepted_most(spec_run):
    greedy = spec_run.run(temperature=0.0)
    assert_min_acceptance(spec_run, 0.3, temperature=0.0, position=0)
    assert greedy.per_position_acceptance[0] >= greedy.per_position_acceptance[-1]


def test_greedy_outputs_mostly_match_vanilla(spec_run, spec_config):
    assert_lossless(spec_run, min_match=spec_config.gates.lossless_min_match or 1.0)


@pytest.mark.spec_config("cpu-draft.toml")
class TestBadDraft:
    @pytest.mark.xfail(strict=True, reason="the 8-layer draft is bad on purpose: acceptance near 0")
    @pytest.mark.min_acceptance(0.5, temperature=0.0)
    def test_draft_acceptance_gate(self, spec_run):
        pass
