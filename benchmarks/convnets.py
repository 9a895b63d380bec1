"""Benchmark: decjax's training step on convnets vs the same step written by hand.

LeNet-5 on MNIST-shaped inputs (28x28x1) and ResNet-20 with BatchNorm on
CIFAR-shaped inputs (32x32x3), batch 32 per worker, D-PSGD with momentum 0.9 on
a ring. The decjax side is ``make_run``, the pure core ``simulate`` runs (per
worker keys, BatchNorm statistics as model state, two steps per loop
iteration); the hand-written side is a ``lax.scan`` of ``vmap(value_and_grad)``,
momentum and ``(x_{i-1} + x_i + x_{i+1}) / 3`` by rolls. decjax runs twice:
with ``worker_chunks=1``, the same vmapped program as the hand-written step
(the ratio measures decjax's overhead), and with its default
``worker_chunks="auto"`` (on the CPU one worker at a time for convnets, a
``lax.map``; see ``benchmarks/conv_lowering.py``).

    python -m benchmarks.convnets            # defaults for the device
    python -m benchmarks.convnets --quick    # seconds, for a smoke test
"""

from __future__ import annotations

import datetime
import json

import jax
import jax.numpy as jnp

import decjax
from benchmarks import _report
from benchmarks.dpsgd_step import _timed

MODELS = {
    "lenet5": (lambda: decjax.problems.lenet5(), (28, 28, 1)),
    "resnet20": (lambda: decjax.problems.resnet20(), (32, 32, 3)),
    "resnet20_gn": (lambda: decjax.problems.resnet20(norm="group"), (32, 32, 3)),
}


def _setup(name: str, n: int, batch: int):
    build, shape = MODELS[name]
    model = build()
    stateful = isinstance(model, decjax.problems.StatefulClassifier)
    init = model.init(jax.random.key(0))
    params, state = init if stateful else (init, None)
    params = decjax.replicate(params, n)
    state = None if state is None else decjax.replicate(state, n)
    x = jax.random.normal(jax.random.key(1), (n, batch, *shape))
    y = jax.random.randint(jax.random.key(2), (n, batch), 0, 10)
    return model, stateful, params, state, (x, y)


def _hand_run(model, stateful, steps, lr, momentum):
    """The same step written by hand: vmapped gradients, momentum, ring average."""

    def grads(p, batch, s, k):
        if stateful:
            (_, (s, _)), g = jax.value_and_grad(model.loss, has_aux=True)(p, batch, s, k)
            return g, s
        return jax.grad(model.loss)(p, batch), s

    @jax.jit
    def run(params, state, data, key):
        n = data[1].shape[0]

        def body(carry, _):
            p, m, s, key = carry
            key, sub = jax.random.split(key)
            keys = jax.random.split(jax.random.split(sub)[1], n)
            g, s = jax.vmap(grads)(p, data, s, keys)
            m = jax.tree.map(lambda a, b: momentum * a + b, m, g)
            p = jax.tree.map(lambda a, b: a - lr * b, p, m)
            p = jax.tree.map(lambda a: (jnp.roll(a, 1, 0) + a + jnp.roll(a, -1, 0)) / 3.0, p)
            return (p, m, s, key), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (p, _, _, _), _ = jax.lax.scan(body, (params, zeros, state, key), None, length=steps)
        return p

    return run


def step_benchmark(name: str, n: int, *, steps: int, repeats: int, batch: int = 32) -> dict:
    lr, momentum = 0.05, 0.9
    model, stateful, params, state, data = _setup(name, n, batch)
    tx = decjax.dpsgd(lr, decjax.ring(n), momentum=momentum)
    key = jax.random.key(3)
    runs, finals = {}, {}
    for label, chunks in (("decjax", 1), ("decjax_auto", "auto")):
        run = decjax.make_run(
            model.loss, tx, steps=steps, eval_every=steps, stateful=stateful, worker_chunks=chunks
        )
        jitted = jax.jit(lambda p, k, d, s, run=run: run(p, k, d, None, None, s)[0].params)
        runs[label] = _timed(jitted, params, key, data, state, repeats=repeats) / steps
        finals[label] = jitted(params, key, data, state)
    hand = _hand_run(model, stateful, steps, lr, momentum)
    runs["hand_written"] = _timed(hand, params, state, data, key, repeats=repeats) / steps
    # the same maths (for a model without randomness the same numbers, to float32 rounding)
    mine, theirs = (
        jax.tree.leaves(finals["decjax"]),
        jax.tree.leaves(hand(params, state, data, key)),
    )
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(mine, theirs, strict=True))
    return {
        "model": name,
        "n": n,
        "batch_per_worker": batch,
        **{f"{k}_ms": 1e3 * v for k, v in runs.items()},
        "ratio": runs["decjax"] / runs["hand_written"],
        "ratio_auto": runs["decjax_auto"] / runs["hand_written"],
        "max_abs_diff": diff,
    }


def main(argv=None) -> int:
    args = _report.arguments(__doc__, argv)
    device = jax.devices()[0]
    cpu = device.platform == "cpu"
    if args.quick:
        plan = [("lenet5", 4, 2, 1)]
    elif cpu:
        plan = [("lenet5", 16, 10, 3), ("lenet5", 64, 5, 3), ("resnet20", 4, 2, 2)]
    else:
        plan = [(m, n, 20, 5) for m in MODELS for n in (16, 64, 256)]
    rows = []
    for name, n, steps, repeats in plan:
        row = step_benchmark(name, n, steps=steps, repeats=repeats)
        print(json.dumps(row))
        rows.append(row)
    tag = "quick" if args.quick else device.platform
    header = (
        f"Measured on {device.platform} ({device.device_kind}), jax {jax.__version__}, "
        f"{datetime.date.today()}. Batch 32 per worker, D-PSGD with momentum 0.9 on a ring; "
        "time per training step; ratio = decjax / hand-written (below 1: decjax faster)."
    )
    lines = [
        header,
        "",
        "| model | n | decjax, worker_chunks=1 (ms) | decjax, default (ms) | hand-written (ms) "
        "| ratio, worker_chunks=1 | ratio, default |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['n']} | {r['decjax_ms']:.1f} | "
            f"{r['decjax_auto_ms']:.1f} | {r['hand_written_ms']:.1f} | "
            f"{r['ratio']:.3f} | {r['ratio_auto']:.3f} |"
        )
    _report.write(args.out, f"convnets_{tag}", rows, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
