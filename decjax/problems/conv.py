"""A convolution whose weight gradient is a matmul of patches: fast on XLA:CPU.

Inside a loop over workers (``lax.map``, how decjax runs convnets on the CPU),
XLA:CPU computes a convolution's weight gradient slowly: for ResNet-20's
first-stage convolution (3x3, 16 channels, batch 32) 1,839 ms for 16 workers,
against 26 ms for the forward pass (``benchmarks/results/conv_lowering_cpu.md``).
:func:`conv_general_dilated` has ``lax.conv_general_dilated``'s signature and
its forward pass, and under the CPU lowering (:mod:`decjax._platform`:
``Execution(lowering=...)``, by default on the CPU backend) it differentiates
through a rule written in forward mode: the tangent is
``conv(dlhs, rhs) + patches(lhs) @ drhs``, the input's patches
(``lax.conv_general_dilated_patches``) times the kernel's tangent. Reverse
mode transposes it, so the weight gradient is ``patches(lhs)^T @ cotangent``,
one matmul (254 ms for the same layer), and ``jax.jvp``, ``jax.jacfwd`` and
higher orders work too. The patches are recomputed in the backward pass
(``jax.checkpoint``), so only the input is kept between the passes; they are
``prod(kernel)`` times the input's size while the backward pass runs. bfloat16
inputs stay bfloat16 (the patches are exact copies of the input's entries).
The zoo's models use it; pass it to your own layers as
``nnx.Conv(..., conv_general_dilated=decjax.problems.conv_general_dilated)``.
Elsewhere (the plain lowering, grouped or dilated-input convolutions, layouts
other than channels-last) it is ``lax.conv_general_dilated`` itself.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from decjax._platform import cpu_lowering


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
    """``lax.conv_general_dilated``, with a patch-matmul weight gradient under the CPU
    lowering (see the module docstring)."""
    spatial = len(lhs.shape) - 2
    for name, values in (("window_strides", window_strides), ("rhs_dilation", rhs_dilation)):
        if values is not None and (
            len(tuple(values)) != spatial or not all(isinstance(v, int) and v >= 1 for v in values)
        ):
            raise ValueError(f"{name} must be {spatial} ints >= 1, got {values!r}")
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    fast = (
        cpu_lowering()
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


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _patch_grad_conv(lhs, rhs, strides, padding, rhs_dilation, numbers, precision):
    return _conv(lhs, rhs, strides, padding, rhs_dilation, numbers, precision)


@_patch_grad_conv.defjvp
def _jvp(strides, padding, rhs_dilation, numbers, precision, primals, tangents):
    """``conv(dlhs, rhs) + patches(lhs) @ drhs``: linear in the tangents; its transpose
    (reverse mode) is lax's input gradient and the patch-matmul weight gradient."""
    lhs, rhs = primals
    dlhs, drhs = tangents
    out = _conv(lhs, rhs, strides, padding, rhs_dilation, numbers, precision)
    by_input = _conv(dlhs, rhs, strides, padding, rhs_dilation, numbers, precision)
    by_kernel = _patches_times(lhs, drhs, strides, padding, rhs_dilation, numbers, precision)
    return out, by_input + by_kernel.astype(by_input.dtype)


@partial(jax.checkpoint, static_argnums=(2, 3, 4, 5, 6))  # recompute the patches backward
def _patches_times(lhs, kernel, strides, padding, rhs_dilation, numbers, precision):
    """``conv(lhs, kernel)`` as one matmul: the input's patches times the kernel."""
    size, cin, cout = kernel.shape[:-2], kernel.shape[-2], kernel.shape[-1]
    patches = lax.conv_general_dilated_patches(
        lhs,
        size,
        strides,
        padding,
        rhs_dilation=rhs_dilation,
        dimension_numbers=numbers,
        precision=lax.Precision.HIGHEST,
    )  # (..., cin * prod(size)), the input channel outermost: copies of lhs's entries
    flat = jnp.moveaxis(kernel, -2, 0).reshape(cin * math.prod(size), cout)
    return jnp.matmul(patches, flat.astype(patches.dtype), precision=precision)
