"""Every experiment script runs in its --quick mode (the full runs produce the docs' figures)."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # each quick mode trains for a minute or two

SCRIPTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_experiment_quick_mode(script, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    csvs = list(tmp_path.glob("*.csv"))
    pngs = list(tmp_path.glob("*.png"))
    assert csvs and pngs
    assert len(pd.read_csv(csvs[0])) > 0
