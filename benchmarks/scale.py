"""Benchmark: how many workers fit on one device, and memory per worker.

Runs a few D-PSGD steps (ring, batch 32 per worker, MNIST-shaped synthetic
data on device) through ``decjax.simulate`` for growing ``n``, each size in a
fresh subprocess so an out-of-memory error cannot poison the next and peak
memory is measured per size. Reports the peak bytes per worker against the
bytes of one worker's params + optimizer state + gradients.

    python -m benchmarks.scale                        # MLP and logistic regression
    python -m benchmarks.scale --model mlp --sizes 8192 16384
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

LAYERS = {"mlp": [784, 256, 256, 10], "logistic": [784, 10]}


def worker_data(n: int, inputs: int, size: int):
    """``size`` random examples of ``inputs`` features and 10 classes, split iid over ``n``
    workers (``WorkerData`` on the device, minibatches gathered per step)."""
    import numpy as np

    import decjax

    rng = np.random.default_rng(0)
    ds = decjax.data.from_arrays(
        rng.random((size, inputs), dtype=np.float32),
        rng.integers(0, 10, size),
        x_test=np.zeros((10, inputs), np.float32),
        y_test=np.zeros(10, np.int64),
    )
    return decjax.data.distribute(ds, n, "iid", key=0)


def one(model: str, n: int, chunks: int) -> dict:
    """Train ``n`` workers for a few steps; return timing and peak memory (runs in a subprocess)."""
    import time

    import jax

    import decjax

    layers = LAYERS[model]
    # MNIST-sized, or two examples per worker beyond that
    data = worker_data(n, 784, size=max(60000, 2 * n))
    net = decjax.problems.mlp(layers)
    params = decjax.replicate(net.init(jax.random.key(0)), n)
    per_worker = sum(x.size // n * x.dtype.itemsize for x in jax.tree.leaves(params))
    start = time.perf_counter()
    res = decjax.simulate(
        net.loss,
        params,
        decjax.dpsgd(0.01, decjax.ring(n)),
        data,
        steps=10,
        eval_every=5,
        batch_size=32,
        key=jax.random.key(1),
        worker_chunks=chunks,
        steps_per_iteration=1,  # the least memory: one params-sized buffer fewer
        progress=False,
    )
    jax.block_until_ready(res.params)
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use", 0)
    return {
        "model": model,
        "n": n,
        "worker_chunks": chunks,
        "ok": True,
        "seconds": time.perf_counter() - start,
        "params_bytes_per_worker": per_worker,
        "peak_bytes": peak,
        "peak_bytes_per_worker": peak / n,
        "peak_over_params": peak / (per_worker * n) if per_worker else None,
        "final_loss": float(res.metrics["train_loss"][-1]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(LAYERS), nargs="*", default=["mlp", "logistic"])
    parser.add_argument("--sizes", type=int, nargs="*")
    parser.add_argument("--chunks", type=int, default=8, help="worker_chunks for the gradients")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODEL", "N", "CHUNKS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(one(args.child[0], int(args.child[1]), int(args.child[2]))))
        return 0
    import jax

    gpu = jax.devices()[0].platform == "gpu"
    plan = {
        "mlp": args.sizes or ([16] if args.quick else [4096, 8192, 16384, 32768] if gpu else [256]),
        "logistic": args.sizes
        or ([16] if args.quick else [16384, 65536, 131072] if gpu else [1024]),
    }
    rows = []
    for model in args.model:
        for n in plan[model]:
            chunks = min(args.chunks, n)
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.scale", "--child", model, str(n), str(chunks)],
                capture_output=True,
                text=True,
                timeout=900,
            )
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if lines:
                row = json.loads(lines[-1][len("RESULT ") :])
            else:
                tail = (proc.stderr or "")[-400:]
                oom = "RESOURCE_EXHAUSTED" in tail or "out of memory" in tail.lower()
                row = {
                    "model": model,
                    "n": n,
                    "worker_chunks": chunks,
                    "ok": False,
                    "error": "out of memory" if oom else tail,
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not row["ok"]:
                break
    report = {
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "quick" if args.quick else jax.devices()[0].platform
    (args.out / f"scale_{tag}.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"Measured on {report['device']}, jax {report['jax']}, {report['date']}.",
        "",
        "| model | n | fits | peak memory (GB) | peak / (n x params) | s for 10 steps |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        if r["ok"]:
            lines.append(
                f"| {r['model']} | {r['n']} | yes | {r['peak_bytes'] / 1e9:.1f} | "
                f"{r['peak_over_params']:.2f} | {r['seconds']:.1f} |"
            )
        else:
            lines.append(f"| {r['model']} | {r['n']} | no ({r['error'][:40]}) | – | – | – |")
    (args.out / f"scale_{tag}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
