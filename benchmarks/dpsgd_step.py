"""Benchmark: the decjax D-PSGD step vs the same step written by hand, and gossip throughput.

One run measures, on whatever device JAX sees:

1. step time of ``decjax.dpsgd`` (ring, ATC) on an MLP 784-256-256-10 with batch 32
   per worker, against a hand-written vmapped JAX step with the same maths
   (vmap(grad) -> SGD -> (x_{i-1} + x_i + x_{i+1}) / 3 by rolls), at several n;
   decjax runs in the loop ``simulate`` uses (two steps per loop iteration, no
   copy of the params per step); it is also timed with one step per
   iteration, the loop the hand-written step uses;
2. gossip throughput of each backend (shift, sparse, dense) for n workers x d
   floats, against an elementwise pass over the same bytes (see
   :func:`gossip_benchmark`).

Both sides of each ratio run in the same process, compiled once, timed as a
``lax.scan`` of many steps (no Python dispatch in the loop), median of repeats.
Results are printed as a table and written to ``--out`` as JSON and Markdown.

    python benchmarks/dpsgd_step.py                 # defaults for the device
    python benchmarks/dpsgd_step.py --quick         # seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import decjax
from benchmarks.hlo import loop_copies
from decjax.simulate._program import STEPS_PER_ITERATION, scan_steps

LAYERS = [784, 256, 256, 10]
BACKENDS = ("shift", "sparse", "dense")


def _timed(fn, *args, repeats: int) -> float:
    """Median wall seconds of ``fn(*args)`` (compiled beforehand)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_chain(program, params, *, calls: int):
    """``(median seconds of one call, params, records)`` of a compiled program that
    donates its parameters, ``params -> (params, records)``: each call feeds the next."""
    times, records = [], None
    for _ in range(calls):
        start = time.perf_counter()
        params, records = jax.block_until_ready(program(params))
        times.append(time.perf_counter() - start)
    return statistics.median(times), params, records


def step_benchmark(n: int, *, steps: int, repeats: int, lr: float = 0.05) -> dict:
    model = decjax.problems.mlp(LAYERS)
    key = jax.random.key(0)
    params = jax.vmap(model.init)(jax.random.split(key, n))
    x = jax.random.normal(jax.random.key(1), (n, 32, LAYERS[0]))
    y = jax.random.randint(jax.random.key(2), (n, 32), 0, LAYERS[-1])
    grad_fn = jax.vmap(jax.grad(model.loss))

    tx = decjax.dpsgd(lr, decjax.ring(n))

    def decjax_run(unroll):
        @jax.jit
        def run(params):
            def body(carry, _):
                p, s = carry  # the step simulate runs: gradients, then the algorithm's step
                p, s, _ = decjax.algorithms.apply_step(tx, grad_fn(p, (x, y)), s, p)
                return (p, s), None

            # the loop simulate runs: `unroll` steps per iteration (2 by default)
            (p, _), _ = scan_steps(body, (params, tx.init(params)), steps, unroll)
            return p

        return run

    @jax.jit
    def hand_run(params):
        def body(p, _):
            g = grad_fn(p, (x, y))
            p = jax.tree.map(lambda a, b: a - lr * b, p, g)
            p = jax.tree.map(lambda a: (jnp.roll(a, 1, 0) + a + jnp.roll(a, -1, 0)) / 3.0, p)
            return p, None

        p, _ = jax.lax.scan(body, params, None, length=steps)
        return p

    simulate_loop, plain_loop = decjax_run(STEPS_PER_ITERATION), decjax_run(1)
    # same maths: the two agree to float32 rounding
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
            jax.tree.leaves(simulate_loop(params)), jax.tree.leaves(hand_run(params)), strict=True
        )
    )
    t_hand = _timed(hand_run, params, repeats=repeats) / steps
    t_dec = _timed(simulate_loop, params, repeats=repeats) / steps
    t_plain = _timed(plain_loop, params, repeats=repeats) / steps
    return {
        "n": n,
        "decjax_ms": 1e3 * t_dec,
        "decjax_plain_loop_ms": 1e3 * t_plain,
        "hand_written_ms": 1e3 * t_hand,
        "ratio": t_dec / t_hand,
        "ratio_plain_loop": t_plain / t_hand,
        "max_abs_diff": diff,
    }


def gossip_benchmark(n: int, d: int, *, rounds: int, repeats: int) -> dict:
    """Per-round time of each gossip backend on a ring against passes over the same bytes.

    Three ways of timing a round, all compiled once:

    * ``looped``: ``rounds`` rounds in one ``fori_loop``, double-buffered
      (``a -> b -> a`` per iteration, both buffers leave the loop), as a stencil
      code runs: each round reads one buffer and writes the other. Baselines,
      each one read and one write of ``n d`` floats (the bytes of a device
      copy): an elementwise pass ``a * one`` updating one buffer in place, and
      an out-of-place copy double-buffered like the gossip.
    * ``standalone``: one call that writes a fresh output buffer, against the
      same for ``a * one``.
    * ``single_buffer`` (shift only): the loop carries one buffer. A gossip
      round cannot be computed in place (row ``i`` reads rows ``i +- 1``), so
      XLA writes it to a fresh buffer and copies that back into the loop carry:
      two passes per round. ``*_loop_copies`` count those copies in the
      compiled program. ``simulate`` avoids them by running two steps per loop
      iteration (see ``decjax/simulate/_program.py``).
    """
    x = jax.random.normal(jax.random.key(0), (n, d))
    one = jnp.ones((), x.dtype)  # an argument, so `a * one` is not folded away
    ring = decjax.ring(n)
    rounds += rounds % 2

    def double_buffered(op):
        @jax.jit
        def run(x, one):
            def body(_, ab):
                b = op(ab[0], one)
                return op(b, one), b

            return jax.lax.fori_loop(0, rounds // 2, body, (x, jnp.empty_like(x)))

        return run

    def single_buffer(op):
        @jax.jit
        def run(x, one):
            return jax.lax.fori_loop(0, rounds, lambda _, a: op(a, one), x)

        return run

    def per_round(run, calls=rounds):
        return 1e3 * _timed(run, x, one, repeats=repeats) / calls

    def copies(run):
        return loop_copies(run.lower(x, one).compile(), (n, d))

    copy = lambda a, one: a * one  # noqa: E731
    half = n // 2
    swap = lambda a, one: jnp.concatenate([a[half:], a[:half]]) * one  # noqa: E731
    out = {"n": n, "d": d, "rounds": rounds}
    out["copy_ms"] = per_round(single_buffer(copy))
    out["copy_loop_copies"] = copies(single_buffer(copy))
    out["copy_GBps"] = 2 * n * d * 4 / out["copy_ms"] / 1e6
    out["copy_standalone_ms"] = per_round(jax.jit(copy), calls=1)
    # an out-of-place copy double-buffered like the gossip loops (swapping the two
    # halves of the rows, so that XLA cannot fold two copies into one)
    out["copy_double_buffered_ms"] = per_round(double_buffered(swap))
    out["copy_double_buffered_loop_copies"] = copies(double_buffered(swap))
    mixes = {b: lambda a, one, b=b: decjax.mix(ring, a, backend=b) for b in BACKENDS}
    for backend, op in mixes.items():
        out[f"{backend}_ms"] = per_round(double_buffered(op))
        out[f"{backend}_loop_copies"] = copies(double_buffered(op))
        out[f"{backend}_vs_copy"] = out["copy_ms"] / out[f"{backend}_ms"]
        out[f"{backend}_vs_double_buffered_copy"] = (
            out["copy_double_buffered_ms"] / out[f"{backend}_ms"]
        )
        out[f"{backend}_standalone_ms"] = per_round(jax.jit(op), calls=1)
        out[f"{backend}_standalone_vs_copy"] = (
            out["copy_standalone_ms"] / out[f"{backend}_standalone_ms"]
        )
    out["shift_single_buffer_ms"] = per_round(single_buffer(mixes["shift"]))
    out["shift_single_buffer_loop_copies"] = copies(single_buffer(mixes["shift"]))
    # Why dense mixing uses precision=HIGHEST: the default float32 matmul on GPUs
    # is TF32 (10-bit mantissa). Error of one mixing round vs the exact (shift) result:
    w = ring.matrix()
    exact = decjax.mix(ring, x)
    for name, precision in (("highest", jax.lax.Precision.HIGHEST), ("default", None)):
        mixed = jax.jit(lambda x, p=precision: jnp.matmul(w, x, precision=p))(x)
        err = jnp.max(jnp.abs(mixed - exact)) / jnp.max(jnp.abs(exact))
        out[f"dense_{name}_rel_error"] = float(err)
    default = lambda a, one: jnp.matmul(w, a)  # noqa: E731
    out["dense_default_precision_ms"] = per_round(double_buffered(default))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--sizes", type=int, nargs="*", help="worker counts n")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    gpu = device.platform == "gpu"
    if args.quick:
        sizes, steps, repeats, gossip = [4], 2, 1, (8, 1024, 2)
    else:
        sizes = [16, 64, 256, 1024] if gpu else [16, 64, 256]
        steps, repeats = (50, 5) if gpu else (6, 5)
        gossip = (256, 1 << 20, 50) if gpu else (256, 1 << 16, 10)
    sizes = args.sizes or sizes

    steps_rows = []
    for n in sizes:
        row = step_benchmark(n, steps=steps, repeats=repeats)
        steps_rows.append(row)
        print(
            f"step  n={n:5d}  decjax {row['decjax_ms']:8.3f} ms  hand-written "
            f"{row['hand_written_ms']:8.3f} ms  ratio {row['ratio']:.3f}  (one step per "
            f"iteration: {row['ratio_plain_loop']:.3f})",
            flush=True,
        )
    g = gossip_benchmark(gossip[0], gossip[1], rounds=gossip[2], repeats=repeats)
    print(
        f"gossip n={g['n']} d={g['d']}: copy {g['copy_ms']:.3f} ms ({g['copy_GBps']:.0f} GB/s); "
        + "; ".join(f"{b} {g[b + '_ms']:.3f} ms ({g[b + '_vs_copy']:.2f})" for b in BACKENDS)
        + f"; shift, single-buffer loop {g['shift_single_buffer_ms']:.3f} ms"
    )

    report = {
        "device": device.device_kind,
        "platform": device.platform,
        "jax": jax.__version__,
        "host": platform.node(),
        "date": datetime.date.today().isoformat(),
        "model": "MLP " + "-".join(map(str, LAYERS)) + ", batch 32 per worker, ring, D-PSGD",
        "step": steps_rows,
        "gossip": g,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "quick" if args.quick else device.platform
    (args.out / f"dpsgd_step_{tag}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"dpsgd_step_{tag}.md").write_text(to_markdown(report))
    print(f"wrote {args.out / f'dpsgd_step_{tag}.json'} and .md")
    return 0


def to_markdown(report: dict) -> str:
    lines = [
        f"Measured on {report['device']} ({report['platform']}), jax {report['jax']}, "
        f"{report['date']}. {report['model']}.",
        "",
        "| n | decjax step (ms) | hand-written step (ms) | ratio | decjax, one step per "
        "loop iteration (ms) | ratio |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["step"]:
        lines.append(
            f"| {r['n']} | {r['decjax_ms']:.3f} | {r['hand_written_ms']:.3f} | {r['ratio']:.3f} | "
            f"{r['decjax_plain_loop_ms']:.3f} | {r['ratio_plain_loop']:.3f} |"
        )
    g = report["gossip"]
    lines += [
        "",
        f"Gossip on a ring, n = {g['n']}, d = {g['d']} floats per worker, time per round. "
        f"Baselines over the same bytes: an elementwise pass in place, {g['copy_ms']:.3f} ms "
        f"per round in a loop ({g['copy_GBps']:.0f} GB/s) and {g['copy_standalone_ms']:.3f} ms "
        f"as one call; an out-of-place copy double-buffered like the gossip, "
        f"{g['copy_double_buffered_ms']:.3f} ms per round.",
        "",
        "| backend | looped (ms) | vs in-place pass | vs double-buffered copy "
        "| one call (ms) | vs one call of the pass |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for b in BACKENDS:
        lines.append(
            f"| {b} | {g[b + '_ms']:.3f} | {g[b + '_vs_copy']:.2f} | "
            f"{g[b + '_vs_double_buffered_copy']:.2f} | "
            f"{g[b + '_standalone_ms']:.3f} | {g[b + '_standalone_vs_copy']:.2f} |"
        )
    lines += [
        "",
        f"Looped rounds are double-buffered ({g['shift_loop_copies']} copies in the loop). "
        f"With one buffer carried, shift takes {g['shift_single_buffer_ms']:.3f} ms per round "
        f"({g['copy_ms'] / g['shift_single_buffer_ms']:.2f} of the baseline): "
        f"{g['shift_single_buffer_loop_copies']} copy back into the loop carry per round.",
        "",
        f"Dense mixing precision: relative error of one round {g['dense_highest_rel_error']:.1e} "
        f"at `precision=HIGHEST` ({g['dense_ms']:.3f} ms) vs {g['dense_default_rel_error']:.1e} "
        f"at the default precision ({g['dense_default_precision_ms']:.3f} ms).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
