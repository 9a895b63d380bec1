"""Test helpers shared across test modules (independent numpy references)."""

import jax
import numpy as np

import decjax

RANDOM_NAMES = ("equi_dyn", "ou_equi_dyn", "epidemic", "random_out")  # a fresh matrix at every step
# circulant like the exponential graphs, so the inner loop's catalogue sweeps skip them;
# test_beyond's slow tier runs those checks on them
DIRECTED_NAMES = ("directed_ring", "directed_exponential", "one_peer_directed_exponential")


def all_topologies(n: int, *, random: bool = False, directed: bool = False):
    """One instance of every catalogued topology that exists for ``n`` workers: those with
    fixed matrices, with ``random`` also those drawn afresh at every step, with ``directed``
    also the SGP paper's directed circulant graphs."""
    out = []
    for name in decjax.topology.NAMES:
        if name in RANDOM_NAMES and (not random or n < 2):
            continue
        if name in DIRECTED_NAMES and not directed:
            continue
        if name == "hypercube" and n & (n - 1):
            continue
        if name in ("torus", "grid") and all(n % d for d in range(2, n)):
            continue  # a prime n has no 2-D shape
        out.append(decjax.topology.by_name(name, n))
    return out


def dense_reference(topology, x, step: int, rounds: int = 1) -> np.ndarray:
    """Float64 numpy ``W_{t+k-1} ... W_t x`` from the dense matrices."""
    mats = topology.numpy_matrices()
    y = np.asarray(x, dtype=np.float64)
    for r in range(rounds):
        w = mats[(step + r) % topology.period]
        y = np.tensordot(w, y, axes=(1, 0))
    return y


def step_loop(tx, params, grads_fn, count: int, *, history: bool = False, **extra):
    """``count`` steps of ``apply_step`` (simulate's path: ``tx.step`` where there is one) in
    one jitted ``lax.scan``, with gradients ``grads_fn(params, t)``; returns the params, the
    state and the recorded metrics of the steps' records (``bytes_sent``, ``gossip_rounds``,
    ``staleness_avg``...), accumulated as simulate does (with ``history``, a list of them:
    after step 1, 2, ...)."""
    import jax
    import jax.numpy as jnp

    from decjax.algorithms import apply_step
    from decjax.gossip import TRAFFIC
    from decjax.metrics import accumulate, traffic_metrics, zero_totals

    def scalars(info):  # what simulate accumulates: the record less its traffic
        return {k: v for k, v in info.items() if k != TRAFFIC}

    state = tx.init(params)
    info = jax.eval_shape(lambda p, s: scalars(apply_step(tx, p, s, p, **extra)[2]), params, state)

    def body(carry, t):
        params, state, totals = carry
        params, state, info = apply_step(tx, grads_fn(params, t), state, params, **extra)
        totals = accumulate(totals, scalars(info))
        return (params, state, totals), traffic_metrics(totals)

    run = jax.jit(lambda carry: jax.lax.scan(body, carry, jnp.arange(count)))
    (params, state, totals), records = run((params, state, zero_totals(info)))
    if history:
        return params, state, [{k: v[i] for k, v in records.items()} for i in range(count)]
    return params, state, traffic_metrics(totals)


def quadratics(n: int, d: int, **kwargs):
    """The quadratic problem most oracles use (``n`` workers, dimension ``d``, key 0)."""
    import jax

    return decjax.problems.quadratics(n, d, key=jax.random.key(0), **kwargs)


def quadratic_grads(quad, x):
    """Per-worker full gradients of a quadratic problem at stacked ``x``."""
    import jax

    return jax.vmap(jax.grad(quad.loss))(x, quad.data)


def scan_run(tx, quad, steps: int, x=None, grads_fn=None):
    """``steps`` optax steps (``update`` then ``apply_updates``) in one jitted ``lax.scan``;
    full gradients of ``quad`` unless ``grads_fn(x, t)`` is given. Returns ``(x, state)``."""
    import jax
    import jax.numpy as jnp
    import optax

    grads_fn = grads_fn or (lambda x, t: quadratic_grads(quad, x))
    x = quad.init_params() if x is None else x

    def body(carry, t):
        x, state = carry
        u, state = tx.update(grads_fn(x, t), state, x)
        return (optax.apply_updates(x, u), state), None

    (x, state), _ = jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(steps)))((x, tx.init(x)))
    return x, state


def worker_shards(part) -> list[np.ndarray]:
    """Each worker's example indices from a :func:`decjax.data.partition`."""
    idx, counts = np.asarray(part.indices), np.asarray(part.counts)
    return [idx[i, :c] for i, c in enumerate(counts)]


def on_graph(name: str, topology):
    """The topology the batteries run algorithm ``name`` on: ``topology`` itself, or for the
    algorithms that relay over spanning trees (``TREE_ONLY``) its breadth-first spanning
    tree (a chain where it has none: a time-varying or disconnected step 0)."""
    if name not in decjax.algorithms.TREE_ONLY:
        return topology
    try:
        return decjax.topology.spanning_tree(topology)
    except ValueError:
        return decjax.topology.chain(topology.n)


def bfloat16_digits(n: int):
    """``(model, params, data)``: an MLP 64-16-10 on digits (iid over ``n`` workers) with
    its parameters and inputs stored in bfloat16."""
    import decjax

    data = decjax.data.distribute(decjax.data.load_digits(), n, "iid", key=0)
    model = decjax.problems.mlp([64, 16, 10])
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    params = jax.tree.map(lambda a: a.astype(jax.numpy.bfloat16), params)
    return model, params, data._replace(x=data.x.astype(jax.numpy.bfloat16))
