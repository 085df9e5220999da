"""docs/benchmarks.md and its archive are what `benchmarks/tables.py` renders from the stored JSON:
a figure edited by hand, or a result file changed without the page, fails here."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args, page", [([], "benchmarks.md"), (["--archive"], "benchmarks-archive.md")])
def test_benchmarks_page_is_rendered_from_the_results(args, page):
    rendered = subprocess.run([sys.executable, "tables.py", *args], cwd=ROOT / "benchmarks", capture_output=True,
                              text=True, check=True).stdout
    assert rendered == (ROOT / "docs" / page).read_text(), f"run: cd benchmarks && python tables.py {' '.join(args)} > ../docs/{page}"
