"""Train one decentralized run across several processes with JAX's distributed runtime.

Every process runs the same program on its own devices; together they form
one mesh (:func:`decjax.distributed.worker_mesh`) over which the workers are
split. On one machine (CPU devices emulated) this launches two processes::

    python -m decjax.multihost --launch 2 --devices-per-process 4 --out run-2proc

and the single-process reference over the same 8 devices::

    python -m decjax.multihost --devices-per-process 8 --out run-1proc

Each trains one run with its workers split over the devices, then a small
sweep with its configurations split over them, and writes ``result.json``
(metrics and final parameters of the run, metrics of the sweep). With
``--checkpoint-dir`` the run saves every chunk and resumes from a checkpoint
it finds; ``--stop-at STEP`` stops it after that step (to test resuming). On a cluster,
start one process per host (or per GPU) yourself with ``--process-id``,
``--num-processes`` and ``--coordinator host:port``, e.g. from SLURM's
``$SLURM_PROCID``, ``$SLURM_NTASKS`` and the first node's address; see
``docs/distributed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from decjax._arguments import HelpFormatter, address, nonnegative_int, positive_float, positive_int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(processes: int, devices_per_process: int, out: Path, extra: list[str]) -> int:
    """Start ``processes`` local copies of this module that train together; wait for all.

    The coordinator listens on the loopback interface only. Returns 0 when every
    child succeeded, else the first failure's code (a child killed by signal ``s``
    counts as ``128 + s``, as in a shell); a child still running after 10 minutes
    is killed and counts as 124.
    """
    coordinator = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
    env["JAX_PLATFORMS"] = "cpu"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "decjax.multihost",
                "--process-id",
                str(rank),
                "--num-processes",
                str(processes),
                "--coordinator",
                coordinator,
                "--coordinator-bind",
                coordinator,
                "--out",
                str(out),
                *extra,
            ],
            env=env,
        )
        for rank in range(processes)
    ]
    codes = []
    try:
        for child in children:
            try:
                codes.append(child.wait(timeout=600))
            except subprocess.TimeoutExpired:
                codes.append(124)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return launch_status(codes)


def launch_status(codes: list[int]) -> int:
    """The launch's exit code: 0 only if every child exited 0; else the first failure's code,
    a child killed by signal ``s`` (code ``-s``) counting as ``128 + s``.

    Examples:
      >>> launch_status([0, -9]), launch_status([0, 0]), launch_status([3, 0])
      (137, 0, 3)
    """
    failed = [128 - code if code < 0 else code for code in codes if code != 0]
    if failed:
        print(f"multihost: {len(failed)} of {len(codes)} processes failed", file=sys.stderr)
    return failed[0] if failed else 0


class Interrupted(Exception):
    """Raised by ``--stop-at`` after a chunk, to test resuming from a checkpoint."""


def train(args) -> dict:
    """The run every process executes (after ``initialize`` when there are several)."""
    import jax

    import decjax

    if args.num_processes > 1:
        decjax.distributed.initialize(
            args.coordinator,
            args.num_processes,
            args.process_id,
            coordinator_bind_address=args.coordinator_bind,
        )
    mesh = decjax.distributed.worker_mesh()
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, args.workers, "sorted", key=0)
    model = decjax.problems.logistic_regression(ds.num_features, ds.num_classes)
    init = decjax.replicate(model.init(jax.random.key(0)), args.workers)
    topology = decjax.topology.by_name(args.topology, args.workers)
    algorithm = decjax.algorithms.by_name(args.algorithm)

    steps_seen = []  # a resumed run reports only the steps after its checkpoint

    def interrupt(step, metrics):
        del metrics
        steps_seen.append(step)
        if args.stop_at and step >= args.stop_at:
            raise Interrupted(step)

    try:
        result = decjax.simulate(
            model.loss,
            init,
            algorithm(args.lr, topology),
            data,
            steps=args.steps,
            batch_size=8,
            eval_every=10,
            chunks=args.steps // 10,
            key=jax.random.key(1),
            eval_fn=model.eval_fn,
            eval_data=(ds.x_test, ds.y_test),
            mesh=mesh,
            checkpoint_dir=args.checkpoint_dir,
            callback=interrupt,
            progress=False,
        )
    except Interrupted as stop:  # after the checkpoint of that chunk was written
        return {"processes": jax.process_count(), "interrupted_at": stop.args[0]}
    params = decjax.distributed.to_host(result.params)
    swept = _sweep(args, model, init, lambda lr: algorithm(lr, topology), data, mesh)
    return {
        "processes": jax.process_count(),
        "devices": len(mesh.devices.ravel()),
        "metrics": {k: v.tolist() for k, v in result.metrics.items()},
        "params": [leaf.tolist() for leaf in jax.tree.leaves(params)],
        "sweep_metrics": {k: v.tolist() for k, v in swept.metrics.items()},
        "first_step_run": steps_seen[0] if steps_seen else None,
    }


def _sweep(args, model, init, make_tx, data, mesh):
    """A sweep over the same mesh: the configurations are split over the devices of all
    processes (3 learning rates x 2 seeds, padded to a multiple of them)."""
    import jax

    import decjax

    return decjax.sweep(
        model.loss,
        init,
        lambda learning_rate: make_tx(learning_rate),
        data,
        {"learning_rate": [args.lr / 2, args.lr, 2 * args.lr], "seed": [0, 1]},
        steps=args.steps,
        batch_size=8,
        eval_every=10,
        key=jax.random.key(2),
        mesh=mesh,
        progress=False,
    )


def _parser() -> argparse.ArgumentParser:
    names = _known_names()  # imports decjax (and jax), which does not start JAX's backend
    parser = argparse.ArgumentParser(
        prog="python -m decjax.multihost", description=__doc__, formatter_class=HelpFormatter
    )
    add = parser.add_argument
    add("--launch", type=nonnegative_int, default=0, help="start this many local processes")
    add("--devices-per-process", type=positive_int, default=4, help="emulated CPU devices")
    add("--process-id", type=nonnegative_int, default=0, help="this process's rank")
    add("--num-processes", type=positive_int, default=1, help="processes in the run")
    add("--coordinator", type=address, default="localhost:12345", help="process 0's HOST:PORT")
    add(
        "--coordinator-bind",
        type=address,
        default=None,
        help="where process 0's coordinator listens (default: every interface, at the "
        "port of --coordinator, as a cluster needs; --launch binds 127.0.0.1)",
    )
    add("--workers", type=positive_int, default=16, help="number of workers n")
    add("--topology", choices=names["topology"], default="ring", help="communication graph")
    add("--algorithm", choices=names["algorithm"], default="gradient_tracking", help="optimizer")
    add("--lr", type=positive_float, default=0.2, help="learning rate")
    add("--steps", type=positive_int, default=50, help="training steps, a multiple of 10")
    add("--out", type=Path, default=Path("decjax-multihost"), help="output folder")
    add("--checkpoint-dir", type=Path, help="save every chunk; resume from it")
    add("--stop-at", type=nonnegative_int, default=0, help="stop after this step (a test)")
    return parser


def _known_names() -> dict[str, tuple[str, ...]]:
    from decjax.algorithms import NAMES as ALGORITHMS
    from decjax.topology import NAMES as TOPOLOGIES

    return {"topology": TOPOLOGIES, "algorithm": ALGORITHMS}


def _validate(parser: argparse.ArgumentParser, args) -> None:
    """Combinations argparse cannot see; one line and exit 2 each."""
    if args.process_id >= args.num_processes:
        parser.error(
            f"--process-id ({args.process_id}) must be < --num-processes ({args.num_processes})"
        )
    if args.launch and args.num_processes > 1:
        parser.error("--launch starts its own processes; drop --num-processes/--process-id")
    if args.steps % 10:
        parser.error(f"--steps ({args.steps}) must be a multiple of 10 (one record per 10)")
    if args.stop_at and not args.checkpoint_dir:
        parser.error("--stop-at tests resuming: it needs --checkpoint-dir")
    devices = args.devices_per_process * max(args.launch, args.num_processes, 1)
    if args.workers % devices:
        parser.error(
            f"--workers ({args.workers}) must be a multiple of the devices of all processes "
            f"({devices})"
        )
    for flag, path in (("--out", args.out), ("--checkpoint-dir", args.checkpoint_dir)):
        if path is not None and path.exists() and not path.is_dir():
            parser.error(f"{flag} {path} exists and is not a directory")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _validate(parser, args)
    forwarded = [
        "--workers",
        str(args.workers),
        "--topology",
        args.topology,
        "--algorithm",
        args.algorithm,
        "--lr",
        str(args.lr),
        "--steps",
        str(args.steps),
        "--stop-at",
        str(args.stop_at),
        *(["--checkpoint-dir", str(args.checkpoint_dir)] if args.checkpoint_dir else []),
    ]
    if args.launch:
        return launch(args.launch, args.devices_per_process, args.out, forwarded)
    if args.num_processes == 1 and "XLA_FLAGS" not in os.environ:
        # a single process: emulate the devices here (before jax starts)
        os.environ["XLA_FLAGS"] = (
            f"--xla_force_host_platform_device_count={args.devices_per_process}"
        )
    try:
        summary = train(args)
    except ValueError as err:  # e.g. an algorithm that refuses the topology
        print(f"python -m decjax.multihost: error: {err}", file=sys.stderr)
        return 2
    if args.process_id == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(summary))
        if "interrupted_at" in summary:
            print(f"stopped after step {summary['interrupted_at']} (checkpoint written)")
            return 0
        print(
            f"{summary['processes']} process(es), {summary['devices']} devices: "
            f"final test accuracy {summary['metrics']['test_accuracy'][-1]:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
