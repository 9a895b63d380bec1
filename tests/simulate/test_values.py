"""The checks' value reads: NumPy on the host and the compiled device path agree, and a
run's checks compile nothing of their own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax.simulate import _run, _values
from decjax.simulate.options import Options

LEAVES = [
    jnp.ones(3, jnp.bfloat16).at[1].set(jnp.inf),
    jnp.ones((2, 2), jnp.float16),
    jnp.ones(2, jnp.complex64).at[0].set(complex(0.0, np.nan)),
    np.array([1.0, np.nan]),
    np.array([[1.0, 2.0]], np.float32),
    2.0,
    jnp.arange(12.0).reshape(3, 4)[:, 1:],
]


def test_the_host_and_device_finiteness_checks_agree_leaf_by_leaf():
    expected = [False, True, False, False, True, True, True]
    np.testing.assert_array_equal(_values.all_finite(LEAVES), expected)
    np.testing.assert_array_equal(np.asarray(_values._finite_on_device(LEAVES)), expected)
    assert _values.all_finite([]).shape == (0,)


@pytest.mark.parametrize("x", [np.array([3, -1, 7]), jnp.array([3, -1, 7], jnp.int32)])
def test_the_value_range_is_read_as_python_ints(x):
    assert _values.value_range(x) == (-1, 7)
    low, high = _values._range_on_device(jnp.asarray(x))
    assert (int(low), int(high)) == (-1, 7)


def test_a_runs_checks_lower_no_program_on_the_cpu():
    """simulate's checks before compiling (finite params and data, labels in range, the
    functions traced on one worker) run no eager JAX op: the first run of new shapes
    lowers its training program and no per-shape check programs (each eager op lowers a
    program of its own, also when the persistent cache then answers its compile)."""
    n = 3
    model = decjax.problems.mlp([7, 5, 3])
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    data = (jnp.ones((n, 4, 7)), jnp.full((n, 4), 2))  # JAX arrays, as users pass them
    run = _run.Run(model.loss, 2, Options(), params, data, key=jax.random.key(1))
    lowered = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        _run.prepare(run, lambda: decjax.dpsgd(0.1, decjax.ring(n)), keep_finite=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert lowered == []
    # the listener hears a lowering: an eager op on a new shape is one
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jnp.sin(jnp.ones(17))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert lowered
