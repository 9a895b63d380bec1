"""A convolution whose gradients are matmuls of patches: fast on XLA:CPU.

Inside a loop over workers (``lax.map``, how decjax runs convnets on the CPU),
XLA:CPU computes a convolution's gradients slowly: for ResNet-20's
first-stage convolution (3x3, 16 channels, batch 32, 16 workers) the weight
gradient took 2,282 ms and the input gradient 462 ms, against 34 ms for the
forward pass (``benchmarks/results/conv_lowering_cpu.md``).
:func:`conv_general_dilated` has ``lax.conv_general_dilated``'s signature and
its forward pass, and under the CPU lowering (:mod:`decjax._platform`:
``Execution(lowering=...)``, by default on the CPU backend) it differentiates
through a rule written in forward mode: the tangent is
``patches(dlhs) @ rhs + patches(lhs) @ drhs``, where ``patches`` takes one
strided slice of the padded input per kernel offset. Reverse mode transposes
it: the weight gradient is ``patches(lhs)^T @ cotangent``, one matmul, and
the input gradient ``cotangent @ rhs^T`` folded back by the slices'
transposes (pads): 102 and 75 ms for the same layer, counting the forward
pass each computes too. ``jax.jvp``, ``jax.jacfwd`` and higher orders work.
The patches are recomputed in the backward pass (``jax.checkpoint``), so
only the input is kept between the passes; they are ``prod(kernel)`` times
the input's size while the backward pass runs. bfloat16 inputs stay bfloat16
(the patches are exact copies of the input's entries). lax's own patch
operator (``lax.conv_general_dilated_patches``) is a convolution whose
transpose is slow again (4,512 ms vmapped for that layer's input gradient).
The zoo's models use it; pass it to your own layers as
``nnx.Conv(..., conv_general_dilated=decjax.problems.conv_general_dilated)``.
Elsewhere (the plain lowering, grouped or dilated-input convolutions, layouts
other than channels-last, an empty output) it is ``lax.conv_general_dilated``
itself.
"""

from __future__ import annotations

import itertools
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
    """``lax.conv_general_dilated``, with patch-matmul gradients under the CPU lowering
    (see the module docstring)."""
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
    if fast:
        rhs_dilation = tuple(rhs_dilation or (1,) * (lhs.ndim - 2))
        padding = _explicit(padding, lhs.shape, rhs.shape, window_strides, rhs_dilation)
        out = _output_shape(lhs.shape[1:-1], rhs.shape[:-2], window_strides, padding, rhs_dilation)
        fast = min(out) >= 1  # an empty output is lax's
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
    return _patch_grad_conv(
        lhs,
        rhs,
        tuple(window_strides),
        padding,
        rhs_dilation,
        numbers,
        precision,
    )


def _explicit(padding, lhs_shape, rhs_shape, strides, rhs_dilation) -> tuple:
    """``padding`` as ``(low, high)`` pairs ("SAME", "VALID"... resolved as lax does)."""
    if isinstance(padding, str):
        window = [(k - 1) * d + 1 for k, d in zip(rhs_shape[:-2], rhs_dilation, strict=True)]
        padding = lax.padtype_to_pads(lhs_shape[1:-1], window, strides, padding)
    return tuple(tuple(p) for p in padding)


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
    """``patches(dlhs) @ rhs + patches(lhs) @ drhs``: linear in the tangents; its transpose
    (reverse mode) is the patch-matmul input gradient (a matmul, then the slices'
    transposes: pads) and the patch-matmul weight gradient."""
    lhs, rhs = primals
    dlhs, drhs = tangents
    out = _conv(lhs, rhs, strides, padding, rhs_dilation, numbers, precision)
    by_input = _patches_times(dlhs, rhs, strides, padding, rhs_dilation, precision)
    by_kernel = _patches_times(lhs, drhs, strides, padding, rhs_dilation, precision)
    return out, by_input.astype(out.dtype) + by_kernel.astype(out.dtype)


def _output_shape(spatial, size, strides, padding, rhs_dilation) -> tuple[int, ...]:
    """The convolution's output size along each spatial axis (explicit padding)."""
    return tuple(
        (s + lo + hi - (k - 1) * d - 1) // st + 1
        for s, k, st, (lo, hi), d in zip(spatial, size, strides, padding, rhs_dilation, strict=True)
    )


def _patches(lhs, size, strides, padding, rhs_dilation):
    """The input's patches, ``(batch, *out, prod(size) * cin)``: one strided slice of the
    padded input per kernel offset, the offset outermost and the input channel innermost
    (the row order of a ``(*size, cin, cout)`` kernel). Copies of lhs's entries; their
    transposes are pads, where lax's patch operator is a convolution whose transpose
    XLA:CPU computes slowly."""
    zero = jnp.zeros((), lhs.dtype)
    padded = lax.pad(lhs, zero, [(0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0)])
    flat = [(0, 0)] * len(size)
    out = _output_shape(padded.shape[1:-1], size, strides, flat, rhs_dilation)
    columns = []
    for offset in itertools.product(*(range(k) for k in size)):
        start = [i * d for i, d in zip(offset, rhs_dilation, strict=True)]
        limit = [b + st * (o - 1) + 1 for b, st, o in zip(start, strides, out, strict=True)]
        columns.append(
            lax.slice(
                padded,
                (0, *start, 0),
                (padded.shape[0], *limit, padded.shape[-1]),
                (1, *strides, 1),
            )
        )
    return jnp.concatenate(columns, axis=-1)


@partial(jax.checkpoint, static_argnums=(2, 3, 4, 5))  # recompute the patches backward
def _patches_times(lhs, kernel, strides, padding, rhs_dilation, precision):
    """``conv(lhs, kernel)`` as one matmul: the input's patches times the kernel."""
    size, cin, cout = kernel.shape[:-2], kernel.shape[-2], kernel.shape[-1]
    patches = _patches(lhs, size, strides, padding, rhs_dilation)
    flat = kernel.reshape(math.prod(size) * cin, cout)
    return jnp.matmul(patches, flat.astype(patches.dtype), precision=precision)
