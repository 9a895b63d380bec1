"""The command-line main job: runs, writes its outputs, rejects bad flags clearly."""

import json

import pandas as pd
import pytest

from decjax.cli import build_parser, main


def test_cli_runs_a_small_comparison_and_writes_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "--workers",
            "8",
            "--steps",
            "60",
            "--eval-every",
            "20",
            "--topologies",
            "ring,complete,one_peer_exponential",
            "--model",
            "logistic",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "one_peer_exponential" in printed and "1 trace" in printed
    results = pd.read_csv(out / "results.csv")
    assert set(results["topology"]) == {"ring", "complete", "one_peer_exponential"}
    assert sorted(results["step"].unique()) == [20, 40, 60]
    summary = pd.read_csv(out / "summary.csv")
    assert summary.set_index("topology").loc["complete", "spectral_gap"] == pytest.approx(1.0)
    assert (out / "curves.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--topologies", "moebius"], "unknown topology"),
        (["--workers", "0"], "positive integer"),
        (["--lr", "-1"], "must be a finite number > 0"),
        (["--algorithm", "sgd2"], "invalid choice"),
        (
            ["--steps", "100", "--eval-every", "30", "--checkpoint-dir", "/tmp/decjax-ckpt-x"],
            "with --checkpoint-dir, --steps (100) must be a multiple of --eval-every (30)",
        ),
        (["--topologies", "hypercube", "--workers", "12"], "power of two"),
        (["--cluster", "ethernet-1g", "--bandwidth", "10"], "--cluster ethernet-1g sets the"),
        (["--cluster", "nvlink-nodes", "--workers", "12"], "multiple of 8 workers, got 12"),
        (["--bandwidth", "0"], "argument --bandwidth: must be a finite number > 0"),
        (["--target-accuracy", "80"], "argument --target-accuracy: must be in (0, 1]"),
        (["--precision", "float16"], "argument --precision: invalid choice"),
    ],
)
def test_cli_rejects_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--no-progress"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow  # the time model's closed forms are in tests/test_timing.py
@pytest.mark.parametrize(("exchange", "scale"), [(None, 1), ("all_to_all", 1), (None, 10)])
def test_cli_simulates_time_from_the_network_flags(exchange, scale, tmp_path, capsys):
    """Logistic regression on digits: 2,600-byte messages through 125 kB/s ports; the ring
    sends two through each port, the complete graph is a ring all-reduce (14 phases of an
    eighth of the model), or with ``--exchange all_to_all`` seven full sends per port;
    ``--message-scale`` times every message as ``scale`` times its bytes."""
    argv = ["--workers", "8", "--steps", "20", "--eval-every", "10", "--model", "logistic"]
    argv += ["--topologies", "ring,complete", "--bandwidth", "0.001", "--latency", "0.001"]
    argv += ["--compute-time", "0.01", "--target-accuracy", "0.1", "--no-progress"]
    argv += ["--exchange", exchange] if exchange else []
    argv += ["--message-scale", str(scale)] if scale != 1 else []
    assert main([*argv, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "time_to_10%" in printed and "bandwidth Gb/s 0.001, latency s 0.001" in printed
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("topology")
    port = 0.001e9 / 8 / scale  # a message of scale x the bytes takes scale x as long
    complete = 0.01 + 0.001 + 7 * 2600 / port if exchange else 0.01 + 14 * (0.001 + 325 / port)
    steps = {"ring": 0.01 + 0.001 + 2 * 2600 / port, "complete": complete}
    for name, step in steps.items():
        assert summary.loc[name, "time"] == pytest.approx(20 * step, rel=1e-5)
        assert summary.loc[name, "time_to_10%"] == pytest.approx(10 * step, rel=1e-5)
        assert summary.loc[name, "steps_to_10%"] == 10
        assert summary.loc[name, "reached_at_first_record"]  # an upper bound, said so


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm", ["gradient_tracking", "d2", "choco_top10", "consensus_control"]
)
def test_cli_runs_every_kind_of_algorithm(algorithm, tmp_path, capsys):
    code = main(
        [
            "--workers",
            "8",
            "--steps",
            "20",
            "--eval-every",
            "10",
            "--topologies",
            "ring,torus",
            "--algorithm",
            algorithm,
            "--model",
            "logistic",
            "--lr",
            "0.1",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["test_accuracy"].notna().all() and (summary["bytes_sent"] > 0).all()


@pytest.mark.slow
def test_cli_fault_flags_and_checkpoint_resume(tmp_path, capsys):
    argv = [
        "--workers",
        "8",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--topologies",
        "ring,torus",
        "--model",
        "logistic",
        "--drop-prob",
        "0.3",
        "--node-failure",
        "0.1",
        "--stragglers",
        "0.25",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
        "--checkpoint-dir",
        str(tmp_path / "ck"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "links_lost" in printed and "one after another" in printed
    assert (tmp_path / "ck" / "ring+faults" / "checkpoint.npz").exists()
    first = pd.read_csv(tmp_path / "out" / "results.csv")
    assert main(argv) == 0  # resumes from the finished checkpoints
    again = pd.read_csv(tmp_path / "out" / "results.csv")
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.slow
def test_cli_dasgd_with_delays(tmp_path, capsys):
    assert (
        main(
            [
                "--workers",
                "8",
                "--steps",
                "20",
                "--eval-every",
                "10",
                "--algorithm",
                "dasgd",
                "--max-delay",
                "3",
                "--topologies",
                "complete",
                "--lr",
                "0.02",
                "--no-progress",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "staleness_avg" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--drop-prob", "1.5"], "must be in [0, 1)"),
        (["--max-delay", "4"], "--max-delay applies to --algorithm dasgd"),
        (["--max-delay", "-1", "--algorithm", "dasgd"], "non-negative"),
        (["--drop-prob", "0.1", "--topologies", "exponential"], "symmetric"),
        (["--drop-prob", "0.1", "--algorithm", "dasgd"], "DASGD models unreliable links"),
    ],
)
def test_cli_rejects_bad_fault_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--no-progress"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


SMALL = ["--workers", "8", "--steps", "20", "--eval-every", "10", "--no-progress"]


@pytest.mark.slow
def test_cli_d2_with_default_topologies_runs_on_those_it_supports(tmp_path, capsys):
    assert main(["--algorithm", "d2", *SMALL, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "skipping exponential: d2 needs a symmetric" in printed
    assert "lazy graphs" in printed
    assert set(pd.read_csv(tmp_path / "summary.csv")["topology"]) == {"ring", "complete", "solo"}


@pytest.mark.parametrize("bad", ["file", "/dev/null/x"])
def test_cli_checks_the_output_folder_before_training(bad, tmp_path, capsys):
    out = tmp_path / "file" if bad == "file" else bad
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main([*SMALL, "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_marks_a_blown_up_run_diverged_and_writes_config(tmp_path, capsys):
    assert main([*SMALL, "--lr", "1e6", "--topologies", "ring,solo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "diverged (a non-finite metric, or a training loss above 1000" in printed
    assert pd.read_csv(tmp_path / "summary.csv")["diverged"].all()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["flags"]["lr"] == 1e6 and config["seed"] == 0
    assert {"decjax", "jax", "optax"} <= set(config["versions"]) and config["device"]["platform"]


@pytest.mark.slow
def test_cli_runs_a_topology_blind_algorithm_once(tmp_path, capsys):
    argv = [*SMALL, "--algorithm", "local_sgd", "--topologies", "ring,torus,complete"]
    assert main([*argv, "--steps", "16", "--eval-every", "8", "--out", str(tmp_path)]) == 0
    assert "ignores the topology: one run" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 1


def test_cli_help_gives_every_flag_a_text_and_one_default(capsys):
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    text = parser.format_help()
    assert "(default: None)" not in text
    assert text.count("default 4") == 1  # --max-delay: said once, in its text


def test_cli_ctrl_c_prints_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("interrupted at step 10")

    monkeypatch.setattr("decjax.cli._train", interrupted)
    assert main([*SMALL, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["decjax: interrupted at step 10"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "nan"], "finite number > 0"),
        (["--lr", "abc"], "finite number > 0"),
        (["--workers", "2.5"], "positive integer"),
        (["--seed", "-1"], "integer in [0, 2**63)"),
        (["--topologies", "torus", "--workers", "13"], "no such factorization"),
        (["--max-delay", "100000000", "--algorithm", "dasgd"], "GiB"),
        (["--node-failure", "nan"], "in [0, 1)"),
        (["--peers", "2", "--topologies", "ring"], "--peers applies to base_graph"),
        (["--exchange", "all_to_all", "--topologies", "ring"], "--exchange applies to the"),
        (["--exchange", "ring"], "invalid choice"),
        (["--peers", "9", "--workers", "8", "--topologies", "epidemic"], "needs n > s"),
        (["--topologies", "random_out"], "column- but not row-stochastic"),
    ],
)
def test_cli_rejects_more_bad_flags_in_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--no-progress", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "positive integer"),
        (["--lr", "nan"], "finite number > 0"),
        (["--coordinator", "nohost"], "HOST:PORT"),
        (["--process-id", "3", "--num-processes", "2"], "must be < --num-processes"),
        (["--steps", "15"], "multiple of 10"),
        (["--topology", "moebius"], "invalid choice"),
        (["--algorithm", "not_an_algorithm"], "invalid choice"),
        (["--launch", "-1"], "non-negative"),
        (["--workers", "10"], "multiple of the devices"),
        (["--stop-at", "10"], "needs --checkpoint-dir"),
        (["--coordinator-bind", "x:99999"], "HOST:PORT"),
    ],
)
def test_multihost_rejects_bad_flags_in_one_line(argv, message, capsys):
    from decjax.multihost import main as multihost

    with pytest.raises(SystemExit) as exit_info:
        multihost(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_multihost_launch_fails_when_any_child_fails():
    from decjax.multihost import launch_status

    assert launch_status([0, -9]) == 137  # killed by SIGKILL, next to a sibling's 0
    assert launch_status([0, 0]) == 0
    assert launch_status([0, 1]) == 1


@pytest.mark.slow  # five small CLI runs
def test_cli_checkpoint_of_another_run_is_refused_and_overwrite_starts_afresh(tmp_path, capsys):
    argv = [*SMALL, "--topologies", "ring", "--out", str(tmp_path / "o")]
    argv += ["--checkpoint-dir", str(tmp_path / "ck")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([a for a in argv if a != "--no-progress"]) == 0  # display flags: same run
    assert f"resumed from step 20 (the checkpoint in {tmp_path / 'ck'})" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--lr", "0.2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "another run: hyperparameters: lr is 0.3 there and 0.2 here" in err
    assert "--overwrite" in err
    assert main([*argv, "--lr", "0.2", "--overwrite"]) == 0
    assert main([*argv, "--lr", "0.2"]) == 0  # now it is that run's checkpoint


def _small(tmp_path, *flags):
    return [
        "--workers",
        "4",
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--topologies",
        "ring",
        "--partition",
        "iid",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
        *flags,
    ]


@pytest.mark.slow
def test_cli_trains_a_convnet_on_local_images_with_augmentation_and_momentum(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    images = rng.random((64, 28, 28, 1)).astype("float32")
    np.savez(
        path,
        x_train=images,
        y_train=rng.integers(0, 10, 64),
        x_test=images[:16],
        y_test=rng.integers(0, 10, 16),
    )
    flags = ["--dataset", "npz", "--data-file", str(path), "--model", "lenet5", "--augment"]
    assert main(_small(tmp_path, *flags, "--momentum", "0.9", "--lr", "0.05")) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["flags"]["model"] == "lenet5" and config["flags"]["augment"] is True
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert results["train_loss"].notna().all()


@pytest.mark.slow
def test_cli_trains_a_character_transformer_on_a_text_file(tmp_path, capsys):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 100, encoding="utf-8")
    flags = ["--dataset", "text", "--data-file", str(path), "--model", "transformer"]
    assert main(_small(tmp_path, *flags, "--lr", "0.05")) == 0
    assert "transformer" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dataset", "cifar10"], "--dataset cifar10 reads local files: give --data-dir"),
        (["--model", "lenet5"], "--model lenet5 needs square images"),
        (["--model", "transformer"], "the transformer is for --dataset text"),
        (["--augment"], "--augment needs images; --dataset digits has none"),
        (["--algorithm", "adam", "--momentum", "0.9"], "--momentum applies to dpsgd"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent"], "missing train-images-idx3-ubyte"),
    ],
)
def test_cli_refuses_a_model_and_data_that_do_not_fit_in_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--no-progress", *flags])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_push_sum_on_directed_and_random_graphs(tmp_path, capsys):
    """SGP on a random s-out graph (push-sum, one run per random topology) and a Base-2 graph
    with --peers; the epidemic graph (row-stochastic: each worker averages what it receives)
    is skipped with its push-sum form named; n_W is not defined for the push-sum graph (NaN)."""
    argv = [*SMALL, "--algorithm", "sgp", "--lr", "0.05", "--peers", "2"]
    argv += ["--topologies", "random_out,base_graph,epidemic", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipping epidemic(s=2)" in printed and "random_out" in printed
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.topology) == ["random_out(s=2)", "base_graph(k=2)"]
    assert summary.effective_neighbors.isna().tolist() == [True, False]
    assert summary.spectral_gap.between(0, 1).all() and not summary.diverged.any()


@pytest.mark.slow
def test_cli_runs_relaysgd_on_each_tree_on_its_own(tmp_path, capsys):
    """One run per tree (routing tables are built from each); a chain and a binary tree send
    the same 2 (n - 1) messages per step."""
    argv = [*SMALL, "--algorithm", "relaysgd", "--lr", "0.1"]
    argv += ["--topologies", "chain,binary_tree", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "2 runs one after another" in capsys.readouterr().out
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.topology) == ["chain", "binary_tree"]
    assert summary.bytes_sent.nunique() == 1 and summary.bytes_sent[0] > 0
    assert not summary.diverged.any()


def test_cli_runs_equi_static_on_8_workers_with_the_default_seed(tmp_path, capsys):
    """The default seed's offsets did not generate Z_8 (a disconnected graph was refused):
    equi_static now redraws them, and OU-EquiDyn is selectable by name."""
    argv = ["--workers", "8", "--topologies", "equi_static,ou_equi_dyn", "--steps", "4"]
    argv += ["--eval-every", "2", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "d_equi_static" in printed and "ou_equi_dyn" in printed


@pytest.mark.slow
def test_cli_labels_an_all_reduce_run_and_takes_its_period(tmp_path, capsys):
    """DiLoCo averages over all workers: one run, named as an all-reduce every H steps,
    with no graph's spectral gap; ``--every`` sets H (the consensus distance is zero at
    a multiple of H, not between)."""
    argv = ["--algorithm", "diloco", "--every", "5", "--workers", "4", "--steps", "20"]
    argv += ["--eval-every", "2", "--model", "logistic", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "one run instead of 4 identical ones" in printed and "1 run in one compile" in printed
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary["topology"]) == ["all-reduce every 5 steps"]
    assert summary[["spectral_gap", "effective_neighbors"]].isna().all(axis=None)
    results = pd.read_csv(tmp_path / "results.csv").set_index("step")["consensus_distance"]
    assert results[[10, 20]].max() < 1e-10 < results[[2, 4, 6, 8]].min()


@pytest.mark.slow
def test_cli_one_worker_runs_without_warnings_and_counts_in_words(tmp_path, capsys):
    argv = ["--workers", "1", "--steps", "20", "--eval-every", "10", "--model", "logistic"]
    argv += ["--topologies", "ring", "--momentum", "0.9", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0  # warnings are errors in the tests: no log scale of zeros
    printed = capsys.readouterr().out
    assert "1 worker," in printed and "momentum 0.9" in printed and "1 run in one" in printed


def test_cli_trains_bfloat16_parameters_and_says_so(tmp_path, capsys):
    """--precision bfloat16: the store and the inputs in bfloat16, each step in float32
    under low_precision; the records come out as float32 numbers, the title names it. On
    the complete graph the workers round apart after each exact average (float32: 1e-12)."""
    argv = ["--workers", "8", "--steps", "100", "--eval-every", "50", "--topologies", "complete"]
    argv += ["--precision", "bfloat16", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0
    results = pd.read_csv(tmp_path / "results.csv")
    assert results["train_loss"].iloc[-1] < results["train_loss"].iloc[0]
    assert results["test_accuracy"].iloc[-1] > 0.5
    assert results["consensus_distance"].iloc[-1] > 1e-6  # stochastic rounding ran
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["flags"]["precision"] == "bfloat16"
    assert "parameters bfloat16" in capsys.readouterr().out


def test_cli_title_names_momentum_period_faults_and_clock():
    from decjax.cli import _title

    args = build_parser().parse_args(
        [
            "--algorithm",
            "local_sgd",
            "--momentum",
            "0.9",
            "--every",
            "4",
            "--cluster",
            "ethernet-1g",
        ]
    )
    assert _title(args) == (
        "local_sgd, n=16, lr=0.3, mlp on digits (sorted); momentum 0.9, every 4, "
        "cluster ethernet-1g"
    )


def test_cli_takes_any_steps_and_records_the_last_partial_interval(tmp_path):
    argv = ["--workers", "4", "--steps", "30", "--eval-every", "20", "--model", "logistic"]
    argv += ["--topologies", "ring", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0
    results = pd.read_csv(tmp_path / "results.csv")
    assert sorted(results["step"].unique()) == [20, 30]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--byzantine", "1", "--algorithm", "gradient_tracking"], "apply to --algorithm dpsgd"),
        (["--attack", "ipm"], "--attack needs --byzantine"),
        (["--byzantine", "8"], "leaves no honest worker"),
        (["--byzantine", "2", "--robust", "trimmed_mean", "--topologies", "ring"], "at least 4"),
        (["--robust", "mean"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_byzantine_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*SMALL, *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_runs_byzantine_workers_against_a_robust_rule(tmp_path, capsys):
    argv = [*SMALL, "--topologies", "exponential", "--byzantine", "1", "--attack", "alie"]
    assert main([*argv, "--robust", "median", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Byzantine workers 1, attack alie, robust median" in out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["flags"]["byzantine"] == 1 and config["flags"]["robust"] == "median"


def test_cli_label_flip_flips_within_the_datasets_classes_and_new_rules_tolerate_k():
    import argparse

    from decjax import byzantine
    from decjax.cli import prepare

    args = argparse.Namespace(
        byzantine=2, attack="label_flip", robust="ios", algorithm="dpsgd", workers=8, seed=0
    )
    robust = prepare.robust_of(args, classes=3)
    assert robust.byzantine.attack == byzantine.LabelFlip(3)
    assert robust.rule == byzantine.IOS(2)
    args.robust = "cs_plus"
    assert prepare.robust_of(args, classes=3).rule == byzantine.CSPlus(2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--noise-multiplier", "1"], "--noise-multiplier applies to DP-SGD: give --clip C"),
        (["--epsilon-budget", "1"], "--epsilon-budget applies to DP-SGD"),
        (["--clip", "0"], "argument --clip: must be a finite number > 0"),
        (["--clip", "1", "--noise-multiplier", "-1"], "argument --noise-multiplier"),
        (["--clip", "1", "--delta", "1"], "argument --delta"),
        (["--clip", "1", "--noise-multiplier", "0.3", "--epsilon-budget", "0.1"], "spent by"),
        (["--clip", "1", "--batch-size", "1000"], "smallest shard"),
    ],
)
def test_cli_rejects_bad_privacy_flags(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*SMALL, *argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_trains_with_dp_sgd_and_reports_the_accountants_epsilon(tmp_path, capsys):
    import decjax

    argv = [*SMALL, "--topologies", "ring", "--clip", "1", "--noise-multiplier", "2"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "clip 1, noise multiplier 2" in capsys.readouterr().out
    summary = pd.read_csv(tmp_path / "summary.csv")
    data = decjax.data.distribute(decjax.data.load_digits(), 8, "sorted", key=0)
    rate = 16 / int(data.counts.min())
    steps = int(pd.read_csv(tmp_path / "results.csv")["step"].max())
    want = decjax.privacy.Clip(1.0, noise_multiplier=2.0).epsilon(steps, rate)
    assert summary["epsilon"].iloc[0] == pytest.approx(want)


def test_cli_reports_the_partitions_heterogeneity_at_the_initial_model(tmp_path, capsys):
    import jax

    import decjax
    from decjax.cli import ZETA2_SAMPLE

    argv = [*SMALL, "--topologies", "ring", "--partition", "dirichlet", "--alpha", "0.1"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "heterogeneity zeta^2 at the initial model" in capsys.readouterr().out
    reported = json.loads((tmp_path / "config.json").read_text())["zeta2_at_init"]

    from decjax import workloads

    ds = workloads.dataset("digits", seed=0)
    data = decjax.data.distribute(ds, 8, "dirichlet", key=0, alpha=0.1)
    model = workloads.model("mlp", ds)
    params = model.init(jax.random.fold_in(jax.random.key(0), 1000))  # the CLI's init
    want = decjax.data.heterogeneity(model.loss, params, data, sample=ZETA2_SAMPLE)
    assert reported == pytest.approx(float(want), rel=1e-5)
