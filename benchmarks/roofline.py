"""Benchmark: what limits the throughput record, read from the compiled step and the device.

The record (``benchmarks.gpu``'s first section) counts simulated worker-steps
per second of D-PSGD on a ring, MLP 784-256-256-10, batch 32 per worker
gathered from each worker's shard on the device: the program ``make_run``
compiles. At one n this script measures, in one process:

1. **The census** of the compiled step loop (:func:`benchmarks.hlo.step_census`):
   kernels per step, and reads, writes and copies of arrays shaped like each
   parameter and like the input batch, hence the bytes a step moves per worker.
   A D-PSGD step cannot move fewer than five passes over each weight matrix:
   the forward pass reads it, the backward pass writes its gradient, and the
   update and the gossip, fused into one kernel, read the parameters and the
   gradient and write the result (layers after the first read theirs once more
   in the backward pass). Also the memory the compiled run holds per worker
   (XLA's buffer assignment).
2. **The memory rate** of the device: a loop of in-place passes ``a * one``
   over an array of the parameters' bytes (one read and one write per pass).
3. **The roofline**: memory rate / bytes per worker-step, the most worker-steps
   per second this census allows, against the rate measured.
4. **Variants**: two steps per loop iteration (what ``"auto"`` runs for a
   record-length run), one step, and bfloat16 parameters: cast, with the
   algorithm as it is (its update and its gossip each round to nearest), and
   under :func:`decjax.algorithms.low_precision` (one float32 step, rounded
   once, stochastically): half the parameters' bytes.
5. **What bfloat16 costs in training**: D-PSGD on digits (n = 16, ring, MLP
   64-64-10), final training loss and test accuracy of the averaged model and
   consensus distance, for float32 and both bfloat16 stores, over seeds.

    python -m benchmarks.roofline          # -> benchmarks/results/roofline_<platform>.json, .md
    python -m benchmarks.roofline --quick  # seconds: a smoke test
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp

import decjax
from benchmarks import _report, dpsgd_step, memory, scale
from benchmarks.hlo import step_census
from decjax.simulate._lowering import resolve_steps_per_iteration

LAYERS = {"mlp": [784, 256, 256, 10], "logistic": [784, 10]}
LR = 0.05
BATCH = 32
# how the parameters are stored: float32; bfloat16 cast (the algorithm as it is, its update
# and its gossip each rounding to nearest); bfloat16 under low_precision (one float32 step,
# rounded once, stochastically)
PRECISIONS = ("float32", "bfloat16", "bfloat16 stochastic")


def stored(precision: str, params, data, tx):
    """``(params, data, tx)`` for a run whose parameters are stored as ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return params, data, tx
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    data = data._replace(x=data.x.astype(jnp.bfloat16))  # a bfloat16 model reads bfloat16
    if precision == "bfloat16 stochastic":
        tx = decjax.algorithms.low_precision(tx, key=7)
    return params, data, tx


def record_program(model: str, n: int, *, steps: int, precision="float32", unroll="auto"):
    """``(program, params, unroll)``: the record's jitted run (parameters donated), its
    input, and its steps per loop iteration (``"auto"`` resolved by decjax's own rule)."""
    net = decjax.problems.mlp(LAYERS[model])
    params, data, tx = stored(
        precision,
        decjax.replicate(net.init(jax.random.key(0)), n),
        scale.worker_data(n, LAYERS[model][0], size=max(4096, 2 * n)),
        decjax.dpsgd(LR, decjax.ring(n)),
    )
    batch = (
        jax.ShapeDtypeStruct((n, BATCH, LAYERS[model][0]), data.x.dtype),
        jax.ShapeDtypeStruct((n, BATCH), data.y.dtype),
    )
    unroll = resolve_steps_per_iteration(unroll, net.loss, params, batch, run_steps=steps)
    run = decjax.make_run(
        net.loss,
        tx,
        steps=steps,
        batch_size=BATCH,
        eval_every=steps,
        steps_per_iteration=unroll,
    )

    def program(params):
        state, metrics = run(params, jax.random.key(1), data)
        return state.params, metrics

    return jax.jit(program, donate_argnums=0), params, unroll


def shapes_of(params, n: int, inputs: int) -> list[tuple]:
    """The distinct parameter shapes, largest first, then the input batch's."""
    leaves = sorted({leaf.shape for leaf in jax.tree.leaves(params)}, key=math.prod, reverse=True)
    return [*leaves, (n, BATCH, inputs)]


def memory_rate(nbytes: int, *, rounds: int, repeats: int) -> float:
    """Bytes per second of in-place passes ``a * one`` over ``nbytes`` of float32
    (each pass reads and writes every byte)."""
    a = jnp.zeros(max(1, nbytes // 4), jnp.float32)
    one = jnp.ones((), jnp.float32)  # an argument, so the product is not folded away
    passes = jax.jit(lambda a, one: jax.lax.fori_loop(0, rounds, lambda _, b: b * one, a))
    return 2 * a.nbytes * rounds / dpsgd_step._timed(passes, a, one, repeats=repeats)


def timed_donated(program, params, *, repeats: int) -> tuple[float, float, dict]:
    """``(first, median, metrics)``: seconds of the first call (compile included) and the
    median of ``repeats`` more of a program that donates its parameters (each call feeds
    the next), and the last call's metrics."""
    start = time.perf_counter()
    params, _ = jax.block_until_ready(program(params))
    first = time.perf_counter() - start
    seconds, _, metrics = dpsgd_step.timed_chain(program, params, calls=repeats)
    return first, seconds, metrics


def variant(model: str, n: int, *, steps: int, repeats: int, precision: str, unroll) -> dict:
    """One program: its census per step and worker, and its measured rate."""
    program, params, per_iteration = record_program(
        model, n, steps=steps, precision=precision, unroll=unroll
    )
    compiled = program.lower(params).compile()
    shapes = shapes_of(params, n, LAYERS[model][0])
    census = step_census(compiled, shapes)
    largest = census["shapes"][",".join(map(str, shapes[0]))]
    param_bytes = sum(a.nbytes for a in jax.tree.leaves(params)) / n
    _, seconds, metrics = timed_donated(program, params, repeats=repeats)  # params donated
    seconds /= steps
    return {
        "model": model,
        "n": n,
        "precision": precision,
        "steps_per_iteration": per_iteration,
        "step_ms": 1e3 * seconds,
        "worker_steps_per_s": n / seconds,
        "kernels_per_step": census["kernels"] / per_iteration,
        "integer_kernels_per_step": census["integer_kernels"] / per_iteration,
        "largest_weight_passes_per_step": (largest["reads"] + largest["writes"]) / per_iteration,
        "copies_per_step": largest["copies"] / per_iteration,
        "bytes_per_worker_step": census["bytes"] / per_iteration / n,
        "param_bytes_per_worker": param_bytes,
        "memory_bytes_per_worker": memory.held_bytes(compiled) / n,
        "train_loss": float(metrics["train_loss"][-1]),
    }


def measure(model: str, n: int, *, steps: int, repeats: int, rounds: int) -> dict:
    """The census, memory rate and roofline of each variant at one ``n``."""
    rows = []
    plan = [("float32", 2), ("float32", 1), ("bfloat16", 2), ("bfloat16 stochastic", 2)]
    for precision, unroll in plan:
        rows.append(
            variant(model, n, steps=steps, repeats=repeats, precision=precision, unroll=unroll)
        )
    rate = memory_rate(int(rows[0]["param_bytes_per_worker"] * n), rounds=rounds, repeats=repeats)
    for row in rows:
        row["roofline_worker_steps_per_s"] = rate / row["bytes_per_worker_step"]
        row["fraction_of_roofline"] = row["worker_steps_per_s"] / row["roofline_worker_steps_per_s"]
    return {"model": model, "n": n, "memory_GBps": rate / 1e9, "variants": rows}


def bfloat16_training(*, n: int, steps: int, seeds: tuple, lr: float = 0.1) -> list[dict]:
    """D-PSGD on digits (ring, MLP 64-64-10, batch 32 per worker) with float32 and with
    bfloat16 parameters and inputs: the averaged model's full training loss and test
    accuracy (evaluated in float32), per seed (initialisation and minibatches)."""
    dataset = decjax.data.load_digits()
    net = decjax.problems.mlp([64, 64, 10])
    rows = []
    for seed in seeds:
        data = decjax.data.distribute(dataset, n, "iid", key=seed)
        init = decjax.replicate(net.init(jax.random.key(seed)), n)
        for precision in PRECISIONS:
            params, shards, tx = stored(precision, init, data, decjax.dpsgd(lr, decjax.ring(n)))
            result = decjax.simulate(
                net.loss,
                params,
                tx,
                shards,
                steps=steps,
                batch_size=BATCH,
                key=jax.random.key(seed),
                progress=False,
            )
            mean = jax.tree.map(lambda a: jnp.mean(a.astype(jnp.float32), axis=0), result.params)
            train = net.eval_fn(mean, (dataset.x_train, dataset.y_train))
            test = net.eval_fn(mean, (dataset.x_test, dataset.y_test))
            rows.append(
                {
                    "seed": seed,
                    "precision": precision,
                    "train_loss": float(train["loss"]),
                    "test_accuracy": float(test["accuracy"]),
                    "consensus_distance": float(result.metrics["consensus_distance"][-1]),
                }
            )
    return rows


def paired_difference(rows: list[dict], field: str, precision: str) -> dict:
    """``precision`` minus float32 of ``field``, paired by seed: mean and 95 % t-interval."""
    import numpy as np
    from scipy import stats

    by = {(r["seed"], r["precision"]): r[field] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    diff = np.array([by[s, precision] - by[s, "float32"] for s in seeds])
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    return {
        "field": field,
        "precision": precision,
        "float32_mean": float(np.mean([by[s, "float32"] for s in seeds])),
        "difference": float(diff.mean()),
        "ci95": float(half),
    }


def main(argv=None) -> int:
    args = _report.arguments(__doc__, argv)
    device = jax.devices()[0]
    gpu = device.platform == "gpu"
    if args.quick:
        n, steps, repeats, rounds, training = 4, 4, 1, 2, dict(n=4, steps=20, seeds=(0, 1))
    else:
        n, steps, repeats, rounds = (4096, 20, 5, 20) if gpu else (64, 16, 5, 10)
        training = dict(n=16, steps=3000, seeds=(0, 1, 2, 3, 4))
    report = _report.header(args.quick, model="MLP " + "-".join(map(str, LAYERS["mlp"])))
    report["record"] = measure("mlp", n, steps=steps, repeats=repeats, rounds=rounds)
    for row in report["record"]["variants"]:
        print(
            f"{row['precision']}, {row['steps_per_iteration']} step(s) per iteration: "
            f"{row['worker_steps_per_s']:.0f} worker-steps/s, "
            f"{row['largest_weight_passes_per_step']:g} passes over the largest weight, "
            f"{row['bytes_per_worker_step'] / 1e6:.2f} MB per worker-step, "
            f"{row['fraction_of_roofline']:.2f} of the roofline",
            flush=True,
        )
    report["training"] = {"setup": training, "rows": bfloat16_training(**training)}
    report["training"]["summary"] = [
        paired_difference(report["training"]["rows"], field, precision)
        for precision in PRECISIONS[1:]
        for field in ("train_loss", "test_accuracy", "consensus_distance")
    ]
    stem = f"roofline_{'quick' if args.quick else device.platform}"
    _report.write(args.out, stem, report, to_markdown(report))
    return 0


def to_markdown(report: dict) -> str:
    record = report["record"]
    lines = [
        f"{_report.measured_on(report)}. {report['model']}, D-PSGD on a ring, batch "
        f"{BATCH} per worker gathered on the device (the record's program), n = "
        f"{record['n']}. Census of the compiled step loop per step; memory rate: in-place "
        f"passes over the parameters' bytes, {record['memory_GBps']:.1f} GB/s (read + write); "
        "MB held per worker: XLA's buffer assignment of the compiled run (arguments, "
        "results and temporaries, less aliases) over n.",
        "",
        "| parameters | steps per loop iteration | worker-steps/s | kernels per step (integer) "
        "| passes over the largest weight | copies | MB per worker-step | roofline "
        "worker-steps/s | fraction of roofline | MB held per worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["variants"]:
        lines.append(
            f"| {r['precision']} | {r['steps_per_iteration']} | {r['worker_steps_per_s']:.0f} | "
            f"{r['kernels_per_step']:g} ({r['integer_kernels_per_step']:g}) | "
            f"{r['largest_weight_passes_per_step']:g} | "
            f"{r['copies_per_step']:g} | {r['bytes_per_worker_step'] / 1e6:.2f} | "
            f"{r['roofline_worker_steps_per_s']:.0f} | {r['fraction_of_roofline']:.3f} | "
            f"{r['memory_bytes_per_worker'] / 1e6:.2f} |"
        )
    setup = report["training"]["setup"]
    lines += [
        "",
        f"bfloat16 parameters in training: D-PSGD on digits, ring, n = {setup['n']}, MLP "
        f"64-64-10, batch {BATCH}, {setup['steps']} steps, seeds {list(setup['seeds'])}; the "
        "averaged model evaluated in float32. bfloat16: parameters and inputs cast, the "
        "algorithm as it is (update and gossip each round to nearest); bfloat16 stochastic: "
        "under decjax.algorithms.low_precision (one float32 step, rounded once, "
        "stochastically). Difference from float32 paired by seed, mean and 95 % t-interval.",
        "",
        "| quantity | parameters | float32 (mean) | difference from float32 | 95 % interval |",
        "|---|---|---:|---:|---:|",
    ]
    for s in report["training"]["summary"]:
        lines.append(
            f"| {s['field']} | {s['precision']} | {s['float32_mean']:.4f} | "
            f"{s['difference']:+.4f} | ± {s['ci95']:.4f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
