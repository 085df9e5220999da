"""README's layout section names every module of the package, in the folder it lives in, and
nothing that is not there: the listing a newcomer reads cannot drift from the tree."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pytest_specdecode"


def layout_bullets() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    return [" ".join(bullet.split("\n\n")[0].split("\n")) for bullet in re.split(r"\n- ", section)[1:]]


def test_readme_layout_matches_the_tree():
    listed: dict[str, set[str]] = {}
    for bullet in layout_bullets():
        folder = re.match(r"`(\w+)/`", bullet)
        key = folder.group(1) if folder else ""
        listed.setdefault(key, set()).update(re.findall(r"`(\w+\.py)`", bullet))
    actual: dict[str, set[str]] = {"": {p.name for p in PACKAGE.glob("*.py")}}
    for sub in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        actual[sub.name] = {p.name for p in sub.glob("*.py")} - {"__init__.py"}
    assert listed == actual


def test_stages_are_listed_in_pipeline_order():
    folders = [m.group(1) for b in layout_bullets() if (m := re.match(r"`(\w+)/`", b))]
    assert folders == ["config", "measure", "engines", "results", "gates", "report"]
