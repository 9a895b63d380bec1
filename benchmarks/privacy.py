"""Benchmark: what DP-SGD per worker costs against the plain D-PSGD step, and how far n goes.

D-PSGD on a ring, an MLP 784-128-10, shards of 200 examples per worker, in the loop
``simulate`` uses (``decjax.make_run``, compiled once): the plain step (a uniform
minibatch of 32 per worker, one batched gradient) against the step with
``privacy=Clip(1.0, noise_multiplier=1.0)`` (a Poisson sample of expected size 32,
per-example gradients clipped and summed in passes of 32 + 3 sqrt(32) = 49, noise).
The two are timed alternately and the median of the per-round ratios is reported.
The compiled programs' temporary memory (XLA's ``memory_analysis``) per worker gives
the largest n whose step fits in this machine's memory (an extrapolation: the
temporaries grow linearly in n; the data and params are not counted).

    python -m benchmarks.privacy           # n = 16 and 64
    python -m benchmarks.privacy --quick   # seconds, a smoke test
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import decjax
from benchmarks._report import arguments, header, measured_on, write
from decjax._validation import available_memory

LAYERS = [784, 128, 10]
SHARD, BATCH = 200, 32


def _data(n: int) -> decjax.data.WorkerData:
    x = jax.random.normal(jax.random.key(1), (n * SHARD, LAYERS[0]))
    y = jax.random.randint(jax.random.key(2), (n * SHARD,), 0, LAYERS[-1])
    indices = jnp.arange(n * SHARD).reshape(n, SHARD)
    return decjax.data.WorkerData(x, y, indices, jnp.full((n,), SHARD))


def _program(n: int, steps: int, privacy):
    model = decjax.problems.mlp(LAYERS)
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    run = decjax.make_run(
        model.loss,
        decjax.dpsgd(0.05, decjax.ring(n)),
        steps=steps,
        batch_size=BATCH,
        eval_every=steps,
        privacy=privacy,
    )
    data = _data(n)
    compiled = jax.jit(run).lower(params, jax.random.key(3), data).compile()
    memory = compiled.memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None

    def call():
        jax.block_until_ready(compiled(params, jax.random.key(3), data))

    call()
    return call, temp


def _timed(call, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def measure(n: int, *, steps: int, rounds: int, repeats: int) -> dict:
    private, private_temp = _program(n, steps, decjax.privacy.Clip(1.0, noise_multiplier=1.0))
    plain, plain_temp = _program(n, steps, None)
    times_private, times_plain, ratios = [], [], []
    for _ in range(rounds):
        a, b = _timed(private, repeats), _timed(plain, repeats)
        times_private.append(a)
        times_plain.append(b)
        ratios.append(a / b)
    row = {
        "n": n,
        "private_ms": 1e3 * statistics.median(times_private) / steps,
        "plain_ms": 1e3 * statistics.median(times_plain) / steps,
        "ratio": statistics.median(ratios),
        "private_temp_mb": None if private_temp is None else private_temp / 2**20,
        "plain_temp_mb": None if plain_temp is None else plain_temp / 2**20,
    }
    print(f"n={n}: DP-SGD step x{row['ratio']:.2f} the plain step", flush=True)
    return row


def main(argv=None) -> int:
    args = arguments(__doc__, argv)
    sizes, steps, rounds = ((4,), 2, 1) if args.quick else ((16, 64), 10, 5)
    rows = [measure(n, steps=steps, rounds=rounds, repeats=1) for n in sizes]
    memory = available_memory(device=False)
    last = rows[-1]
    per_worker = (last["private_temp_mb"] or np.nan) * 2**20 / last["n"]
    largest = int(memory // per_worker) if np.isfinite(per_worker) else None
    device = jax.devices()[0]
    report = header(args.quick, rows=rows, memory_bytes=memory, largest_n=largest)
    lines = [
        measured_on(report)
        + f". D-PSGD on a ring, MLP {'-'.join(map(str, LAYERS))}, shards of {SHARD}, "
        f"batch {BATCH} (plain: uniform; DP-SGD: Poisson, expected {BATCH}, C = 1, "
        "sigma = 1); ratio: median over alternating rounds.",
        "",
        "| n | DP-SGD ms/step | plain ms/step | ratio | DP-SGD temp MB | plain temp MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['private_ms']:.2f} | {r['plain_ms']:.2f} | {r['ratio']:.2f} | "
            f"{r['private_temp_mb']:.1f} | {r['plain_temp_mb']:.1f} |"
        )
    if largest is not None:
        lines += [
            "",
            f"Largest n whose DP-SGD step's temporaries fit in this machine's "
            f"{memory / 2**30:.1f} GiB (linear in n from n = {last['n']}): about {largest:,}.",
        ]
    stem = f"privacy_{'quick' if args.quick else device.platform}"
    write(args.out, stem, report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
