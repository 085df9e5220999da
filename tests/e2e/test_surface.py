"""The parts of the pytest surface that must work without starting any engine."""

import subprocess
import sys


def test_markers_are_registered_and_strict_markers_accepts_them(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.min_acceptance(0.5)
        @pytest.mark.lossless
        def test_x(spec_run):
            pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no spec-config: pass --spec-config=FILE*"])
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["*spec_config(path)*", "*min_acceptance(x, *", "*min_speedup(x, *", "*max_p99_regression(x, *", "*lossless(min_match=1.0, *"])


def test_a_threshold_out_of_range_is_a_usage_error_naming_the_test(pytester, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[model]\nname = "m"\n[speculative]\nmethod = "ngram"\nnum_speculative_tokens = 2\n')
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.min_acceptance(1.5)
        def test_too_strict(spec_run):
            pass
        """
    )
    result = pytester.runpytest(f"--spec-config={config}")
    assert result.ret == 4  # pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_too_strict[[]c[]]: min_acceptance: threshold must be within [[]0, 1[]], got 1.5"])


HEAVY = ("vllm", "torch", "numpy", "scipy", "pydantic", "aiohttp", "httpx", "transformers")


def test_unused_plugin_imports_nothing_heavy():
    """Imported in every pytest run of every project that installs it: stdlib and pytest only."""
    code = f"import sys, pytest_specdecode.plugin; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_a_run_that_uses_no_config_loads_nothing_heavy(pytester):
    pytester.makeconftest(
        f"import sys\n\ndef pytest_unconfigure(config):\n"
        f"    print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:anyio", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["HEAVY []"])


def test_help_lists_every_option(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--spec-config=TOML*", "*--spec-report=PATH*", "*--spec-mode*", "*--spec-max-engines=N*"])


def test_gate_markers_alone_make_a_test_need_a_config(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.min_speedup(1.0)
        class TestGated:
            def test_no_fixture(self):
                pass

        def test_plain_tests_are_untouched():
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1, passed=1)
    result.stdout.fnmatch_lines(["*no spec-config*"])


def test_a_prompt_longer_than_max_model_len_is_one_line_before_any_engine(pytester, ngram_toml):
    """With the target's real tokenizer: was a raw VLLMValidationError after an engine had started."""
    config = pytester.path / "short.toml"
    config.write_text(ngram_toml.read_text().replace("max_model_len = 1024", "max_model_len = 16"))
    pytester.makepyfile("def test_a(spec_run):\n    pass\n\ndef test_b(spec_run):\n    pass\n")
    result = pytester.runpytest(f"--spec-config={config}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*short.toml: [[]workload[]] prompt 0 is * tokens, which leaves no room to answer "
                                 "within max_model_len = 16: *"])
    assert "starting spec engine" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()
