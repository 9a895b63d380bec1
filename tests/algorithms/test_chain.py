"""decjax.chain: per-worker prefixes, the record kept through simulate, reductions to
decentralize, and the refusals of the compositions that lose the record."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decjax

N = 8


def _clip_then_sgd():
    return optax.clip_by_global_norm(0.3), optax.sgd(0.05, momentum=0.9)


def test_chain_of_local_parts_and_combine_is_decentralize():
    """``decjax.chain(clip, sgd, combine(W))`` is ``decentralize(optax.chain(clip, sgd), W)``:
    the same per-worker optimizer, then gossip (a time-varying graph, 5 steps)."""
    topology = decjax.random_matching(N, key=0, period=3)
    ours = decjax.chain(*_clip_then_sgd(), decjax.combine(topology))
    reference = decjax.decentralize(optax.chain(*_clip_then_sgd()), topology)
    params = jax.random.normal(jax.random.key(0), (N, 5))
    states = [ours.init(params), reference.init(params)]
    mine, theirs = params, params
    for t in range(5):
        grads = jax.random.normal(jax.random.fold_in(jax.random.key(1), t), (N, 5)) * (t + 1)
        mine, states[0], info = ours.step(grads, states[0], mine)
        theirs, states[1], reference_info = reference.step(grads, states[1], theirs)
        assert float(info["bytes_sent"]) == float(reference_info["bytes_sent"]) > 0
    np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-7)
    assert not np.allclose(mine, params)


def test_simulate_keeps_the_record_of_a_chain_and_prices_its_time():
    q = decjax.problems.quadratics(N, 3, key=jax.random.key(0))
    clock = decjax.timing.TimeModel(decjax.timing.Network(1e-3, 1e5), compute=0.01)
    kwargs = {"steps": 12, "eval_every": 6, "key": jax.random.key(1), "progress": False}
    kwargs["timing"] = clock
    bare = decjax.simulate(
        q.loss, q.init_params(), decjax.dpsgd(0.05, decjax.ring(N)), q.data, **kwargs
    )
    chained = decjax.simulate(
        q.loss,
        q.init_params(),
        decjax.chain(optax.clip_by_global_norm(1e6), decjax.dpsgd(0.05, decjax.ring(N))),
        q.data,
        **kwargs,
    )
    assert float(bare.final("bytes_sent")) > 0
    for metric in ("bytes_sent", "time"):
        np.testing.assert_array_equal(chained.metrics[metric], bare.metrics[metric])
    # the time holds the messages: 12 steps of 10 ms compute alone would be 0.12 s
    assert float(bare.final("time")) > 0.12 + 12 * 1e-3


def test_a_chain_without_an_algorithm_is_per_worker_and_nests():
    grads = jnp.ones((N, 4)).at[0].multiply(100.0)
    local = decjax.chain(optax.clip_by_global_norm(1.0), optax.scale(-1.0))
    assert isinstance(local, decjax.algorithms.PerWorker)
    updates, _ = local.update(grads, local.init(grads), grads)
    np.testing.assert_allclose(jnp.linalg.norm(updates, axis=1), np.ones(N), rtol=1e-6)
    nested = decjax.chain(local, decjax.combine(decjax.ring(N)))
    flat = decjax.chain(
        optax.clip_by_global_norm(1.0), optax.scale(-1.0), decjax.combine(decjax.ring(N))
    )
    params = jnp.zeros((N, 4))
    a, _, _ = nested.step(grads, nested.init(params), params)
    b, _, _ = flat.step(grads, flat.init(params), params)
    chex.assert_trees_all_close(a, b, rtol=1e-6)


def test_per_worker_of_per_worker_is_itself():
    once = decjax.per_worker(optax.adam(1e-3))
    assert decjax.per_worker(once) is once
    assert once.init(jnp.zeros((N, 3)))[0].count.shape == (N,)


def test_a_chain_of_one_algorithm_is_that_algorithm():
    tx = decjax.dpsgd(0.1, decjax.ring(N))
    assert decjax.chain(tx) is tx


@pytest.mark.parametrize(
    "build, words",
    [
        (
            lambda: decjax.chain(decjax.dpsgd(0.1, decjax.ring(N)), optax.sgd(0.1)),
            "only the last may",
        ),
        (
            lambda: decjax.chain(
                optax.chain(optax.sgd(0.1), decjax.combine(decjax.ring(N))), optax.sgd(0.1)
            ),
            "only the last may",
        ),
    ],
)
def test_chains_that_would_lose_the_record_are_refused(build, words):
    with pytest.raises(ValueError, match=words):
        build()


def test_simulate_refuses_optax_chain_around_an_algorithm_and_timing_without_traffic():
    q = decjax.problems.quadratics(N, 3, key=jax.random.key(0))

    def run(tx, **extra):
        return decjax.simulate(
            q.loss, q.init_params(), tx, q.data, steps=2, key=jax.random.key(0), **extra
        )

    raw = optax.chain(decjax.per_worker(optax.sgd(0.1)), decjax.combine(decjax.ring(N)))
    with pytest.raises(ValueError, match=r"use decjax\.chain"):
        run(raw, progress=False)
    clock = decjax.timing.TimeModel(compute=0.01)
    with pytest.raises(ValueError, match="tx reports none"):
        run(decjax.per_worker(optax.sgd(0.1)), progress=False, timing=clock)
    # a plain per-worker optimizer without a clock is local training: allowed
    assert run(decjax.per_worker(optax.sgd(0.1)), progress=False).steps[-1] == 2
