"""The reproductions' shared checks: grid edges, reversed conclusions, per-group tuning, gaps."""

import importlib.util
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import decjax

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture(scope="module")
def load():
    sys.path.insert(0, str(EXPERIMENTS))

    def module(name):
        spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    yield module
    sys.path.remove(str(EXPERIMENTS))


def test_best_interior_returns_the_minimum_and_exits_at_an_edge(load):
    common = load("_common")
    assert common.best_interior([1, 2, 3, 4], [3.0, 1.0, 2.0, 5.0], "x") == 1
    # a diverged (nan) rate counts as infinitely bad, not as best
    assert common.best_interior([1, 2, 3], [np.nan, 1.0, 2.0], "x") == 1
    with pytest.raises(SystemExit, match="edge of the grid"):
        common.best_interior([1, 2, 3], [0.5, 1.0, 2.0], "x")
    with pytest.raises(SystemExit, match="edge of the grid"):
        common.best_interior([1, 2, 3], [3.0, 2.0, 1.0], "x")


def test_require_exits_only_when_the_conclusion_reverses(load):
    common = load("_common")
    common.require(True, "holds")
    with pytest.raises(SystemExit, match="conclusion reversed: fails"):
        common.require(False, "fails")


def test_bands_mean_std_and_ci(load):
    common = load("_common")
    df = pd.DataFrame({"g": ["a"] * 4, "v": [1.0, 2.0, 3.0, 4.0]})
    out = common.bands(df, ["g"], "v").iloc[0]
    assert out["v_mean"] == 2.5
    assert out["v_std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert out["ci95"] == pytest.approx(3.182446 * out["v_std"] / 2)  # t(3), four seeds


def _curves(losses: dict) -> pd.DataFrame:
    """Final-step records for topology -> {lr: [loss per seed]}."""
    rows = []
    for topo, by_lr in losses.items():
        for lr, seeds in by_lr.items():
            for seed, loss in enumerate(seeds):
                rows.append(
                    {
                        "n": 4,
                        "topology": topo,
                        "lr": lr,
                        "seed": seed,
                        "step": 10,
                        "train_loss": loss,
                        "test_accuracy": 1 - loss,
                        "consensus_distance": 0.0,
                    }
                )
    return pd.DataFrame(rows)


def test_tune_keeps_each_groups_interior_best_rate(load):
    training = load("_training")
    grid = [0.1, 0.2, 0.4]
    df = _curves(
        {
            "ring": {0.1: [3, 3], 0.2: [1, 2], 0.4: [np.nan, 5]},
            "complete": {0.1: [4, 4], 0.2: [2, 2], 0.4: [3, 3]},
        }
    )
    tuned = training.tune(df, grid)
    assert set(tuned["lr"]) == {0.2}
    assert len(tuned) == 4  # both seeds of both graphs
    final = training.finals(tuned).set_index("topology")
    assert final.loc["ring", "train_loss_mean"] == 1.5
    assert final.loc["complete", "seeds"] == 2


def test_tune_then_report_measures_each_groups_rate_on_the_held_out_seeds(load):
    training = load("_training")
    grid = [0.1, 0.2, 0.4, 0.8]
    # seeds 0-1 pick 0.4 for the ring and 0.2 for the complete graph
    tune_losses = {
        "ring": {0.1: [3, 3], 0.2: [2, 2], 0.4: [1, 1], 0.8: [3, 3]},
        "complete": {0.1: [3, 3], 0.2: [1, 2], 0.4: [4, 5], 0.8: [6, 6]},
    }
    calls = []

    def sweep(rates, seeds):
        calls.append((list(rates), list(seeds)))
        df = _curves({t: {lr: tune_losses[t][lr] for lr in rates} for t in tune_losses})
        # the held-out seeds see other losses: 10 + the tuning loss
        df["seed"] = [seeds[s] for s in df["seed"]]
        df["train_loss"] += 0 if seeds == [0, 1] else 10
        return df.sort_values("lr", kind="stable")  # rate-major, as a sweep's rows can be

    tuning, reported = training.tune_then_report(sweep, grid, [0, 1], [5, 6])
    assert calls == [(grid, [0, 1]), ([0.2, 0.4], [5, 6])]  # only the chosen rates re-run
    assert len(tuning) == 16 and set(reported["seed"]) == {5, 6}
    assert len(reported) == 4  # each graph's own rate only
    assert list(reported["topology"]) == ["ring"] * 2 + ["complete"] * 2  # the tuning's order
    final = training.finals(reported).set_index("topology")
    assert final.loc["ring", "lr"] == 0.4 and final.loc["ring", "train_loss_mean"] == 11
    assert final.loc["complete", "train_loss_mean"] == 11.5  # held-out seeds' mean, not 1.5
    # the same seeds: no second sweep, the tuning rows are reported
    calls.clear()
    _, same = training.tune_then_report(sweep, grid, [0, 1], [0, 1])
    assert calls == [(grid, [0, 1])] and set(same["lr"]) == {0.2, 0.4}


def test_tune_then_report_with_a_report_sweep_runs_only_the_chosen_pairs(load):
    training = load("_training")
    grid = [0.1, 0.2, 0.4, 0.8]
    tune_losses = {  # seeds 0-1 pick 0.4 for the ring and 0.2 for the complete graph
        "ring": {0.1: [3, 3], 0.2: [2, 2], 0.4: [1, 1], 0.8: [3, 3]},
        "complete": {0.1: [3, 3], 0.2: [1, 2], 0.4: [4, 5], 0.8: [6, 6]},
    }

    def sweep(rates, seeds):
        return _curves({t: {lr: tune_losses[t][lr] for lr in rates} for t in tune_losses})

    asked = []

    def report_sweep(chosen, seeds):  # each pair once per seed, loss 20 + seed
        asked.append((chosen.to_dict("records"), list(seeds)))
        curves = _curves({r["topology"]: {r["lr"]: [0, 0]} for _, r in chosen.iterrows()})
        curves["seed"] = [seeds[s] for s in curves["seed"]]
        return curves.assign(train_loss=20 + curves["seed"])

    _, reported = training.tune_then_report(sweep, grid, [0, 1], [5, 6], report_sweep=report_sweep)
    pairs = [{"n": 4, "topology": "ring", "lr": 0.4}, {"n": 4, "topology": "complete", "lr": 0.2}]
    assert asked == [(pairs, [5, 6])]  # once, with the chosen pairs only
    final = training.finals(reported).set_index("topology")
    assert final.loc["ring", "lr"] == 0.4 and final.loc["complete", "lr"] == 0.2
    assert final.loc["ring", "train_loss_mean"] == 25.5  # the report sweep's rows, seeds 5 and 6
    assert list(reported["topology"]) == ["ring"] * 2 + ["complete"] * 2  # the tuning's order


def test_tune_exits_when_a_group_is_best_at_the_edge(load):
    training = load("_training")
    df = _curves({"ring": {0.1: [1, 1], 0.2: [2, 2], 0.4: [3, 3]}})
    with pytest.raises(SystemExit, match="edge of the grid"):
        training.tune(df, [0.1, 0.2, 0.4])


def test_one_peer_spectral_gap_conventions(load):
    vogels = load("beyond_spectral_gap")
    gaps = vogels.gap_conventions(decjax.one_peer_exponential(32))
    assert gaps["gap_period"] == pytest.approx(1.0)  # the period product is exactly J
    # mean of the 5 matrices: I/2 + (1/10) sum_k P^(2^k); its second eigenvalue is 0.8
    assert gaps["gap_mean"] == pytest.approx(0.2, abs=1e-6)
    # one step's matrix (I + P^(2^k)) / 2 is disconnected for k >= 1
    assert gaps["gap_step"] == pytest.approx(0.0, abs=1e-6)
    ring = vogels.gap_conventions(decjax.ring(8))
    assert ring["gap_period"] == ring["gap_mean"] == ring["gap_step"]


def test_fitted_gamma_recovers_the_gamma_that_generated_the_losses(load):
    vogels = load("beyond_spectral_gap")
    topos = [decjax.ring(16), decjax.star(16), decjax.torus(4, 4), decjax.complete(16)]
    gamma = 1 - np.geomspace(0.5, 1e-3, 60)[30]  # a point of the search grid
    loss = np.array([0.1 + 2.0 / decjax.effective_neighbors(t, gamma) for t in topos])
    assert vogels.fitted_gamma(topos, loss) == pytest.approx(gamma)
    with pytest.raises(SystemExit, match="no gamma to fit"):  # loss rising with n_W
        vogels.fitted_gamma(topos, -loss)


def _tiny_cifar10(directory, per_file: int = 8):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, (per_file, 1), np.uint8)
        pixels = rng.integers(0, 256, (per_file, 3072), np.uint8)
        (directory / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


def test_cifar10_flag_needs_a_directory(load, tmp_path, capsys):
    common = load("_common")
    with pytest.raises(SystemExit):
        common.parse("doc", ["--cifar10", str(tmp_path / "absent"), "--out", str(tmp_path)])
    assert "--cifar10" in capsys.readouterr().err


def test_every_cifar10_mode_fits_the_gpu_budget(load):
    training = load("_training")
    ying, vogels = load("exponential_graphs"), load("beyond_spectral_gap")
    kong, detag = load("consensus_control"), load("detag")
    sizes = {
        "exponential_graphs": ying.images(ying._plan(False, cifar10=True)),
        "beyond_spectral_gap": vogels.dl_images(vogels.dl_plan(False, cifar10=True), False),
        "consensus_control": kong.images(kong._plan(False, cifar10=True), 50_000),
        "detag": detag.cnn_images(detag._plan(False, cifar10=True)),
    }
    for name, images in sizes.items():
        assert 0.5 * training.GPU_IMAGES < images <= training.GPU_IMAGES, (name, images)
    # a hand count: 4 rates x 4 graphs x 2 seeds, then at most 2 rates x 4 graphs x 3 seeds
    assert sizes["exponential_graphs"] == 16 * 16 * 600 * (4 * 4 * 2 + 2 * 4 * 3)


def test_a_fixed_task_script_refuses_cifar10_and_records_its_task(load, tmp_path, capsys):
    common = load("_common")
    with pytest.raises(SystemExit):  # not accepted and silently ignored
        common.parse("doc", ["--cifar10", str(tmp_path)], "dasgd", task="convex")
    assert "unrecognized arguments: --cifar10" in capsys.readouterr().err
    args = common.parse("doc", ["--out", str(tmp_path)], "dasgd", task="convex")
    assert args.task == "convex" and args.cifar10 is None
    args = common.parse("doc", ["--out", str(tmp_path), "--cifar10", str(tmp_path)], "x")
    assert args.task == "CIFAR-10, ResNet-20"


@pytest.mark.slow  # builds and runs ResNet-20
def test_image_task_reads_local_cifar10_into_resnet20(load, tmp_path):
    _tiny_cifar10(tmp_path)
    ds, model, name = load("_training").image_task(100, tmp_path)
    assert name == "CIFAR-10, ResNet-20"
    assert ds.x_train.shape == (40, 32, 32, 3) and ds.x_test.shape == (8, 32, 32, 3)
    params = model.init(jax.random.key(0))
    assert sum(x.size for x in jax.tree.leaves(params)) == 269_722  # the paper's 0.27 M
    assert np.isfinite(float(model.loss(params, (ds.x_train[:2], ds.y_train[:2]))))


@pytest.mark.slow  # compiles ResNet-20 for four topologies
def test_exponential_graphs_training_runs_on_local_cifar10(load, tmp_path):
    _tiny_cifar10(tmp_path)
    ying = load("exponential_graphs")
    plan = {
        "sizes": (4,),
        "samples": None,
        "steps": 2,
        "tune_seeds": (0,),
        "report_seeds": (0,),  # one sweep: a second would compile ResNet-20 again
        "grid": [0.05],
    }
    _, df = ying.training(plan, tmp_path)
    assert plan["task"] == "CIFAR-10, ResNet-20"
    assert set(df["seed"]) == {0}
    assert set(df["topology"]) == {"exponential", "one_peer_exponential", "ring", "complete"}
    assert np.isfinite(df["train_loss"]).all() and np.isfinite(df["test_accuracy"]).all()


def test_run_record_names_a_package_run_from_the_checkout(load, monkeypatch):
    """On a lent GPU machine decjax runs from the checkout (``PYTHONPATH=.``) without
    package metadata: the run record says so instead of failing after the run."""
    import importlib.metadata

    common = load("_common")

    def no_metadata(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", no_metadata)
    assert "not installed, run from" in common._version("decjax")
    assert common._version("no_such_package_xyz") == "not installed"


def test_run_record_takes_the_commit_from_the_environment_without_git(load, monkeypatch):
    common = load("_common")

    def no_git(*args, **kwargs):
        raise OSError("git: not found")

    monkeypatch.setattr("subprocess.run", no_git)
    monkeypatch.delenv("EXPERIMENT_COMMIT", raising=False)
    assert common._commit() == "unknown"
    monkeypatch.setenv("EXPERIMENT_COMMIT", "abc123")
    assert common._commit() == "abc123"


def test_a_variant_flag_names_its_run_and_folder(load, tmp_path):
    """``--n32`` of beyond_spectral_gap writes ``beyond_spectral_gap_n32_*`` files to its own
    folder, so the n = 16 run's committed results stay as they are."""
    common = load("_common")
    variants = {"n32": "the paper's size"}
    plain = common.parse("doc", ["--out", str(tmp_path)], "bsg", variants=variants)
    assert (plain.name, plain.n32) == ("bsg", False)
    flagged = common.parse("doc", ["--n32"], "bsg", variants=variants)
    try:
        assert (flagged.name, flagged.n32, flagged.out.name) == ("bsg_n32", True, "bsg_n32")
    finally:
        flagged.out.rmdir()  # parse made the (empty) default folder in the checkout
    vogels = load("beyond_spectral_gap")
    plan = vogels.dl_plan(False, n=32)
    assert plan["steps"] == 2_500 and list(plan["report_seeds"]) == list(range(5, 10))
    # 25 epochs of the 80 % training split at 32 workers x 16, as the docs say
    assert plan["steps"] * 32 * 16 / (0.8 * plan["samples"]) == 25
    with pytest.raises(SystemExit, match="drop --cifar10"):
        vogels.main(["--n32", "--cifar10", str(tmp_path), "--out", str(tmp_path)])


def test_the_n32_run_tunes_one_seed_per_sweep_and_reports_each_graph_at_its_rate(load, monkeypatch):
    """At n = 32 every sweep holds one seed (400 runs at once exceeded 24 GB), and the
    held-out seeds run each graph at its own tuned rate only."""
    vogels = load("beyond_spectral_gap")
    best = {"solo": -7, "star": -5}  # log2 of each graph's best rate; -3 for the others
    calls = []

    def fake_sweep(ds, model, n, graphs, rates, *, steps, seeds):
        calls.append(([t.name for t in graphs], list(rates), list(seeds)))
        rows = [  # a + b / n_W at the best rate, so that a gamma can be fitted
            {"n": n, "topology": t.name, "lr": lr, "seed": s, "step": steps,
             "train_loss": (np.log2(lr) - best.get(t.name, -3)) ** 2 + s / 100
             + 2 / decjax.effective_neighbors(t, 0.97),
             "test_accuracy": 0.5, "consensus_distance": 0.0}
            for t in graphs for lr in rates for s in seeds
        ]  # fmt: skip
        return pd.DataFrame(rows)

    monkeypatch.setattr(vogels._training, "topology_sweep", fake_sweep)
    monkeypatch.setattr(vogels._training, "image_task", lambda samples, cifar10: (0, 0, "t"))
    _, tuned, final, plan = vogels.deep_learning(False, None, n=32)
    grid, graphs = plan["grid"], [t.name for t in vogels.dl_topologies(32, False)]
    assert calls[:5] == [(graphs, grid, [s]) for s in range(5)]  # tuning: a seed per sweep
    reported = {(name, lr, seeds[0]) for names, (lr,), seeds in calls[5:] for name in names}
    assert len(calls) == 5 + 3 * 5 and all(len(seeds) == 1 for *_, seeds in calls)
    assert reported == {
        (name, 2.0 ** best.get(name, -3), s) for name in graphs for s in range(5, 10)
    }
    assert dict(zip(final["topology"], final["lr"], strict=True)) == {
        name: 2.0 ** best.get(name, -3) for name in graphs
    }
    assert set(tuned["seed"]) == set(range(5, 10)) and (final["seeds"] == 5).all()


def test_the_byzantine_full_results_support_every_conclusion_its_script_checks(load):
    """The committed full run of experiments/byzantine.py passes the script's checks (some
    were written after the run), and a reversed ranking fails them."""
    byzantine = load("byzantine")
    results = EXPERIMENTS / "results/byzantine/byzantine_final.csv"
    final = pd.read_csv(results)
    byzantine.check(final, quick=False)
    reversed_ = final.copy()
    clipping = (reversed_["rule"] == "clipping") & (reversed_["attack"] == "dissensus")
    reversed_.loc[clipping, "accuracy_mean"] = 8.3
    with pytest.raises(SystemExit, match="conclusion reversed"):
        byzantine.check(reversed_, quick=True)


def test_the_privacy_full_results_support_every_conclusion_its_script_checks(load):
    """The committed full run of experiments/privacy.py passes the script's checks (some
    were written after the run), and a reversed ranking fails them."""
    script = load("privacy")
    folder = EXPERIMENTS / "results/privacy"
    final = pd.read_csv(folder / "privacy_final.csv")
    reference = pd.read_csv(folder / "privacy_reference.csv")
    script.check(final, reference, quick=False)
    reversed_ = final.copy()
    ring = (reversed_["graph"] == "ring") & (reversed_["method"] == "local DP")
    reversed_.loc[ring, "worker_accuracy_mean"] = 40.0
    with pytest.raises(SystemExit, match="conclusion reversed"):
        script.check(reversed_, reference, quick=False)


def test_the_malicious_rings_and_dumbbell_are_the_authors_graphs(load):
    byzantine = load("byzantine")
    w, bad = byzantine.malicious_ring(5, honest_majority=False)
    assert w.shape == (16, 16) and bad == tuple(range(5, 16))
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w, w.T)
    assert sorted(np.flatnonzero(w[0] * (1 - np.eye(16)[0]))) == [1, 4, 5, 10, 15]
    # the authors' normalize: + (1 - min honest self weight) on the diagonal, renormalised
    lift = 5 / 6  # worker 0's Metropolis self weight is 1/6 (degree 5, every edge 1/6)
    assert w[0, 1] == pytest.approx((1 / 6) / (1 + lift))
    w, bad = byzantine.dumbbell(5, 1)
    assert w.shape == (12, 12) and bad == (10, 11)
    assert w[0, 9] == w[0, 10] == w[9, 11] == pytest.approx(1 / 7)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)


def _authors_replay(load, name: str):
    """The authors' tuner replayed on their instances: the step count for each zeta^2."""
    quad, tuning = load("_relaysum_quadratics"), load("_authors_tuning")
    paper = quad.PAPER[(name, "chain" if name == "RelaySGD" else "ring")]
    tuner = tuning.tune_fastest if paper["rule"] == "fastest" else tuning.tune_plateau
    instances = np.load(EXPERIMENTS / "results/heterogeneity/authors_quadratics.npz")
    points = tuning.test_points(paper["max_steps"])
    counts = []
    for key in ("0", "0.1", "10"):
        problem = decjax.problems.LeastSquares(instances[f"A_{key}"], instances[f"b_{key}"])
        curves = quad.curve_function(name, problem, paper["max_steps"])
        counts.append(int(tuner(lambda lr, c=curves: c([lr])[0], points, 10, 1e-6)[0]))
    return counts, list(paper["steps"])


def test_relaysgd_on_the_authors_quadratics_takes_their_step_counts(load):
    """RelaySum's appendix: 51 / 51 / 54 steps to 1e-6 at zeta^2 = 0 / 0.1 / 10, on their
    instances with their tuner (a count that does not depend on zeta^2)."""
    ours, theirs = _authors_replay(load, "RelaySGD")
    assert ours == theirs == [51, 51, 54]


@pytest.mark.slow
def test_dpsgd_on_the_authors_quadratics_takes_their_step_counts(load):
    """... against 13 / 1,469 / 19,818 for D-PSGD on a ring (their plateau tuner, 70,000
    steps per tried rate)."""
    ours, theirs = _authors_replay(load, "D-PSGD")
    assert ours == theirs == [13, 1469, 19818]


def test_the_authors_tuners_read_their_events(load):
    """A curve that falls below the target at step 5 is 'fastest' there; one that rises first
    is refused; a plateau below the target is found where three test points agree."""
    quad = load("_relaysum_quadratics")
    points = np.arange(1, 40)
    falling = 10.0 ** -np.arange(40.0)
    assert quad.fastest(falling, points) == 7  # 1e-6 at step 6 is not below 1e-6
    rising = falling.copy()
    rising[3] = 5.0
    assert np.isnan(quad.fastest(rising, points))
    flat = np.concatenate([10.0 ** -np.arange(8.0), np.full(32, 5e-7)])
    assert quad.plateau(flat, points) == 10  # 5e-7 at steps 8, 9, 10 (the rise is below 1e-6)


def test_the_heterogeneity_full_results_support_every_conclusion_its_script_checks(load):
    """The committed full run of experiments/heterogeneity.py passes the script's checks, and
    a reversed ranking at alpha = 0.01, or a replay off the paper's counts, fails them."""
    script = load("heterogeneity")
    folder = EXPERIMENTS / "results/heterogeneity"
    final = pd.read_csv(folder / "heterogeneity_table.csv")
    quadratic = pd.read_csv(folder / "heterogeneity_quadratics.csv")
    zeta = pd.read_csv(folder / "heterogeneity_splits.csv")
    script.check(final, quadratic, zeta, quick=False)
    reversed_ = final.copy()
    hard = (reversed_["alpha"] == 0.01) & (reversed_["row"] == "D-PSGD (ring)")
    reversed_.loc[hard, "worst_worker"] = 99.0
    with pytest.raises(SystemExit, match="conclusion reversed"):
        script.check(reversed_, quadratic, zeta, quick=False)
    off = quadratic.copy()
    off.loc[0, "steps"] += 1
    with pytest.raises(SystemExit, match="conclusion reversed"):
        script.check(final, off, zeta, quick=False)


def test_the_committed_n32_run_supports_its_check_ranking_and_fitted_gamma(load):
    """The committed ``--n32`` results pass the script's CNN check; their ranking file and
    fitted gamma follow from their own table (recomputed here); a reversed table fails."""
    vogels = load("beyond_spectral_gap")
    folder = EXPERIMENTS / "results/beyond_spectral_gap_n32"
    dl = pd.read_csv(folder / "beyond_spectral_gap_n32_deep_learning.csv")
    vogels.require_deep(dl)
    graphs = {t.name: t for t in vogels.dl_topologies(32, False)}
    gamma = vogels.fitted_gamma([graphs[t] for t in dl["topology"]], dl["train_loss_mean"])
    assert gamma == pytest.approx(dl["fitted_gamma"].iloc[0])
    ranking = vogels.deep_ranking(dl, vogels.dl_plan(False, n=32) | {"task": "t"})
    committed = pd.read_csv(folder / "beyond_spectral_gap_n32_ranking.csv")
    np.testing.assert_allclose(ranking["kendall_tau"], committed["kendall_tau"], rtol=1e-12)
    assert ranking["kendall_tau"].iloc[3] == pytest.approx(20 / 28)  # n_W(0.951): 4 of 28 pairs
    with pytest.raises(SystemExit):
        vogels.require_deep(dl.assign(train_loss_mean=-dl["train_loss_mean"]))
