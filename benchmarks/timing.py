"""Benchmark: what the simulated clock adds to a training step.

The same run compiled twice by ``decjax.make_run``, with and without a
``decjax.timing.TimeModel`` (latency, port bandwidth and lognormal compute
draws: the costliest model), on an MLP 784-256-256-10 with batch 32 per
worker: D-PSGD on the ring, the one-peer exponential graph and the complete
graph, and DiLoCo (8 inner steps). The clock builds each step's ``(n, n)``
message matrix and propagates the phases, ``O(n^2)`` per step whatever the
model size, so a last line runs a tiny model (logistic regression, 7,850
values) at n = 256, where that matrix is largest next to the step. The two
sides are timed alternately, seven rounds of three calls, and the median of
the per-round ratios is reported. Written to ``--out`` as JSON and Markdown.

    python -m benchmarks.timing            # n = 16 and 64, and the small model at 256
    python -m benchmarks.timing --quick    # seconds, a smoke test
"""

from __future__ import annotations

import jax
import optax

import decjax
from benchmarks._report import arguments, header, measured_on, write
from benchmarks.push_sum import _paired

LAYERS = [784, 256, 256, 10]


def _clock() -> decjax.timing.TimeModel:
    port = decjax.timing.gbps(10)
    compute = decjax.timing.Compute(0.05, law="lognormal", spread=0.3)
    return decjax.timing.TimeModel(decjax.timing.Network(2e-5, port, port), compute=compute)


def _runs(model, tx, n: int, steps: int):
    """The compiled run of ``steps`` steps without and with the clock."""
    x = jax.random.normal(jax.random.key(1), (n, 32, LAYERS[0]))
    y = jax.random.randint(jax.random.key(2), (n, 32), 0, 10)
    data = (x, y)
    key = jax.random.key(0)

    def compiled(timing):
        run = decjax.make_run(model.loss, tx, steps=steps, eval_every=steps, timing=timing)
        fn = jax.jit(lambda params: run(params, key, data)[0].params)
        return fn

    params = decjax.replicate(model.init(jax.random.key(3)), n)
    plain, timed = compiled(None), compiled(_clock())
    jax.block_until_ready(plain(params))
    jax.block_until_ready(timed(params))
    return plain, timed, params


def measure(
    n: int, model, name: str, *, steps: int, rounds: int, repeats: int, only=None
) -> list[dict]:
    algorithms = {
        "dpsgd ring": decjax.dpsgd(0.05, decjax.ring(n)),
        "dpsgd one_peer_exponential": decjax.dpsgd(0.05, decjax.one_peer_exponential(n)),
        "dpsgd complete": decjax.dpsgd(0.05, decjax.complete(n)),
        "diloco (H = 8)": decjax.diloco(optax.sgd(0.05), every=8),
    }
    if only is not None:
        algorithms = {k: v for k, v in algorithms.items() if k in only}
    rows = []
    for label, tx in algorithms.items():
        plain, timed, params = _runs(model, tx, n, steps)
        t_timed, t_plain, ratio = _paired(timed, plain, params, rounds=rounds, repeats=repeats)
        rows.append(
            {
                "n": n,
                "model": name,
                "algorithm": label,
                "timed_ms": 1e3 * t_timed / steps,
                "plain_ms": 1e3 * t_plain / steps,
                "ratio": ratio,
            }
        )
        print(f"n={n:4d} {name:10s} {label:28s} ratio {ratio:.3f}")
    return rows


def main(argv=None) -> int:
    args = arguments(__doc__, argv)
    mlp, logistic = decjax.problems.mlp(LAYERS), decjax.problems.logistic_regression(784, 10)
    only = ("dpsgd ring", "diloco (H = 8)") if args.quick else None
    if args.quick:
        plan, steps, rounds, repeats = [(8, logistic, "logistic")], 4, 1, 1
    else:
        plan = [(16, mlp, "mlp"), (64, mlp, "mlp"), (256, logistic, "logistic")]
        steps, rounds, repeats = 16, 7, 3
    rows = [
        row
        for n, model, name in plan
        for row in measure(n, model, name, steps=steps, rounds=rounds, repeats=repeats, only=only)
    ]
    device = jax.devices()[0]
    report = header(
        args.quick,
        rows=rows,
    )
    lines = [
        measured_on(report)
        + ". Batch 32 per worker; per-step time of make_run's loop with and without a "
        "TimeModel; ratio: median over 7 alternating rounds.",
        "",
        "| n | model | algorithm | with clock ms | without ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['model']} | {r['algorithm']} | {r['timed_ms']:.3f} | "
            f"{r['plain_ms']:.3f} | {r['ratio']:.3f} |"
        )
    stem = f"timing_{'quick' if args.quick else device.platform}"
    write(args.out, stem, report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
