"""Judging: gate kinds and markers, the assertion helpers, failure explanations, a test's verdicts
under the inconclusive policy, and --spec-save / --spec-compare.

Empty on purpose: the plugin imports `markers` in every pytest run, and this file runs first."""
