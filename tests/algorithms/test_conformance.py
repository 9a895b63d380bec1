"""One conformance battery over every registered algorithm (cf. optax's contrib _common_test)."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import on_graph, step_loop

import decjax
from decjax.algorithms import ALGORITHMS, NAMES, TREE_ONLY
from decjax.gossip import TRAFFIC

N, D = 8, 6

# The costlier checks run on four algorithms in the inner loop, on all in the slow tier.
SAMPLE = ("dpsgd", "gradient_tracking", "detag", "dasgd")
SAMPLED = [n if n in SAMPLE else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
# the cheap checks run on every algorithm in the inner loop, except variants whose
# sibling runs there (osgp is sgp with delayed shares; the DiLoCo family is tested against
# references and reductions in test_diloco.py, in the inner loop): slow tier
VARIANTS = ("osgp", "diloco", "gossip_diloco", "streaming_diloco")
EVERY = [pytest.param(n, marks=pytest.mark.slow) if n in VARIANTS else n for n in NAMES]


@pytest.fixture(scope="module")
def quad():
    return decjax.problems.quadratics(N, D, key=jax.random.key(0))


def _params():
    return {"w": jnp.zeros((N, D)), "b": jnp.zeros((N, 2))}


def _grads(params, t):
    return jax.tree.map(
        lambda p: jax.random.normal(jax.random.fold_in(jax.random.key(7), t), p.shape), params
    )


def _steps(tx, params, count, grads_fn=_grads, **extra):
    state = tx.init(params)
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, **extra))
    states = [state]
    for t in range(count):
        updates, state = update(grads_fn(params, t), state, params)
        params = optax.apply_updates(params, updates)
        states.append(state)
    return params, states


@pytest.mark.parametrize("name", EVERY)
def test_runs_under_jit_and_accepts_extra_args(name):
    """An extra argument it does not use changes nothing, bit for bit (and the run moved)."""
    tx = ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    params, _ = _steps(tx, _params(), 4, unused_extra_arg=jnp.ones(()))
    plain, _ = _steps(tx, _params(), 4)
    chex.assert_trees_all_equal(params, plain)
    assert any(bool(jnp.any(x != 0)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", EVERY)
def test_state_structure_shapes_and_dtypes_are_stable(name):
    """Abstractly (``jax.eval_shape``: traced, never compiled), the state an update returns
    has the init state's structure, shapes, dtypes and weak types, step after step: a
    jitted loop over it never retraces."""
    tx = ALGORITHMS[name](
        0.05, on_graph(name, decjax.random_matching(N, key=0, period=3))
    )  # time-varying
    params = jax.eval_shape(_params)
    state = first = jax.eval_shape(tx.init, params)
    for t in range(3):
        _, state = jax.eval_shape(tx.update, jax.eval_shape(_grads, params, t), state, params)
        assert jax.tree.structure(state) == jax.tree.structure(first)
        assert jax.tree.leaves(state) == jax.tree.leaves(first)  # ShapeDtypeStruct equality


CLOCK = decjax.timing.TimeModel(
    decjax.timing.Network(1e-3, 1e4, port_bandwidth=3e4), compute=decjax.timing.Compute(0.01)
)


_price = jax.jit(lambda traffic, t: CLOCK.step_time(traffic, t, N))  # one program per record


def _timed_steps(tx, count=8):
    """``count`` steps of ``tx.step``: the params, and per step the record's scalars and
    the simulated seconds the clock prices its traffic at."""
    params, state, out = _params(), tx.init(_params()), []
    step = jax.jit(tx.step)
    for t in range(count):
        params, state, info = step(_grads(params, t), state, params)
        seconds = _price(info.get(TRAFFIC), t)
        out.append({k: float(v) for k, v in info.items() if k != TRAFFIC})
        out[-1]["time"] = float(seconds)
    return params, out


@pytest.mark.parametrize("name", EVERY)
def test_the_record_survives_decjax_chain_and_local_then(name):
    """Prefixes that change nothing (a clip above every norm, a unit scale) leave the params
    (to float32 rounding) and, exactly, the record and the priced time of the bare algorithm."""
    bare = _timed_steps(ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N))))
    chained = decjax.chain(
        optax.clip_by_global_norm(1e6),
        optax.scale(1.0),
        ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N))),
    )
    local = decjax.algorithms.local_then(
        decjax.per_worker(optax.scale(1.0)), ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    )
    assert any(r["bytes_sent"] > 0 for r in bare[1]) and all(r["time"] > 0 for r in bare[1])
    for tx in (chained, local):
        params, records = _timed_steps(tx)
        chex.assert_trees_all_close(params, bare[0], rtol=1e-5, atol=1e-7)  # adam: fusion
        assert records == bare[1]


@pytest.mark.parametrize("name", SAMPLED)
def test_decjax_chain_applies_global_norms_per_worker(name):
    """Clipping in ``decjax.chain`` is each worker's own: one worker's huge gradient leaves
    the others' clipped steps as they are (a bare optax.chain clipped by the joint norm)."""
    grads = {"w": jnp.ones((N, D)).at[0].multiply(1e4), "b": jnp.ones((N, 2))}
    clip = optax.clip_by_global_norm(0.5)
    per = jax.vmap(lambda g: clip.update(g, clip.init(g))[0])(grads)
    expected = ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    tx = decjax.chain(
        optax.clip_by_global_norm(0.5), ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    )
    params = _params()
    new, _, _ = tx.step(grads, tx.init(params), params)
    want, _, _ = expected.step(per, expected.init(params), params)
    chex.assert_trees_all_close(new, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", SAMPLED)
def test_accepts_a_schedule_as_learning_rate(name):
    sched = optax.linear_schedule(0.1, 0.01, 10)
    params_sched, _ = _steps(ALGORITHMS[name](sched, on_graph(name, decjax.ring(N))), _params(), 6)
    params_const, _ = _steps(ALGORITHMS[name](0.1, on_graph(name, decjax.ring(N))), _params(), 6)
    flat, _ = _steps(
        ALGORITHMS[name](optax.constant_schedule(0.1), on_graph(name, decjax.ring(N))), _params(), 6
    )
    chex.assert_trees_all_close(flat, params_const, rtol=1e-6, atol=1e-7)  # a constant schedule
    assert not all(
        np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(params_sched), jax.tree.leaves(params_const), strict=True)
    )


@pytest.mark.parametrize("name", SAMPLED)
def test_vmaps_over_learning_rates_in_one_compile(name, quad):
    factory = ALGORITHMS[name]
    traces = []
    graph = on_graph(name, decjax.ring(N))  # built outside: a tree's routes need its graph

    @jax.jit
    @jax.vmap
    def run(lr):
        traces.append(1)
        tx = factory(lr, graph)
        x = quad.init_params()

        def body(carry, _):
            x, state = carry
            u, state = tx.update(jax.vmap(jax.grad(quad.loss))(x, quad.data), state, x)
            return (optax.apply_updates(x, u), state), None

        (x, _), _ = jax.lax.scan(body, (x, tx.init(x)), None, length=6)
        return x

    out = run(jnp.array([0.01, 0.05]))
    run(jnp.array([0.02, 0.03]))
    assert len(traces) == 1
    single = quad.init_params()
    tx = factory(0.05, on_graph(name, decjax.ring(N)))
    state = tx.init(single)
    for _ in range(6):
        u, state = tx.update(jax.vmap(jax.grad(quad.loss))(single, quad.data), state, single)
        single = optax.apply_updates(single, u)
    np.testing.assert_allclose(out[1], single, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0], out[1])


# RelaySGD stands in the start point for the workers not heard from yet: from a common
# start it keeps every model (test_relaysgd.py), from distinct ones not the average
@pytest.mark.parametrize("name", [n for n in EVERY if n not in TREE_ONLY])
def test_zero_gradients_preserve_the_worker_average(name):
    params = {"w": jax.random.normal(jax.random.key(1), (N, D)), "b": jnp.ones((N, 2))}
    final, _ = _steps(
        ALGORITHMS[name](0.1, on_graph(name, decjax.hypercube(N))),
        params,
        5,
        grads_fn=lambda p, t: optax.tree.zeros_like(p),
    )
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a.mean(axis=0), b.mean(axis=0), atol=2e-6)


@pytest.mark.parametrize("name", EVERY)
def test_counts_the_bytes_it_sends(name):
    tx = ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    _, _, records = step_loop(tx, _params(), _grads, 8, history=True)
    sent = [0.0] + [float(r["bytes_sent"]) for r in records]
    assert sent[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(sent))
    assert sent[-1] > 0
    # never more than 2 vectors to each of the 2 ring neighbours per step, except
    # consensus control's extra rounds and exact averages (2 model copies)
    if name != "consensus_control":
        assert sent[-1] <= 8 * 2 * 2 * (D + 2) * 4


RECORDED = {"bytes_sent", "gossip_rounds", "staleness_sum", "staleness_count", "staleness_max"}
LOCAL_FIRST = ("local_sgd", "diloco", "gossip_diloco", "streaming_diloco")


@pytest.mark.parametrize("name", SAMPLED)
def test_traffic_record_adds_up_to_bytes_sent(name):
    """One channel: the bytes the time model reads (every message, in-flight message and
    all-reduce) add up to ``bytes_sent``, step by step (8 steps: DiLoCo's outer step too)."""
    tx = ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    params = _params()
    state, step = tx.init(params), jax.jit(tx.step)
    for t in range(8):
        params, state, info = step(_grads(params, t), state, params)
        traffic = info[TRAFFIC]
        assert isinstance(traffic, decjax.gossip.Traffic)
        record = traffic.links
        links = jnp.zeros((1, N, N)) if record is None else record.dense()
        assert links.ndim == 3 and links.shape[1:] == (N, N)
        assert float(jnp.min(links)) >= 0 and float(jnp.max(jnp.diagonal(links, 0, 1, 2))) == 0
        if record is not None:  # the edge list carries every message once
            np.testing.assert_allclose(float(record.total()), float(jnp.sum(links)), rtol=1e-6)
        inflight = 0.0 if traffic.inflight is None else float(jnp.sum(traffic.inflight))
        allreduce = 0.0 if traffic.allreduce is None else float(traffic.allreduce)
        total = float(jnp.sum(links)) + inflight + 2 * (N - 1) * allreduce
        np.testing.assert_allclose(total / N, float(info["bytes_sent"]), rtol=1e-6)
        np.testing.assert_allclose(float(traffic.total_bytes(N)), total, rtol=1e-6)
        # one message per link and phase that carries bytes, 2 n (n - 1) per all-reduce
        messages = float(jnp.sum(links > 0)) + (2 * N * (N - 1) if allreduce > 0 else 0)
        if traffic.inflight is not None:
            messages += float(jnp.sum(traffic.inflight > 0))
        assert float(traffic.messages(N)) == messages


@pytest.mark.parametrize("name", EVERY)
def test_steps_directly_and_reports_a_record_of_scalars(name):
    """Every algorithm follows the StepTransformation protocol: ``step`` returns the new
    params (what ``update`` + ``apply_updates`` give) and this step's record, and the
    record of a step that sent nothing to anyone (solo) is zero bytes."""
    tx = ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    assert isinstance(tx, decjax.algorithms.StepTransformation)
    params = _params()
    _, _, info = jax.jit(tx.step)(_grads(params, 0), tx.init(params), params)
    scalars = {k: v for k, v in info.items() if k != TRAFFIC}
    assert "bytes_sent" in info and set(scalars) <= RECORDED
    assert all(jnp.shape(v) == () for v in scalars.values())
    assert float(info["bytes_sent"]) > 0 or name in LOCAL_FIRST  # whose first step is local
    if name in TREE_ONLY:
        return  # solo is no spanning tree (refused)
    alone = ALGORITHMS[name](0.05, decjax.solo(N))
    _, _, info = jax.jit(alone.step)(_grads(params, 0), alone.init(params), params)
    assert float(info["bytes_sent"]) == 0.0


def test_every_algorithm_is_selectable_by_name():
    assert {
        "gradient_tracking",
        "d2",
        "exact_diffusion",
        "detag",
        "qg_dsgdm",
        "local_sgd",
        "gossip_pga",
        "consensus_control",
        "choco_top10",
        "dpsgd",
        "sgp",
        "osgp",
        "push_diging",
    } <= set(NAMES)
    with pytest.raises(ValueError, match="name must be one of"):
        decjax.algorithms.by_name("not_an_algorithm")


@pytest.mark.parametrize("name", EVERY)
def test_direct_apply_agrees_with_update_plus_apply_updates(name):
    """``apply_step`` (what simulate uses) equals the optax protocol's update + apply_updates."""
    tx = ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    params = {"w": jax.random.normal(jax.random.key(0), (N, D)), "b": jnp.ones((N, 2))}
    s_update = s_apply = tx.init(params)
    p_update = p_apply = params
    for t in range(4):
        g = _grads(params, t)
        u, s_update = tx.update(g, s_update, p_update)
        p_update = optax.apply_updates(p_update, u)
        p_apply, s_apply, _ = decjax.algorithms.apply_step(tx, g, s_apply, p_apply)
    for a, b in zip(jax.tree.leaves(p_apply), jax.tree.leaves(p_update), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if name not in ("dasgd",):  # DASGD's update is additive by nature
        assert isinstance(tx, decjax.algorithms.DecentralizedTransformation)


def _with_learning_rate(factory, name):
    graph = on_graph(name, decjax.ring(N))  # built once, outside the traced update

    def build(learning_rate):
        return factory(learning_rate, graph)

    return build


@pytest.mark.parametrize("name", SAMPLED)
def test_inject_hyperparams_changes_the_learning_rate_without_recompiling(name):
    """optax.inject_hyperparams: the learning rate lives in the state and can change between
    steps; the jitted step is traced once and the change reaches the updates."""
    tx = optax.inject_hyperparams(_with_learning_rate(ALGORITHMS[name], name))(learning_rate=0.05)
    params = _params()
    traces = []

    @jax.jit
    def step(grads, state, params):
        traces.append(1)
        return tx.update(grads, state, params)

    state = tx.init(params)
    grads = _grads(params, 0)
    _, state = step(grads, state, params)
    outputs = []
    for lr in (0.05, 0.2):
        hyper = dict(state.hyperparams)
        hyper["learning_rate"] = jnp.asarray(lr, state.hyperparams["learning_rate"].dtype)
        current, x = state._replace(hyperparams=hyper), params
        for _ in range(4):  # DeTAG's step size first matters at the end of its second phase
            updates, current = step(grads, current, x)
            x = optax.apply_updates(x, updates)
        outputs.append(x)
    assert len(traces) == 1
    differ = [not np.allclose(a, b) for a, b in zip(*map(jax.tree.leaves, outputs), strict=True)]
    assert any(differ), "the new learning rate did not reach the updates"


@pytest.mark.parametrize("name", SAMPLED)
def test_bfloat16_params_stay_bfloat16(name):
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _params())
    tx = ALGORITHMS[name](0.05, on_graph(name, decjax.ring(N)))
    state = tx.init(params)
    for t in range(2):
        grads = jax.tree.map(lambda g: g.astype(jnp.bfloat16), _grads(params, t))
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.bfloat16)}
        assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
