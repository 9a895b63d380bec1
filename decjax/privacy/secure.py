r"""Secure aggregation among neighbours with pairwise additive masks (Bonawitz et al., CCS 2017,
on each neighbourhood).

Node :math:`v` learns only the sum of its neighbours' values: every pair :math:`\{a, b\}`
of :math:`v`'s neighbours shares a seed and draws a mask :math:`m` uniform on
:math:`\mathbb Z_{2^{32}}`; :math:`a` adds it to the message it sends :math:`v`, :math:`b`
subtracts it. Values are encoded in fixed point (``fraction_bits`` after the point, two's
complement in 32 bits), so the masks cancel exactly: the decoded masked sum equals the
plain sum of the encoded values bit for bit, while each message alone is uniform.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from decjax._random import numpy_rng
from decjax._validation import check_int
from decjax.topology import Topology

SEED_BYTES = 16  # a pairwise seed, agreed once per pair and neighbourhood (its key exchange)
WORD_BYTES = 4  # one 32-bit fixed-point coordinate


class SecureSums(NamedTuple):
    """What :func:`secure_neighbour_sums` returns."""

    sums: np.ndarray  # (n, d) float64: each node's decoded sum of its neighbours' values
    messages: np.ndarray  # (n, n, d) uint32: [w, v] the masked message w sent v (0: none)
    message_bytes: int  # bytes of the masked messages, one per directed link and round
    seed_bytes: int  # bytes of the seeds: each pair within each neighbourhood, both ways


def encode(values, fraction_bits: int = 16) -> np.ndarray:
    """Fixed point: ``round(x * 2**fraction_bits)`` as two's complement ``uint32`` (values
    outside the 32-bit range are refused)."""
    fraction_bits = check_int("fraction_bits", fraction_bits, minimum=0)
    scaled = np.rint(np.asarray(values, np.float64) * 2.0**fraction_bits)
    if np.any(np.abs(scaled) >= 2**31):
        raise ValueError(
            f"encode: values up to {np.max(np.abs(values)):.4g} overflow 32-bit fixed point "
            f"with {fraction_bits} fraction bits: lower fraction_bits"
        )
    return scaled.astype(np.int64).astype(np.uint32)


def decode(words: np.ndarray, fraction_bits: int = 16) -> np.ndarray:
    """The inverse of :func:`encode` (two's complement, then the scale)."""
    fraction_bits = check_int("fraction_bits", fraction_bits, minimum=0)
    words = np.asarray(words)
    if words.dtype != np.uint32:
        raise TypeError(f"words must be uint32 (what encode returns), got {words.dtype}")
    return words.view(np.int32).astype(np.float64) / 2.0**fraction_bits


def secure_neighbour_sums(
    values, topology: Topology, key, *, fraction_bits: int = 16
) -> SecureSums:
    """Every node's neighbour sum through masked messages (a node's own value is not in it).

    ``values``: ``(n, d)``; ``key`` seeds the masks (a JAX key or an int). The sum of the
    neighbours' values must fit 32-bit fixed point.
    """
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a decjax Topology, got {type(topology).__name__}")
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[0] != topology.n:
        raise ValueError(f"values must be (n, d) with n={topology.n}, got {values.shape}")
    words = encode(values, fraction_bits)
    w = topology.numpy_matrices()[0]
    links = (np.abs(w) + np.abs(w.T)) > 0
    np.fill_diagonal(links, False)
    rng = numpy_rng(key)
    n, d = words.shape
    messages = np.zeros((n, n, d), np.uint32)
    seeds = 0
    for v in range(n):
        group = np.flatnonzero(links[v])
        messages[group, v] = words[group]
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                mask = rng.integers(0, 2**32, size=d, dtype=np.uint64).astype(np.uint32)
                messages[a, v] += mask  # uint32 arithmetic wraps modulo 2^32
                messages[b, v] -= mask
                seeds += 2
    sums = decode(messages.sum(axis=0, dtype=np.uint32), fraction_bits)
    return SecureSums(sums, messages, int(links.sum()) * d * WORD_BYTES, seeds * SEED_BYTES)
