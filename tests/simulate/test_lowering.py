"""``worker_chunks="auto"``: one worker at a time for convolutions on the CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax import _platform
from decjax.problems import cnn1d
from decjax.simulate._lowering import (
    PAYBACK_FLOAT_STEPS,
    check_worker_chunks,
    has_convolution,
    resolve_steps_per_iteration,
    resolve_worker_chunks,
)

N = 4


def _conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))


def test_convolutions_are_found_inside_jit_remat_cond_and_scan():
    x, w = jnp.ones((2, 8, 3)), jnp.ones((3, 3, 4))
    assert has_convolution(_conv, x, w)
    assert not has_convolution(lambda x, w: x @ w[0], x, w)
    nested = [
        jax.jit(_conv),
        jax.checkpoint(_conv),
        lambda x, w: jax.lax.cond(True, _conv, lambda x, w: _conv(x, w) + 1, x, w),
        lambda x, w: jax.lax.scan(lambda c, _: (_conv(c, w[:, :, :3]), None), x, None, 2)[0],
        jax.grad(lambda w, x: jnp.sum(_conv(x, w)), argnums=0),
    ]
    for fn in nested[:-1]:
        assert has_convolution(fn, x, w)
    assert has_convolution(nested[-1], w, x)


def test_auto_is_one_worker_at_a_time_for_a_convnet_on_the_cpu_and_one_group_otherwise():
    conv = cnn1d(channels=4)
    conv_params = decjax.replicate(conv.init(jax.random.key(0)), N)
    batch = (jnp.ones((N, 8, 40)), jnp.zeros((N, 8), jnp.int32))
    mlp = decjax.problems.mlp([40, 8, 10])
    mlp_params = decjax.replicate(mlp.init(jax.random.key(0)), N)
    cpu = jax.default_backend() == "cpu"
    assert resolve_worker_chunks("auto", conv.loss, conv_params, batch) == (N if cpu else 1)
    assert resolve_worker_chunks("auto", mlp.loss, mlp_params, batch) == 1
    assert resolve_worker_chunks(2, conv.loss, conv_params, batch) == 2
    with _platform.lowering("plain"):
        assert resolve_worker_chunks("auto", conv.loss, conv_params, batch) == 1
    with _platform.lowering("cpu"):
        assert resolve_worker_chunks("auto", conv.loss, conv_params, batch) == N


def test_the_lowering_is_one_switch_for_a_run_and_changes_only_rounding():
    """``Execution(lowering=...)`` decides every CPU workaround of a run (the convolution's
    gradient, worker_chunks="auto", gossip kept from fusing); the results agree."""
    tx = decjax.gradient_tracking(0.05, decjax.ring(N))
    plain, cpu = (
        _convnet_run(tx, 8, execution=decjax.Execution(lowering=lowering))
        for lowering in ("plain", "cpu")
    )
    np.testing.assert_allclose(
        plain.metrics["train_loss"], cpu.metrics["train_loss"], rtol=1e-5, atol=1e-6
    )
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(cpu.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    x = jnp.ones((N, 3))
    with _platform.lowering("plain"):
        assert "cond" not in str(jax.make_jaxpr(lambda x: _platform.separated(x, 0))(x))
    with _platform.lowering("cpu"):
        assert "cond" in str(jax.make_jaxpr(lambda x: _platform.separated(x, 0))(x))
    with pytest.raises(ValueError, match="lowering must be one of"):
        decjax.Execution(lowering="gpu")


@pytest.mark.parametrize(
    "value, error",
    [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("fast", TypeError), (True, TypeError)],
)
def test_worker_chunks_is_a_positive_int_or_auto(value, error):
    assert check_worker_chunks("worker_chunks", "auto") == "auto"
    assert check_worker_chunks("worker_chunks", np.int64(3)) == 3
    with pytest.raises(error, match=r"worker_chunks must be a positive int or 'auto'"):
        check_worker_chunks("worker_chunks", value)


@pytest.mark.slow
def test_auto_gives_the_run_of_its_choice():
    """On the CPU a convnet's ``auto`` run is the ``worker_chunks=n`` run, bit for bit."""
    tx = decjax.dpsgd(0.05, decjax.ring(N), momentum=0.9)

    def run(chunks):
        return _convnet_run(tx, 4, worker_chunks=chunks).params

    auto, chosen, vmapped = run("auto"), run(N if jax.default_backend() == "cpu" else 1), run(1)
    for a, b, c in zip(*map(jax.tree.leaves, (auto, chosen, vmapped)), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


def _convnet_run(tx, steps, **options):
    """``steps`` steps of ``tx`` on a small 1-D convnet's full batches, ``N`` workers."""
    model = cnn1d(channels=4)
    x = jax.random.normal(jax.random.key(1), (N, 8, 40))
    y = jax.random.randint(jax.random.key(2), (N, 8), 0, 10)
    params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), N))
    return decjax.simulate(
        model.loss,
        params,
        tx,
        (x, y),
        steps=steps,
        key=jax.random.key(3),
        progress=False,
        **options,
    )


def test_auto_steps_per_iteration_is_two_only_for_a_long_run_without_a_convolution():
    """Two steps per loop iteration save a params copy per step and double the compiled loop
    body: ``"auto"`` keeps them for runs long enough to pay the compile back
    (:data:`PAYBACK_FLOAT_STEPS` parameter-steps), never for a compute-bound convnet."""
    conv, mlp = cnn1d(channels=4), decjax.problems.mlp([40, 8, 10])
    batch = (jnp.ones((N, 5, 40)), jnp.zeros((N, 5), jnp.int32))
    conv_params = decjax.replicate(conv.init(jax.random.key(0)), N)
    mlp_params = decjax.replicate(mlp.init(jax.random.key(0)), N)
    floats = sum(x.size for x in jax.tree.leaves(mlp_params))  # N workers x 418
    payback = -(-PAYBACK_FLOAT_STEPS // floats)  # the shortest run that pays back

    def auto(model, params, run_steps):
        return resolve_steps_per_iteration("auto", model.loss, params, batch, run_steps=run_steps)

    assert auto(mlp, mlp_params, payback) == 2
    assert auto(mlp, mlp_params, payback - 1) == 1
    assert auto(mlp, mlp_params, None) == 2  # the run's length unknown
    assert auto(conv, conv_params, 10**12) == 1
    assert resolve_steps_per_iteration(3, conv.loss, conv_params, batch, run_steps=1) == 3

    def program(model, params, steps, **kw):
        tx = decjax.dpsgd(0.1, decjax.ring(N))
        run = decjax.make_run(model.loss, tx, steps=steps, eval_every=4, **kw)
        return str(jax.make_jaxpr(lambda p: run(p, jax.random.key(1), batch))(params))

    assert program(conv, conv_params, 8) == program(conv, conv_params, 8, steps_per_iteration=1)
    assert program(conv, conv_params, 8) != program(conv, conv_params, 8, steps_per_iteration=2)
    assert program(mlp, mlp_params, 8) == program(mlp, mlp_params, 8, steps_per_iteration=1)
    long = 4 * -(-payback // 4)  # a multiple of eval_every
    two = program(mlp, mlp_params, long, steps_per_iteration=2)
    assert program(mlp, mlp_params, long) == two
    assert two != program(mlp, mlp_params, long, steps_per_iteration=1)
    with pytest.raises(ValueError, match="steps_per_iteration must be a positive int or 'auto'"):
        decjax.Execution(steps_per_iteration=0)
