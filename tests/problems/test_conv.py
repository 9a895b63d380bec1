"""decjax's convolution: lax's forward pass, and on the CPU patch-matmul gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import decjax
from decjax import _platform
from decjax.problems import conv_general_dilated

CASES = {
    # lhs shape, rhs shape, strides, padding, rhs dilation, dimension numbers
    "2d-same": (
        (3, 9, 9, 3),
        (3, 3, 3, 5),
        (1, 1),
        [(1, 1), (1, 1)],
        None,
        ("NHWC", "HWIO", "NHWC"),
    ),
    "2d-stride": ((3, 10, 10, 3), (3, 3, 3, 4), (2, 2), [(1, 1), (1, 1)], (1, 1), None),
    "2d-uneven": ((2, 11, 11, 2), (5, 3, 2, 4), (2, 1), [(0, 2), (1, 0)], (2, 1), None),
    "1d": ((4, 40, 1), (5, 1, 6), (2,), [(2, 2)], None, ("NWC", "WIO", "NWC")),
    "1d-same": ((4, 40, 3), (3, 3, 6), (2,), "SAME", None, ("NWC", "WIO", "NWC")),
    "2d-valid": ((2, 12, 12, 6), (5, 5, 6, 16), (1, 1), "VALID", None, None),
}


def _numbers(case):
    return case[-1] or ("NHWC", "HWIO", "NHWC")


FAST_CASES = ("2d-same",)  # the 1-D cases run in the slow tier


@pytest.mark.parametrize(
    "name", [c if c in FAST_CASES else pytest.param(c, marks=pytest.mark.slow) for c in CASES]
)
def test_values_and_both_gradients_match_lax(name):
    lhs_shape, rhs_shape, strides, padding, dilation, _ = CASES[name]
    numbers = _numbers(CASES[name])
    x = jax.random.normal(jax.random.key(0), lhs_shape)
    w = jax.random.normal(jax.random.key(1), rhs_shape) / 3.0

    def loss(conv):
        def f(x, w):
            y = conv(x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=numbers)
            return jnp.sum(jnp.sin(y)), y

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

    (ours, y_ours), grads_ours = loss(conv_general_dilated)(x, w)
    (theirs, y_theirs), grads_theirs = loss(lax.conv_general_dilated)(x, w)
    np.testing.assert_array_equal(y_ours, y_theirs)  # the forward pass is lax's
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    for a, b in zip(grads_ours, grads_theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


def _uses_patch_grad(fn, *args) -> bool:
    return "custom_jvp_call" in str(jax.make_jaxpr(fn)(*args))


def test_under_the_cpu_lowering_the_backward_pass_has_no_convolution():
    """Both gradients are matmuls of patches taken by slices: the only convolution left in
    the gradient's program is the forward pass (lax's patch operator, or lax's own
    gradients, would each add one; XLA:CPU runs those slowly inside a loop over workers)."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 5))

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.tanh(_stride_two(conv)(x, w)))

    def convolutions(fn) -> int:
        return str(jax.make_jaxpr(jax.grad(fn, argnums=(0, 1)))(x, w)).count(
            "conv_general_dilated["
        )

    with _platform.lowering("cpu"):
        assert convolutions(loss(conv_general_dilated)) == 1
    assert convolutions(loss(lax.conv_general_dilated)) == 3


def test_under_vmap_and_lax_map_per_worker_weights_get_the_same_gradients():
    n = 3
    x = jax.random.normal(jax.random.key(0), (n, 2, 8, 8, 2))
    w = jax.random.normal(jax.random.key(1), (n, 3, 3, 2, 4))

    def grads(conv):
        def loss(w, x):
            y = conv(x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return jnp.sum(jnp.tanh(y))

        return jax.grad(loss, argnums=(0, 1))

    want = jax.jit(jax.vmap(grads(lax.conv_general_dilated)))(w, x)
    vmapped = jax.jit(jax.vmap(grads(conv_general_dilated)))(w, x)
    mapped = jax.jit(lambda w, x: lax.map(lambda a: grads(conv_general_dilated)(*a), (w, x)))(w, x)
    for got in (vmapped, mapped):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_other_convolutions_are_lax_itself():
    """Grouped convolutions, input dilation and other layouts fall back."""
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 2, 4))
    numbers = ("NHWC", "HWIO", "NHWC")
    fallbacks = [
        lambda x, w: conv_general_dilated(
            x, w, (1, 1), [(1, 1)] * 2, dimension_numbers=numbers, feature_group_count=2
        ),
        lambda x, w: conv_general_dilated(
            x,
            w[:, :, :1].repeat(4, 2),
            (1, 1),
            [(1, 1)] * 2,
            lhs_dilation=(2, 2),
            dimension_numbers=numbers,
        ),
        lambda x, w: conv_general_dilated(
            x.transpose(0, 3, 1, 2),
            w[:, :, :1].repeat(4, 2).transpose(3, 2, 0, 1),
            (1, 1),
            [(1, 1)] * 2,
        ),
    ]
    for fn in fallbacks:
        assert not _uses_patch_grad(fn, x, w)

    def fast(x, w):
        w = w[:, :, :1].repeat(4, 2)
        return conv_general_dilated(x, w, (1, 1), [(1, 1)] * 2, dimension_numbers=numbers)

    assert _uses_patch_grad(fast, x, w) == (jax.default_backend() == "cpu")


def test_the_zoo_uses_it():
    model = decjax.problems.cnn1d(channels=4)
    params = model.init(jax.random.key(0))
    batch = (jnp.ones((2, 40)), jnp.zeros(2, jnp.int32))
    assert _uses_patch_grad(model.loss, params, batch) == (jax.default_backend() == "cpu")


def _stride_two(conv):
    def f(x, w):
        return conv(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    return f


def test_forward_mode_jvp_jacfwd_and_hessian_vector_products_match_lax():
    """The rule is written in forward mode: ``jax.jvp`` and ``jax.jacfwd`` work (they were a
    TypeError with a custom_vjp), and second order agrees with lax's."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 5)) / 3.0
    dx = jax.random.normal(jax.random.key(2), x.shape)
    dw = jax.random.normal(jax.random.key(3), w.shape)
    ours, theirs = _stride_two(conv_general_dilated), _stride_two(lax.conv_general_dilated)
    (y, t), (y_lax, t_lax) = jax.jvp(ours, (x, w), (dx, dw)), jax.jvp(theirs, (x, w), (dx, dw))
    np.testing.assert_array_equal(y, y_lax)
    np.testing.assert_allclose(t, t_lax, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(t_lax))))
    small = x[:1, :4, :4]
    np.testing.assert_allclose(
        jax.jacfwd(lambda w: ours(small, w).sum())(w),
        jax.jacfwd(lambda w: theirs(small, w).sum())(w),
        rtol=1e-5,
        atol=1e-5,
    )

    def hvp(conv):
        grad = jax.grad(lambda w: jnp.sum(jnp.sin(conv(x, w))))
        return jax.jvp(grad, (w,), (dw,))[1]

    want = hvp(theirs)
    np.testing.assert_allclose(
        hvp(ours), want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want)))
    )


def test_bfloat16_stays_bfloat16_and_agrees_with_lax():
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3)).astype(jnp.bfloat16)
    w = (jax.random.normal(jax.random.key(1), (3, 3, 3, 5)) / 3.0).astype(jnp.bfloat16)

    def grads(conv):
        loss = lambda x, w: jnp.sum(_stride_two(conv)(x, w).astype(jnp.float32) ** 2)  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)

    ours, theirs = grads(conv_general_dilated), grads(lax.conv_general_dilated)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype == jnp.bfloat16
        scale = float(jnp.max(jnp.abs(b.astype(jnp.float32))))
        # bfloat16 keeps 8 bits: the two orders of summation agree to a few units of it
        np.testing.assert_allclose(
            a.astype(jnp.float32), b.astype(jnp.float32), atol=2**-6 * scale, rtol=0
        )
    tangent = jax.jvp(_stride_two(conv_general_dilated), (x, w), (x, w))[1]
    assert tangent.dtype == jnp.bfloat16


def test_the_lowering_switch_decides_on_any_backend():
    """``Execution(lowering=...)``: "plain" is lax itself, "cpu" the patch-matmul rule."""
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
    # a new function each time: JAX caches a trace by function, not by the lowering (a
    # run's program is a new function for each run)
    with _platform.lowering("plain"):
        assert not _uses_patch_grad(_stride_two(conv_general_dilated), x, w)
    with _platform.lowering("cpu"):
        assert _uses_patch_grad(_stride_two(conv_general_dilated), x, w)
    with pytest.raises(ValueError, match="lowering must be one of"):
        with _platform.lowering("gpu"):
            pass
