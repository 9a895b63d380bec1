"""Study: how to compute a convolution whose weights differ per worker.

decjax stacks the workers on a leading axis and ``vmap``s the model, so every
convolution has per-worker weights. XLA can compute that in several ways; this
study times them, first for single layers, then for whole training steps:

* ``grouped``: ``vmap`` of the convolution. JAX's batching rule folds the
  workers into the channels and runs one grouped convolution
  (``feature_group_count = n``). This is ``worker_chunks=1``.
* ``im2col``: the input's patches (``conv_general_dilated_patches``) times
  each worker's weight matrix, one batched matmul.
* ``per_worker``: ``lax.map`` over the workers, an ordinary convolution for
  each. This is ``worker_chunks=n``.
* ``patch_grad_per_worker``: the same with ``decjax.problems.conv_general_dilated``
  (XLA's forward pass; both gradients as matmuls of the input's patches, taken
  by strided slices), which the zoo's models use.

Layers: the forward pass, and the two halves of the backward pass of
``sum(tanh(conv))`` (the gradient with respect to the weights and with
respect to the input) timed apart, batch 32 per worker, LeNet-5's first convolution (28x28x1 -> 6,
5x5) and ResNet-20's first and last stage (32x32x16 -> 16 and 8x8x64 -> 64,
3x3). Whole steps: ``make_run`` with D-PSGD and momentum 0.9 on a ring,
``worker_chunks`` from 1 (one grouped convolution) to ``n`` (one worker at a
time). The fastest way per device becomes ``worker_chunks="auto"``.

    python -m benchmarks.conv_lowering            # defaults for the device
    python -m benchmarks.conv_lowering --quick    # seconds, for a smoke test
"""

from __future__ import annotations

import datetime
import json

import jax
import jax.numpy as jnp
from jax import lax

import decjax
from benchmarks import _report
from benchmarks.convnets import _setup
from benchmarks.dpsgd_step import _timed

NHWC = ("NHWC", "HWIO", "NHWC")

# name: (height = width, input channels, output channels, kernel size)
LAYERS = {
    "lenet5.conv1": (28, 1, 6, 5),
    "resnet20.stage1": (32, 16, 16, 3),
    "resnet20.stage3": (8, 64, 64, 3),
}


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)


def patch_grad_conv(x, w):
    """decjax's convolution: XLA's forward pass, both gradients as patch matmuls."""
    return decjax.problems.conv_general_dilated(
        x, w, (1, 1), _SAME[w.shape[0]], dimension_numbers=NHWC
    )


_SAME = {3: [(1, 1), (1, 1)], 5: [(2, 2), (2, 2)]}


def conv_im2col(x, w):
    """The same convolution as a matmul of the input's patches with the weights."""
    kh, kw, c, o = w.shape
    patches = lax.conv_general_dilated_patches(x, (kh, kw), (1, 1), "SAME", dimension_numbers=NHWC)
    # patches put the input channel outermost: (c, kh, kw)
    matrix = jnp.transpose(w, (2, 0, 1, 3)).reshape(c * kh * kw, o)
    return jnp.einsum("bhwk,ko->bhwo", patches, matrix, precision=lax.Precision.HIGHEST)


def _parts(layer):
    """One worker's forward, weight gradient and input gradient of ``sum(tanh(layer))``."""

    def loss(w, x):
        return jnp.sum(jnp.tanh(layer(x, w)))

    return {
        "forward": lambda w, x: layer(x, w),
        "weight_grad": jax.grad(loss, argnums=0),
        "input_grad": jax.grad(loss, argnums=1),
    }


def _vmapped(fn):
    return jax.vmap(fn)


def _mapped(fn):
    return lambda w, x: lax.map(lambda a: fn(*a), (w, x))


# name: (the per-worker layer, how the workers are batched)
LOWERINGS = {
    "grouped": (conv, _vmapped),
    "im2col": (conv_im2col, _vmapped),
    "per_worker": (conv, _mapped),
    "patch_grad_per_worker": (patch_grad_conv, _mapped),
}
PARTS = ("forward", "weight_grad", "input_grad")


def layer_benchmark(layer: str, n: int, *, repeats: int, batch: int = 32) -> dict:
    """Milliseconds of each part of the layer for each lowering; checks they agree."""
    size, cin, cout, k = LAYERS[layer]
    x = jax.random.normal(jax.random.key(0), (n, batch, size, size, cin))
    w = 0.1 * jax.random.normal(jax.random.key(1), (n, k, k, cin, cout))
    row = {"layer": layer, "n": n}
    for part in PARTS:
        reference = None
        for name, (fn, batched) in LOWERINGS.items():
            jitted = jax.jit(batched(_parts(fn)[part]))
            row[f"{name}_{part}_ms"] = 1e3 * _timed(jitted, w, x, repeats=repeats)
            out = jitted(w, x)
            reference = out if reference is None else reference
            scale = float(jnp.max(jnp.abs(reference)))
            row[f"{name}_{part}_rel_diff"] = float(jnp.max(jnp.abs(out - reference))) / scale
    return row


def step_benchmark(model: str, n: int, chunks: list[int], *, steps: int, repeats: int) -> dict:
    built, stateful, params, state, data = _setup(model, n, 32)
    tx = decjax.dpsgd(0.05, decjax.ring(n), momentum=0.9)
    row = {"model": model, "n": n}
    for c in chunks:
        run = decjax.make_run(
            built.loss, tx, steps=steps, eval_every=steps, stateful=stateful, worker_chunks=c
        )
        jitted = jax.jit(lambda p, k, d, s, run=run: run(p, k, d, None, None, s)[0].params)
        seconds = _timed(jitted, params, jax.random.key(3), data, state, repeats=repeats) / steps
        row[f"chunks_{c}_ms"] = 1e3 * seconds
    return row


def _plans(quick: bool, cpu: bool):
    if quick:
        return [("lenet5.conv1", 4, 1)], [("lenet5", 4, [1, 4], 1, 1)]
    if cpu:
        layers = [(name, 16, 2) for name in LAYERS]
        steps = [("lenet5", 64, [1, 4, 16, 64], 3, 2), ("resnet20", 8, [1, 2, 8], 2, 1)]
        return layers, steps
    layers = [(name, n, 10) for name in LAYERS for n in (16, 64, 256)]
    steps = [("lenet5", n, [1, 4, n], 20, 5) for n in (64, 256)] + [
        ("resnet20", n, [1, 4, n], 10, 3) for n in (16, 64)
    ]
    return layers, steps


def to_markdown(header: str, layers: list[dict], steps: list[dict]) -> str:
    lines = [header, "", "Single layers, batch 32 per worker (ms):", ""]
    lines += [
        "| layer | n | part | grouped (vmap) | im2col matmul (vmap) | per worker (lax.map) "
        "| per worker, decjax's convolution |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in layers:
        for part in PARTS:
            cells = " | ".join(f"{r[f'{name}_{part}_ms']:.1f}" for name in LOWERINGS)
            lines.append(f"| {r['layer']} | {r['n']} | {part} | {cells} |")
    lines += ["", "Whole training steps, time per step (ms) by `worker_chunks`:", ""]
    lines += ["| model | n | worker_chunks: ms |", "|---|---:|---|"]
    for r in steps:
        cells = ", ".join(
            f"{k.split('_')[1]}: {v:.0f}" for k, v in r.items() if k.startswith("chunks_")
        )
        lines.append(f"| {r['model']} | {r['n']} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = _report.arguments(__doc__, argv)
    device = jax.devices()[0]
    layer_plan, step_plan = _plans(args.quick, device.platform == "cpu")
    layers, steps = [], []
    for name, n, repeats in layer_plan:
        layers.append(layer_benchmark(name, n, repeats=repeats))
        print(json.dumps(layers[-1]), flush=True)
    for model, n, chunks, n_steps, repeats in step_plan:
        steps.append(step_benchmark(model, n, chunks, steps=n_steps, repeats=repeats))
        print(json.dumps(steps[-1]), flush=True)
    tag = "quick" if args.quick else device.platform
    header = (
        f"Measured on {device.platform} ({device.device_kind}), jax {jax.__version__}, "
        f"{datetime.date.today()}."
    )
    report = {"header": header, "layers": layers, "steps": steps}
    _report.write(args.out, f"conv_lowering_{tag}", report, to_markdown(header, layers, steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
