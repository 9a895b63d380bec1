"""A convolution whose weight gradient is a matmul of patches: fast on XLA:CPU.

Inside a loop over workers (``lax.map``, how decjax runs convnets on the CPU),
XLA:CPU computes a convolution's weight gradient slowly: for ResNet-20's
first-stage convolution (3x3, 16 channels, batch 32) 1,839 ms for 16 workers,
against 26 ms for the forward pass (``benchmarks/results/conv_lowering_cpu.md``).
:func:`conv_general_dilated` has ``lax.conv_general_dilated``'s signature and
its forward pass and input gradient, and on the CPU computes the weight
gradient as the input's patches (``lax.conv_general_dilated_patches``) times
the output's cotangent, one matmul: 254 ms for the same layer. The patches
are ``prod(kernel)`` times the input's size while the backward pass runs, so
a vmapped model holds more memory (the memory study in docs/benchmarks.md).
The zoo's models use it; pass it to your own layers as
``nnx.Conv(..., conv_general_dilated=decjax.problems.conv_general_dilated)``.
Elsewhere (GPUs, grouped or dilated-input convolutions, layouts other than
channels-last) it is ``lax.conv_general_dilated`` itself.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax


def _channels_last(lhs_ndim: int, dimension_numbers) -> bool:
    nd = lhs_ndim
    spatial = tuple(range(1, nd - 1))
    return (
        tuple(dimension_numbers.lhs_spec) == (0, nd - 1, *spatial)
        and tuple(dimension_numbers.rhs_spec) == (nd - 1, nd - 2, *range(nd - 2))
        and tuple(dimension_numbers.out_spec) == (0, nd - 1, *spatial)
    )


def _trivial(dilation) -> bool:
    return dilation is None or all(d == 1 for d in dilation)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
):
    """``lax.conv_general_dilated``, with a patch-matmul weight gradient on the CPU."""
    spatial = len(lhs.shape) - 2
    for name, values in (("window_strides", window_strides), ("rhs_dilation", rhs_dilation)):
        if values is not None and (
            len(tuple(values)) != spatial or not all(isinstance(v, int) and v >= 1 for v in values)
        ):
            raise ValueError(f"{name} must be {spatial} ints >= 1, got {values!r}")
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    fast = (
        jax.default_backend() == "cpu"
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and out_sharding is None
        and _trivial(lhs_dilation)
        and _channels_last(lhs.ndim, numbers)
    )
    if not fast:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            batch_group_count,
            precision,
            preferred_element_type,
            out_sharding=out_sharding,
        )
    rhs_dilation = tuple(rhs_dilation or (1,) * (lhs.ndim - 2))
    if isinstance(padding, str):  # "SAME", "VALID"...: explicit pads
        window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:-2], rhs_dilation, strict=True)]
        padding = lax.padtype_to_pads(lhs.shape[1:-1], window, window_strides, padding)
    return _patch_grad_conv(
        lhs,
        rhs,
        tuple(window_strides),
        tuple(tuple(p) for p in padding),
        rhs_dilation,
        numbers,
        precision,
    )


def _conv(lhs, rhs, strides, padding, rhs_dilation, numbers, precision):
    return lax.conv_general_dilated(
        lhs,
        rhs,
        strides,
        padding,
        rhs_dilation=rhs_dilation,
        dimension_numbers=numbers,
        precision=precision,
    )


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _patch_grad_conv(lhs, rhs, strides, padding, rhs_dilation, numbers, precision):
    return _conv(lhs, rhs, strides, padding, rhs_dilation, numbers, precision)


def _forward(lhs, rhs, strides, padding, rhs_dilation, numbers, precision):
    return _conv(lhs, rhs, strides, padding, rhs_dilation, numbers, precision), (lhs, rhs)


def _backward(strides, padding, rhs_dilation, numbers, precision, residuals, cotangent):
    lhs, rhs = residuals
    _, input_vjp = jax.vjp(
        lambda x: _conv(x, rhs, strides, padding, rhs_dilation, numbers, precision), lhs
    )
    (lhs_grad,) = input_vjp(cotangent)
    kernel, cin, cout = rhs.shape[:-2], rhs.shape[-2], rhs.shape[-1]
    patches = lax.conv_general_dilated_patches(
        lhs,
        kernel,
        strides,
        padding,
        rhs_dilation=rhs_dilation,
        dimension_numbers=numbers,
        precision=lax.Precision.HIGHEST,
    )  # (..., cin * prod(kernel)), the input channel outermost
    flat = patches.reshape(-1, patches.shape[-1])
    grad = jnp.matmul(
        flat.T, cotangent.reshape(-1, cout).astype(flat.dtype), precision=precision
    )  # (cin * prod(kernel), cout)
    grad = grad.reshape(cin, *kernel, cout)
    rhs_grad = jnp.moveaxis(grad, 0, -2).astype(rhs.dtype)  # (*kernel, cin, cout)
    return lhs_grad, rhs_grad


_patch_grad_conv.defvjp(_forward, _backward)
