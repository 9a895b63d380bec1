"""Benchmark: decjax's convnet training step against the ways PyTorch users write it.

LeNet-5 on MNIST shapes (28x28x1) and ResNet-20 with BatchNorm on CIFAR shapes
(32x32x3), batch 32 per worker, D-PSGD with momentum 0.9 on a ring; the same
networks on both sides (``decjax.problems.lenet5``/``resnet20``, and their
PyTorch twins below with the same layer shapes and parameter counts). PyTorch
variants:

* ``torch.func``: ``stack_module_state`` + ``functional_call`` +
  ``vmap(grad(...))`` (BatchNorm statistics as stacked buffers), momentum and
  roll-based gossip, eager;
* the same step under ``torch.compile``;
* the per-worker loop of most papers' code: one module per worker, a forward
  and a backward each, one ``torch.optim.SGD`` (momentum) over all of them,
  then gossip over the stacked parameters.

decjax is ``make_run`` (default options, so ``worker_chunks="auto"``), timed as
in ``convnets.py``. PyTorch steps are timed in a Python loop (with CUDA
synchronisation on a GPU). Skips PyTorch if it is not installed.

    python -m benchmarks.torch_convnets            # defaults for the device
    python -m benchmarks.torch_convnets --quick    # seconds, for a smoke test
"""

from __future__ import annotations

import functools
import json
import os

# JAX and PyTorch share the GPU in this process: keep JAX's pool small and lazy.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.3")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax

import decjax
from benchmarks import _report
from benchmarks.convnets import _setup
from benchmarks.dpsgd_step import _timed
from benchmarks.torch_compare import (
    _time,
    ring_average_modules,
    synchronize,
    torch_device,
    versioned_report,
)

LR, MOMENTUM, BATCH = 0.05, 0.9, 32
SHAPES = {"lenet5": (1, 28, 28), "resnet20": (3, 32, 32)}


def torch_model(name: str):
    """The PyTorch twin of ``decjax.problems.<name>()`` (same layers and parameter count)."""
    from torch import nn

    if name == "lenet5":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )
    return _resnet20_class()()


@functools.cache
def _resnet20_class():
    """One class for every worker (``stack_module_state`` wants the same class)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            shortcut = x[:, :, :: self.stride, :: self.stride]
            if self.extra:  # option A: zero-padded channels
                pad = self.extra // 2
                shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, pad, self.extra - pad))
            return torch.relu(h + shortcut)

    class ResNet20(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
            blocks, cin = [], 16
            for stage, cout in enumerate((16, 32, 64)):
                for i in range(3):
                    blocks.append(Block(cin, cout, 2 if stage and not i else 1))
                    cin = cout
            self.blocks, self.head = nn.Sequential(*blocks), nn.Linear(64, 10)

        def forward(self, x):
            h = self.blocks(torch.relu(self.bn(self.stem(x))))
            return self.head(h.mean(dim=(2, 3)))

    return ResNet20


def _data(name, n, device):
    import torch

    x = torch.randn(n, BATCH, *SHAPES[name], device=device)
    y = torch.randint(0, 10, (n, BATCH), device=device)
    return x, y


def torch_func_step(name, n, device, *, compile_it, steps, repeats):
    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap

    x, y = _data(name, n, device)
    params, buffers = stack_module_state([torch_model(name).to(device) for _ in range(n)])
    base = torch_model(name).to("meta")

    def loss(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    grads_fn = vmap(grad(loss))

    def step(p, m):
        g = grads_fn(p, buffers, x, y)
        new_p, new_m = {}, {}
        for k in p:
            new_m[k] = MOMENTUM * m[k] + g[k]
            q = p[k] - LR * new_m[k]
            new_p[k] = (torch.roll(q, 1, 0) + q + torch.roll(q, -1, 0)) / 3.0
        return new_p, new_m

    if compile_it:
        step = torch.compile(step)
    state = {"p": params, "m": {k: torch.zeros_like(v) for k, v in params.items()}}

    def run():
        for _ in range(steps):
            state["p"], state["m"] = step(state["p"], state["m"])

    run()  # torch.compile may compile again on the second call (dynamic shapes): not timed
    return _time(run, repeats, synchronize(device)) / steps


def per_worker_loop_step(name, n, device, *, steps, repeats):
    import torch

    x, y = _data(name, n, device)
    models = [torch_model(name).to(device) for _ in range(n)]
    everything = [p for m in models for p in m.parameters()]
    optimizer = torch.optim.SGD(everything, lr=LR, momentum=MOMENTUM)

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        for i, m in enumerate(models):
            torch.nn.functional.cross_entropy(m(x[i]), y[i]).backward()
        optimizer.step()
        ring_average_modules(models)

    return _time(lambda: [one_step() for _ in range(steps)], repeats, synchronize(device)) / steps


def decjax_step(name, n, *, steps, repeats):
    model, stateful, params, state, data = _setup(name, n, BATCH)
    tx = decjax.dpsgd(LR, decjax.ring(n), momentum=MOMENTUM)
    run = decjax.make_run(model.loss, tx, steps=steps, eval_every=steps, stateful=stateful)
    jitted = jax.jit(lambda p, k, d, s: run(p, k, d, None, None, s)[0].params)
    return _timed(jitted, params, jax.random.key(3), data, state, repeats=repeats) / steps


def _plan(quick: bool, gpu: bool):
    """(model, n, steps, repeats, PyTorch variants)."""
    every = ("eager", "compile", "loop")
    if quick:
        return [("lenet5", 4, 2, 1, every)]
    if gpu:
        return [(m, n, 20, 5, every) for m in SHAPES for n in (16, 64, 256)]
    return [
        ("lenet5", 16, 3, 2, every),
        ("lenet5", 64, 2, 2, every),
        ("resnet20", 4, 2, 1, ("eager", "loop")),
    ]


def to_markdown(report) -> str:
    lines = [
        f"Measured on {report['device']}, jax {report['jax']}, torch {report['torch']}, "
        f"{report['date']}. Batch 32 per worker, D-PSGD with momentum 0.9 on a ring; "
        "time per training step in ms; speed-up = PyTorch / decjax (above 1: decjax faster).",
        "",
        "| model | n | decjax | torch.func eager | torch.func + compile | per-worker loop "
        "| vs eager | vs compile | vs loop |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        keys = ("eager_ms", "compile_ms", "loop_ms")
        cells = [f"{r[k]:.1f}" if k in r else "–" for k in keys]
        ratios = [f"{r[k] / r['decjax_ms']:.2f}×" if k in r else "–" for k in keys]
        lines.append(
            f"| {r['model']} | {r['n']} | {r['decjax_ms']:.1f} | "
            + " | ".join(cells + ratios)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = _report.arguments(__doc__, argv)
    platform = jax.devices()[0].platform
    device, torch_version = torch_device()
    rows = []
    for name, n, steps, repeats, variants in _plan(args.quick, platform == "gpu"):
        row = {
            "model": name,
            "n": n,
            "decjax_ms": 1e3 * decjax_step(name, n, steps=steps, repeats=repeats),
        }
        if device is not None:
            for variant in variants:
                if variant == "loop":
                    seconds = per_worker_loop_step(name, n, device, steps=steps, repeats=repeats)
                else:
                    compile_it = variant == "compile"
                    seconds = torch_func_step(
                        name, n, device, compile_it=compile_it, steps=steps, repeats=repeats
                    )
                row[f"{variant}_ms"] = 1e3 * seconds
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = versioned_report(rows, torch_version)
    tag = "quick" if args.quick else platform
    _report.write(args.out, f"torch_convnets_{tag}", report, to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
