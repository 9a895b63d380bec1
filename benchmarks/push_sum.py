"""Benchmark: what push-sum's weight vector costs, SGP against D-PSGD on the same graph.

SGP gossips the numerators and one scalar weight per worker and divides by it;
D-PSGD gossips the parameters. Two graphs: the SGP paper's one-peer directed
exponential graph (regular, so doubly stochastic: the weights stay exactly 1
and SGP skips the numerators and the division, so this line checks that
nothing else costs), and a random directed graph (push-sum weights, neighbour
lists), where the baseline gossips the very same neighbour lists in the
averaging difference form: the ratio is the whole cost of push-sum (the weight
vector, what each worker sends away, the division). Both steps run an MLP
784-256-256-10 with batch 32 per worker, in
the loop ``simulate`` uses (a ``lax.scan``, compiled once). The two sides of a
ratio are timed alternately, seven rounds of three calls, and the median of
the per-round ratios is reported (a shared 2-core machine drifts by 20% between
minutes). The ratio SGP / D-PSGD is the cost of de-biasing; Push-DIGing /
gradient tracking likewise. Written to ``--out`` as JSON and Markdown.

    python -m benchmarks.push_sum            # n = 16 and 64
    python -m benchmarks.push_sum --quick    # seconds, a smoke test
"""

from __future__ import annotations

import statistics

import jax
import networkx as nx

import decjax
from benchmarks._report import arguments, header, measured_on, write
from benchmarks.dpsgd_step import _timed
from decjax.simulate._program import STEPS_PER_ITERATION, scan_steps

LAYERS = [784, 256, 256, 10]


def _compiled(tx, params, batch, grad_fn, steps: int):
    """``tx``'s run of ``steps`` steps in simulate's loop (gradients, then the algorithm's
    step), compiled and run once."""

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            p, s, _ = decjax.algorithms.apply_step(tx, grad_fn(p, batch), s, p)
            return (p, s), None

        (p, _), _ = scan_steps(body, (params, tx.init(params)), steps, STEPS_PER_ITERATION)
        return p

    jax.block_until_ready(run(params))
    return run


def _paired(first, second, params, *, rounds: int, repeats: int) -> tuple[float, float, float]:
    """Median seconds of each and the median of their per-round ratios, the two measured
    alternately (``rounds`` times, ``repeats`` calls each) so that load drifts cancel."""
    times_a, times_b, ratios = [], [], []
    for _ in range(rounds):
        a = _timed(first, params, repeats=repeats)
        b = _timed(second, params, repeats=repeats)
        times_a.append(a)
        times_b.append(b)
        ratios.append(a / b)
    return statistics.median(times_a), statistics.median(times_b), statistics.median(ratios)


def _digraph(n: int) -> tuple:
    """A random directed graph (push-sum weights) and the same neighbour lists mixed in the
    averaging difference form (what D-PSGD would cost on exactly these messages)."""
    graph = nx.gnp_random_graph(n, 3.0 / n, seed=0, directed=True)
    graph.add_edges_from((i, (i + 1) % n) for i in range(n))
    directed = decjax.topology.from_digraph(graph)
    return directed, directed.replace(row_stochastic=True, name="same lists, row form")


def _workload(n: int):
    """Stacked MLP params, one batch of 32 per worker, and the vmapped gradient."""
    model = decjax.problems.mlp(LAYERS)
    params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), n))
    x = jax.random.normal(jax.random.key(1), (n, 32, LAYERS[0]))
    y = jax.random.randint(jax.random.key(2), (n, 32), 0, LAYERS[-1])
    return params, (x, y), jax.vmap(jax.grad(model.loss))


def measure(n: int, *, steps: int, rounds: int, repeats: int, lr: float = 0.05) -> list[dict]:
    params, (x, y), grad_fn = _workload(n)
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
            first = _compiled(push(lr, push_topology), params, (x, y), grad_fn, steps)
            second = _compiled(baseline(lr, averaging_topology), params, (x, y), grad_fn, steps)
            t_push, t_base, ratio = _paired(first, second, params, rounds=rounds, repeats=repeats)
            rows.append(
                {
                    "n": n,
                    "graph": graph,
                    "pair": pair,
                    "push_ms": 1e3 * t_push / steps,
                    "baseline_ms": 1e3 * t_base / steps,
                    "ratio": ratio,
                }
            )
            print(f"n={n:4d} {graph:32s} {pair:34s} ratio {ratio:.3f}")
    return rows


def fusion(n: int, *, steps: int) -> dict:
    """Parallel gradient tracking on the random digraph's lists (row form), with and without
    the separation that keeps XLA (CPU) from fusing one gossip into the next one's gathers
    (``decjax._platform.separated``, used from ``sparse.SEPARATE_FROM`` slots on)."""
    from decjax.topology.kinds import sparse

    params, (x, y), grad_fn = _workload(n)
    _, lists = _digraph(n)
    out = {"n": n, "slots": int(lists.neighbors.shape[-1])}
    threshold = sparse.SEPARATE_FROM
    for label, value in (("separated_ms", threshold), ("fused_ms", 10**9)):
        sparse.SEPARATE_FROM = value
        try:
            tx = decjax.gradient_tracking(0.05, lists, order="parallel")
            run = _compiled(tx, params, (x, y), grad_fn, steps)
            out[label] = 1e3 * _timed(run, params, repeats=1) / steps
        finally:
            sparse.SEPARATE_FROM = threshold
    print(f"fusion n={n}: separated {out['separated_ms']:.1f} ms, fused {out['fused_ms']:.1f} ms")
    return out


def main(argv=None) -> int:
    args = arguments(__doc__, argv)
    sizes, steps, rounds, repeats = ([8], 8, 1, 2) if args.quick else ([16, 64], 20, 7, 3)
    rows = [row for n in sizes for row in measure(n, steps=steps, rounds=rounds, repeats=repeats)]
    fused = fusion(8 if args.quick else 64, steps=2 if args.quick else 4)
    device = jax.devices()[0]
    report = header(
        args.quick,
        rows=rows,
        fusion=fused,
    )
    lines = [
        measured_on(report)
        + ". MLP 784-256-256-10, batch 32 per worker; per-step time in simulate's loop; ratio:"
        " median over 7 alternating rounds.",
        "",
        "| n | graph | push-sum / baseline | push-sum ms | baseline ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['graph']} | {r['pair']} | {r['push_ms']:.3f} | "
            f"{r['baseline_ms']:.3f} | {r['ratio']:.3f} |"
        )
    lines += [
        "",
        f"Parallel gradient tracking on the digraph's {fused['slots']}-slot lists, "
        f"n = {fused['n']}: {fused['separated_ms']:.1f} ms per step with the separation, "
        f"{fused['fused_ms']:.1f} ms with XLA fusing each gossip into the next.",
    ]
    stem = f"push_sum_{'quick' if args.quick else device.platform}"
    write(args.out, stem, report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
