"""Benchmark: what a robust combine costs against plain gossip, per D-PSGD step.

D-PSGD on an MLP 784-256-256-10 (batch 32 per worker) on a ring and on the
exponential graph, with each robust rule of :mod:`decjax.byzantine` in place of
the linear combine, against the same step with plain gossip, in the loop
``simulate`` uses (compiled once). Two Byzantine workers send the dissensus
attack in the robust runs (the attack's cost is part of the step); the plain
runs have none. The two sides of a ratio are timed alternately and the median
of the per-round ratios is reported. The robust combine gathers every
neighbour's model (``n k d`` floats for ``k`` neighbours) and sorts or measures
them; plain gossip on a ring is two shifted reads.

    python -m benchmarks.robust           # n = 256
    python -m benchmarks.robust --quick   # seconds, a smoke test
"""

from __future__ import annotations

import jax

import decjax
from benchmarks._report import arguments, header, measured_on, write
from benchmarks.push_sum import _compiled, _paired, _workload
from decjax import byzantine as byz

RULES = {
    "clipping": byz.Clipping(),
    "median": byz.Median(),
    "trimmed mean (b = 1)": byz.TrimmedMean(1),
    "geometric median": byz.GeometricMedian(),
    "krum (f = 1)": byz.Krum(1),
    "IOS (f = 1)": byz.IOS(1),
    "CS+ (b = 1)": byz.CSPlus(1),
}
GRAPHS = {"ring": decjax.ring, "exponential": decjax.exponential}


def measure(
    n: int, *, steps: int, rounds: int, repeats: int, graphs=tuple(GRAPHS), rules=tuple(RULES)
) -> list[dict]:
    params, batch, grad_fn = _workload(n)
    rows = []
    for graph in graphs:
        topology = GRAPHS[graph](n)
        plain = _compiled(decjax.dpsgd(0.05, topology), params, batch, grad_fn, steps)
        for name in rules:
            rule = RULES[name]
            try:
                byz.neighbour_lists(topology, rule)
            except ValueError:
                continue  # the rule needs more neighbours than the graph gives (Krum on a ring)
            robust = byz.Robust(rule, byz.Byzantine(byz.place(n, 2), byz.Dissensus()))
            tx = decjax.dpsgd(0.05, topology, robust=robust)
            program = _compiled(tx, params, batch, grad_fn, steps)
            t_robust, t_plain, ratio = _paired(
                program, plain, params, rounds=rounds, repeats=repeats
            )
            rows.append(
                {
                    "n": n,
                    "graph": graph,
                    "rule": name,
                    "robust_ms": 1e3 * t_robust / steps,
                    "plain_ms": 1e3 * t_plain / steps,
                    "ratio": ratio,
                }
            )
            print(f"n={n} {graph:12s} {name:22s} x{ratio:.2f} plain gossip", flush=True)
    return rows


def main(argv=None) -> int:
    args = arguments(__doc__, argv)
    if args.quick:  # every line of the code, two rules on one graph
        rows = measure(
            8,
            steps=2,
            rounds=1,
            repeats=1,
            graphs=("exponential",),
            rules=("clipping", "krum (f = 1)"),
        )
    else:
        rows = measure(256, steps=4, rounds=3, repeats=1)
    device = jax.devices()[0]
    report = header(
        args.quick,
        rows=rows,
    )
    lines = [
        measured_on(report)
        + ". D-PSGD, MLP 784-256-256-10, batch 32 per worker; robust runs with 2 Byzantine "
        "workers sending the dissensus attack; ratio: median over alternating rounds.",
        "",
        "| n | graph | rule | robust ms | plain gossip ms | ratio |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['graph']} | {r['rule']} | {r['robust_ms']:.1f} | "
            f"{r['plain_ms']:.1f} | {r['ratio']:.2f} |"
        )
    stem = f"robust_{'quick' if args.quick else device.platform}"
    write(args.out, stem, report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
