"""Benchmark: what push-sum's weight vector costs, SGP against D-PSGD on the same graph.

SGP gossips the numerators and one scalar weight per worker and divides by it;
D-PSGD gossips the parameters. On the same topology (the SGP paper's one-peer
directed exponential graph, stored as shifts, and a random directed graph
stored as neighbour lists, where D-PSGD runs on the same lists made doubly
stochastic) both steps run an MLP 784-256-256-10 with batch 32 per worker, in
the loop ``simulate`` uses (a ``lax.scan``, compiled once), median of repeats.
The ratio SGP / D-PSGD is the cost of de-biasing; Push-DIGing / gradient
tracking likewise. Written to ``--out`` as JSON and Markdown.

    python -m benchmarks.push_sum            # n = 16 and 64
    python -m benchmarks.push_sum --quick    # seconds, a smoke test
"""

from __future__ import annotations

import datetime
import platform
import statistics
import time

import jax
import networkx as nx

import decjax
from benchmarks._report import arguments, write
from decjax.simulate._program import STEPS_PER_ITERATION, scan_steps

LAYERS = [784, 256, 256, 10]


def _timed(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _step_time(tx, params, batch, grad_fn, steps: int, repeats: int) -> float:
    """Seconds per step of ``tx`` in simulate's loop (gradients, then the algorithm's step)."""

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            p, s, _ = decjax.algorithms.apply_step(tx, grad_fn(p, batch), s, p)
            return (p, s), None

        (p, _), _ = scan_steps(body, (params, tx.init(params)), steps, STEPS_PER_ITERATION)
        return p

    return _timed(run, params, repeats=repeats) / steps


def _digraph(n: int) -> tuple:
    """A random directed graph (push-sum weights) and its undirected support (MH weights)."""
    graph = nx.gnp_random_graph(n, 3.0 / n, seed=0, directed=True)
    graph.add_edges_from((i, (i + 1) % n) for i in range(n))
    return decjax.topology.from_digraph(graph), decjax.from_networkx(graph.to_undirected())


def measure(n: int, *, steps: int, repeats: int, lr: float = 0.05) -> list[dict]:
    model = decjax.problems.mlp(LAYERS)
    params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), n))
    x = jax.random.normal(jax.random.key(1), (n, 32, LAYERS[0]))
    y = jax.random.randint(jax.random.key(2), (n, 32), 0, LAYERS[-1])
    grad_fn = jax.vmap(jax.grad(model.loss))
    directed, undirected = _digraph(n)
    graphs = {
        "one_peer_directed_exp (shift)": (
            decjax.topology.one_peer_directed_exponential(n),
            decjax.topology.one_peer_directed_exponential(n),
        ),
        "random digraph (sparse)": (directed, undirected),
    }
    pairs = {
        "sgp / dpsgd": (decjax.sgp, decjax.dpsgd),
        "push_diging / gradient_tracking": (decjax.push_diging, decjax.gradient_tracking),
    }
    rows = []
    for graph, (push_topology, averaging_topology) in graphs.items():
        for pair, (push, baseline) in pairs.items():
            t_push = _step_time(push(lr, push_topology), params, (x, y), grad_fn, steps, repeats)
            t_base = _step_time(
                baseline(lr, averaging_topology), params, (x, y), grad_fn, steps, repeats
            )
            rows.append(
                {
                    "n": n,
                    "graph": graph,
                    "pair": pair,
                    "push_ms": 1e3 * t_push,
                    "baseline_ms": 1e3 * t_base,
                    "ratio": t_push / t_base,
                }
            )
            print(f"n={n:4d} {graph:32s} {pair:34s} ratio {t_push / t_base:.3f}")
    return rows


def main(argv=None) -> int:
    args = arguments(__doc__, argv)
    sizes, steps, repeats = ([8], 8, 2) if args.quick else ([16, 64], 40, 5)
    rows = [row for n in sizes for row in measure(n, steps=steps, repeats=repeats)]
    device = jax.devices()[0]
    report = {
        "date": datetime.date.today().isoformat(),
        "device": f"{device.platform} ({device.device_kind})",
        "jax": jax.__version__,
        "python": platform.python_version(),
        "quick": args.quick,
        "rows": rows,
    }
    lines = [
        f"Measured on {report['device']}, jax {report['jax']}, {report['date']}"
        + (" (quick mode: not a measurement)" if args.quick else "")
        + ". MLP 784-256-256-10, batch 32 per worker; per-step time in simulate's loop.",
        "",
        "| n | graph | push-sum / baseline | push-sum ms | baseline ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['graph']} | {r['pair']} | {r['push_ms']:.3f} | "
            f"{r['baseline_ms']:.3f} | {r['ratio']:.3f} |"
        )
    stem = f"push_sum_{'quick' if args.quick else device.platform}"
    write(args.out, stem, report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
