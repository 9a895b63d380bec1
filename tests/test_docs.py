"""Examples in the README and docs/ run as written (they cannot rot)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.slow  # every example of every page, end to end
@pytest.mark.parametrize("page", [p for p in PAGES if _python_blocks(p)], ids=lambda p: p.name)
def test_python_examples_run(page):
    namespace: dict = {}
    for block in _python_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)


def test_readme_shows_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = 'pip install -e ".[test]" && pytest -n auto'
    assert test_command in readme and test_command in ci
    assert "pip install -e . && python -m decjax" in readme
