"""The benchmark scripts run (smoke test); their numbers come from real runs, not tests."""

import json

import pytest

from benchmarks import (
    conv_lowering,
    convnets,
    dpsgd_step,
    gpu,
    import_time,
    memory,
    privacy,
    push_sum,
    robust,
    roofline,
    scale,
    simulate_step,
    sweep_speed,
    timing,
    torch_compare,
    torch_convnets,
)

pytestmark = pytest.mark.slow  # the benchmarks' quick modes still time real runs


def test_dpsgd_step_benchmark_quick_mode_writes_results(tmp_path):
    assert dpsgd_step.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "dpsgd_step_quick.json").read_text())
    row = report["step"][0]
    assert row["max_abs_diff"] < 1e-4  # decjax and the hand-written step compute the same thing
    assert row["ratio"] > 0
    gossip = report["gossip"]
    assert gossip["shift_vs_copy"] > 0 and gossip["shift_standalone_vs_copy"] > 0
    # the double-buffered loops time the gossip kernels alone; one carried buffer
    # costs a copy per round (what simulate avoids with two steps per iteration)
    assert gossip["copy_loop_copies"] == gossip["copy_double_buffered_loop_copies"] == 0
    assert gossip["shift_loop_copies"] == 0
    assert gossip["sparse_loop_copies"] == gossip["dense_loop_copies"] == 0
    assert gossip["shift_single_buffer_loop_copies"] >= 1
    assert (tmp_path / "dpsgd_step_quick.md").read_text().startswith("Measured on")


# PyTorch, where installed, warns about its own internals (torch.jit, dynamo); not ours to fix
TORCH_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(torch_compare, marks=TORCH_WARNINGS),
        sweep_speed,
        scale,
        conv_lowering,
        pytest.param(torch_convnets, marks=TORCH_WARNINGS),
        memory,
        push_sum,
        robust,
        privacy,
        import_time,
    ],
    ids=lambda m: m.__name__,
)
def test_other_benchmarks_quick_mode(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent if module is not scale else _repo_root())
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    assert list(tmp_path.glob("*.json")) and list(tmp_path.glob("*.md"))


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def test_convnet_benchmark_quick_mode_writes_results(tmp_path):
    assert convnets.main(["--quick", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "convnets_quick.json").read_text())[0]
    assert row["model"] == "lenet5" and row["ratio"] > 0
    assert row["max_abs_diff"] < 1e-4  # LeNet-5 has no randomness: the same numbers


def test_timing_benchmark_quick_mode_writes_results(tmp_path):
    assert timing.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "timing_quick.json").read_text())["rows"]
    assert {r["algorithm"] for r in rows} >= {"dpsgd ring", "diloco (H = 8)"}
    assert all(r["ratio"] > 0 and r["timed_ms"] > 0 for r in rows)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_gpu_suite_quick_mode_measures_every_section(tmp_path):
    assert gpu.main(["--quick", "--out", str(tmp_path)]) == 0  # 1: a measurement failed
    report = json.loads((tmp_path / "gpu_quick.json").read_text())
    assert set(report["sections"]) == set(gpu.SECTIONS)
    assert report["commit"] and report["jax"] and report["device"]
    for section in report["sections"].values():
        assert section["rows"] and not section["skipped"]
    record = report["sections"]["record"]["rows"]
    assert record[0]["max_abs_diff"] < 1e-5  # the dense-matrix reference: the same numbers
    assert all(row["worker_steps_per_s"] > 0 for row in record[1:])
    limits = report["sections"]["limits"]["rows"][0]
    assert limits["float32 x2 largest_weight_passes_per_step"] == 5  # the census, at its floor
    dpsgd_row = report["sections"]["dpsgd"]["rows"][0]
    assert dpsgd_row["max_abs_diff"] < 1e-4 and dpsgd_row["ratio"] > 0
    assert "## convnets" in (tmp_path / "gpu_quick.md").read_text()
    # resuming one section keeps the others
    assert gpu.main(["--quick", "--out", str(tmp_path), "--only", "gossip"]) == 0
    again = json.loads((tmp_path / "gpu_quick.json").read_text())
    assert set(again["sections"]) == set(gpu.SECTIONS)
    assert again["sections"]["record"] == report["sections"]["record"]


def test_roofline_benchmark_quick_mode_reads_the_step_at_its_floor(tmp_path):
    assert roofline.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "roofline_quick.json").read_text())
    two, one, bf16, stochastic = report["record"]["variants"]
    assert (two["steps_per_iteration"], two["largest_weight_passes_per_step"]) == (2, 5)
    assert (one["copies_per_step"], one["largest_weight_passes_per_step"]) == (1, 7)
    for row in (bf16, stochastic):
        assert row["param_bytes_per_worker"] * 2 == pytest.approx(
            two["param_bytes_per_worker"], rel=1e-6
        )
    for row in report["record"]["variants"]:
        assert row["worker_steps_per_s"] > 0 and row["roofline_worker_steps_per_s"] > 0
    assert len(report["training"]["rows"]) == 6  # two seeds, three stores
    summary = report["training"]["summary"]
    assert {(s["precision"], s["field"]) for s in summary} >= {
        ("bfloat16", "train_loss"),
        ("bfloat16 stochastic", "train_loss"),
    }


def test_simulate_step_benchmark_quick_mode_writes_results(tmp_path):
    assert simulate_step.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "simulate_step_quick.json").read_text())
    assert {r["algorithm"] for r in report["rows"]} == set(simulate_step.ALGORITHMS)
    for row in report["rows"]:
        assert row["max_abs_diff"] < 1e-5  # simulate's program and the hand-written one agree
        assert row["ratio"] > 0 and row["ratio_one"] > 0 and row["ratio_xla_reduction"] > 0
    assert report["evaluation"]["workers_ratio"] > 0
    # "auto" is what the payback rule says: one step per iteration below it, two above
    assert [r["auto_unroll"] for r in report["time_to_result"]] == [1, 2]
    for row in report["time_to_result"]:
        assert row["auto_unroll"] == (2 if row["parameter_steps"] >= 1e9 else 1)
        assert min(row["auto_s"], row["one_s"], row["two_s"], row["hand_s"]) > 0
    assert {r["n"] for r in simulate_step.payback(report)} == {4}
    assert report["sums"][0]["max_abs_diff"] < 1e-4 and report["sums"][0]["reduction_over_dot"] > 0
    passes = {(r["record_every"], r["program"]): r["passes_per_step"] for r in report["census"]}
    assert passes[16, "decjax, two steps per iteration"] == 5  # the floor: no copy
    assert passes[16, "decjax, one step per iteration"] == passes[16, "hand-written"] == 7
    assert passes[1, "hand-written"] > passes[1, "decjax, two steps per iteration"]
