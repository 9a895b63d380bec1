"""Benchmark: the decjax D-PSGD step against the strongest PyTorch ways of writing it.

Same maths everywhere: MLP 784-256-256-10, batch 32 per worker, SGD step, then
ring gossip ``(x_{i-1} + x_i + x_{i+1}) / 3``. PyTorch variants:

* ``torch.func``: ``stack_module_state`` + ``functional_call`` +
  ``vmap(grad(...))`` and roll-based gossip, eager;
* the same under ``torch.compile``;
* the per-worker Python loop most papers' code uses (one ``nn.Module`` and one
  backward per worker, then gossip over the stacked parameters).

decjax is timed as in ``dpsgd_step.py`` (a ``lax.scan`` of steps); PyTorch
steps are timed in a Python loop with CUDA synchronization. All in one run;
results go to ``--out`` as JSON and Markdown. Skips PyTorch if not installed.

    python benchmarks/torch_compare.py [--sizes 16 64 256 1024] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import statistics
import time
from pathlib import Path

# JAX and PyTorch share the GPU in this process: keep JAX's pool small and lazy.
os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = "0.3"
os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"

import jax

from benchmarks.dpsgd_step import LAYERS, step_benchmark


def _torch_setup(n, device):
    import torch
    from torch import nn

    def mlp():
        layers = []
        for i, (a, b) in enumerate(itertools.pairwise(LAYERS)):
            layers.append(nn.Linear(a, b))
            if i < len(LAYERS) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers).to(device)

    x = torch.randn(n, 32, LAYERS[0], device=device)
    y = torch.randint(0, LAYERS[-1], (n, 32), device=device)
    return torch, mlp, x, y


def _time(fn, repeats, sync):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_func_step(n, device, *, compile_it, steps, repeats, lr=0.05):
    torch, mlp, x, y = _torch_setup(n, device)
    from torch.func import functional_call, grad, stack_module_state, vmap

    models = [mlp() for _ in range(n)]
    params, buffers = stack_module_state(models)
    base = mlp().to("meta")

    def loss(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb,))
        return torch.nn.functional.cross_entropy(out, yb)

    grads_fn = vmap(grad(loss))

    def step(params):
        g = grads_fn(params, buffers, x, y)
        new = {}
        for k, p in params.items():
            p = p - lr * g[k]
            new[k] = (torch.roll(p, 1, 0) + p + torch.roll(p, -1, 0)) / 3.0
        return new

    if compile_it:
        step = torch.compile(step)
    state = {"p": params}

    def run():
        for _ in range(steps):
            state["p"] = step(state["p"])

    return _time(run, repeats, synchronize(device)) / steps


def per_worker_loop_step(n, device, *, steps, repeats, lr=0.05):
    torch, mlp, x, y = _torch_setup(n, device)
    models = [mlp() for _ in range(n)]

    def one_step():
        for i, m in enumerate(models):
            m.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(x[i]), y[i]).backward()
            with torch.no_grad():
                for p in m.parameters():
                    p -= lr * p.grad
        ring_average_modules(models)

    return _time(lambda: [one_step() for _ in range(steps)], repeats, synchronize(device)) / steps


def versioned_report(rows: list[dict], torch_version: str | None) -> dict:
    """The rows with the device, the JAX and PyTorch versions and the date they were measured."""
    return {
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "torch": torch_version,
        "date": datetime.date.today().isoformat(),
        "rows": rows,
    }


def torch_device() -> tuple[str | None, str | None]:
    """``("cuda" or "cpu", torch version)``, or ``(None, None)`` without PyTorch."""
    try:
        import torch
    except ImportError:
        return None, None
    return ("cuda" if torch.cuda.is_available() else "cpu"), torch.__version__


def synchronize(device: str):
    """What waits for the device's queued work (nothing on the CPU)."""
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def ring_average_modules(models) -> None:
    """Gossip for the per-worker loop: every parameter becomes ``(x_{i-1} + x_i + x_{i+1}) / 3``."""
    import torch

    with torch.no_grad():
        for group in zip(*(m.parameters() for m in models), strict=True):
            stacked = torch.stack(group)
            mixed = (torch.roll(stacked, 1, 0) + stacked + torch.roll(stacked, -1, 0)) / 3
            for p, q in zip(group, mixed, strict=True):
                p.copy_(q)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*")
    parser.add_argument("--loop-sizes", type=int, nargs="*", help="sizes for the Python loop")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    gpu = jax.devices()[0].platform == "gpu"
    sizes = args.sizes or ([4] if args.quick else [16, 64, 256, 1024] if gpu else [16, 64])
    loop_sizes = args.loop_sizes or ([4] if args.quick else [16, 64, 256] if gpu else [16])
    steps, repeats = (2, 1) if args.quick else (20, 5) if gpu else (3, 2)
    device, torch_version = torch_device()
    rows = []
    for n in sizes:
        row = {"n": n, "decjax_ms": step_benchmark(n, steps=steps, repeats=repeats)["decjax_ms"]}
        if device is not None:
            row["torch_func_eager_ms"] = 1e3 * torch_func_step(
                n, device, compile_it=False, steps=steps, repeats=repeats
            )
            row["torch_func_compile_ms"] = 1e3 * torch_func_step(
                n, device, compile_it=True, steps=steps, repeats=repeats
            )
            if n in loop_sizes:
                row["per_worker_loop_ms"] = 1e3 * per_worker_loop_step(
                    n, device, steps=max(1, steps // 10), repeats=max(1, repeats // 2)
                )
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = versioned_report(rows, torch_version)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "quick" if args.quick else jax.devices()[0].platform
    (args.out / f"torch_compare_{tag}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"torch_compare_{tag}.md").write_text(to_markdown(report))
    return 0


def to_markdown(report) -> str:
    lines = [
        f"Measured on {report['device']}, jax {report['jax']}, torch {report['torch']}, "
        f"{report['date']}. Step time in ms (lower is better); speed-up = other / decjax.",
        "",
        "| n | decjax | torch.func eager | torch.func + compile | per-worker loop | "
        "vs compile | vs loop |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:

        def cell(key, r=r):
            return f"{r[key]:.3f}" if key in r else "–"

        vs_compile = (
            f"{r['torch_func_compile_ms'] / r['decjax_ms']:.2f}×"
            if "torch_func_compile_ms" in r
            else "–"
        )
        vs_loop = (
            f"{r['per_worker_loop_ms'] / r['decjax_ms']:.0f}×" if "per_worker_loop_ms" in r else "–"
        )
        lines.append(
            f"| {r['n']} | {cell('decjax_ms')} | {cell('torch_func_eager_ms')} | "
            f"{cell('torch_func_compile_ms')} | {cell('per_worker_loop_ms')} | {vs_compile} | "
            f"{vs_loop} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
