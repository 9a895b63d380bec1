"""The GPU suite's budget and report, without measuring anything (fast)."""

import json

from benchmarks import gpu


def test_a_spent_budget_skips_every_measurement_and_still_writes_the_report(tmp_path):
    assert gpu.main(["--quick", "--out", str(tmp_path), "--budget-s", "0"]) == 0
    report = json.loads((tmp_path / "gpu_quick.json").read_text())
    assert set(report["sections"]) == set(gpu.SECTIONS)
    for section in report["sections"].values():
        assert section["rows"] == [] and section["skipped"]
    markdown = (tmp_path / "gpu_quick.md").read_text()
    assert "quick mode: not a measurement" in markdown and "skipped (budget)" in markdown


def test_a_failing_measurement_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(plan):
        return [("boom", lambda: 1 / 0), ("fine", lambda: {"value": 1.0})]

    monkeypatch.setitem(gpu.SECTIONS, "record", broken)
    assert gpu.main(["--quick", "--out", str(tmp_path), "--only", "record"]) == 1
    rows = json.loads((tmp_path / "gpu_quick.json").read_text())["sections"]["record"]["rows"]
    assert rows[0]["error"].startswith("ZeroDivisionError") and rows[1]["value"] == 1.0
