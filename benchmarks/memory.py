"""Study: memory per worker for ResNet-20 (batch 32), and the largest n on one device.

The compiled training program (``make_run``: D-PSGD with momentum 0.9 on a
ring, BatchNorm statistics as model state, one batch of 32 CIFAR-shaped images
per worker as the data) is compiled, not run, at two sizes, and XLA's buffer
assignment (``compiled.memory_analysis()``: arguments + outputs + temporaries -
aliased) gives its peak bytes. The difference between the sizes is the bytes
per worker; what is left is fixed. The largest ``n`` is then what fits in the
device's memory (a GPU's ``bytes_limit``, or ``--budget-gib`` on the CPU).

Options compared: ``worker_chunks=1`` (every worker's activations at once) or
``n`` (one worker's at a time), each with and without ``remat=True`` (each
residual block recomputed in the backward pass), and ``steps_per_iteration``
1 or 2.

    python -m benchmarks.memory                 # sizes 8 and 16
    python -m benchmarks.memory --quick         # a smoke test
"""

from __future__ import annotations

import datetime
import json

import jax

import decjax
from benchmarks import _report
from decjax.problems import parameter_count

GIB = 2**30
# label: (worker_chunks as a function of n, remat, steps_per_iteration)
CONFIGS = {
    "vmapped": (lambda n: 1, False, 2),
    "vmapped + remat": (lambda n: 1, True, 2),
    "one worker at a time": (lambda n: n, False, 2),
    "one worker at a time + remat": (lambda n: n, True, 2),
    "one worker at a time + remat, 1 step per iteration": (lambda n: n, True, 1),
}


def compiled_bytes(n: int, chunks: int, remat: bool, steps_per_iteration: int, batch: int = 32):
    """Peak bytes of the compiled program for ``n`` workers (compiled, not run)."""
    model = decjax.problems.resnet20(remat=remat)
    params, state = model.init(jax.random.key(0))
    params, state = decjax.replicate(params, n), decjax.replicate(state, n)
    x = jax.ShapeDtypeStruct((n, batch, 32, 32, 3), "float32")
    y = jax.ShapeDtypeStruct((n, batch), "int32")
    tx = decjax.dpsgd(0.05, decjax.ring(n), momentum=0.9)
    run = decjax.make_run(
        model.loss,
        tx,
        steps=2,
        eval_every=2,
        stateful=True,
        worker_chunks=chunks,
        steps_per_iteration=steps_per_iteration,
    )
    jitted = jax.jit(lambda p, k, d, s: run(p, k, d, None, None, s)[0])
    return held_bytes(jitted.lower(params, jax.random.key(1), (x, y), state).compile())


def held_bytes(compiled) -> int:
    """The bytes a compiled program holds at its peak, by XLA's buffer assignment:
    arguments, results and temporaries, less what results alias from arguments."""
    stats = compiled.memory_analysis()
    return (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def _budget(device, budget_gib: float) -> tuple[float, str]:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return float(stats["bytes_limit"]), f"{device.device_kind} memory limit"
    return budget_gib * GIB, f"{budget_gib:g} GiB (--budget-gib)"


def to_markdown(report) -> str:
    lines = [
        f"Measured on {report['platform']} ({report['device']}), jax {report['jax']}, "
        f"{report['date']}. ResNet-20 with BatchNorm, batch 32 per worker, D-PSGD with "
        f"momentum on a ring; XLA's buffer assignment of the compiled program at n = "
        f"{report['sizes'][0]} and {report['sizes'][1]}. One worker's parameters are "
        f"{report['param_bytes'] / 1e6:.2f} MB. Budget: {report['budget']}.",
        "",
        "| option | peak at small n (MB) | peak at large n (MB) | bytes per worker (MB) "
        "| fixed (MB) | largest n in the budget |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['option']} | {r['small_bytes'] / 1e6:.0f} | {r['large_bytes'] / 1e6:.0f} | "
            f"{r['bytes_per_worker'] / 1e6:.2f} | {max(r['fixed_bytes'], 0) / 1e6:.0f} | "
            f"{r['largest_n']:,} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--sizes", type=int, nargs=2, default=(8, 16))
        parser.add_argument("--budget-gib", type=float, default=24.0, help="memory on the CPU")

    args = _report.arguments(__doc__, argv, extra)
    device = jax.devices()[0]
    small, large = (2, 4) if args.quick else args.sizes
    configs = list(CONFIGS.items())[: 2 if args.quick else None]
    budget, budget_text = _budget(device, args.budget_gib)
    rows = []
    for label, (chunks, remat, spi) in configs:
        a = compiled_bytes(small, chunks(small), remat, spi)
        b = compiled_bytes(large, chunks(large), remat, spi)
        per_worker = (b - a) / (large - small)
        fixed = a - small * per_worker
        rows.append(
            {
                "option": label,
                "small_bytes": a,
                "large_bytes": b,
                "bytes_per_worker": per_worker,
                "fixed_bytes": fixed,
                "largest_n": int((budget - fixed) // per_worker),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    params = decjax.problems.resnet20().init(jax.random.key(0))[0]
    report = {
        "platform": device.platform,
        "device": device.device_kind,
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
        "sizes": [small, large],
        "param_bytes": 4 * parameter_count(params),
        "budget": budget_text,
        "rows": rows,
    }
    tag = "quick" if args.quick else device.platform
    _report.write(args.out, f"memory_{tag}", report, to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
