"""Gossip: the linear map ``X <- W_t X`` applied to every leaf along the worker axis."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from decjax import _axis
from decjax._validation import check_int
from decjax.topology._topology import Topology, realized_sparse, shift_form

BACKENDS = ("average", "shift", "sparse", "dense")


def resolve_backend(topology: Topology, backend: str | None) -> str:
    """The backend to use: the topology's own representation unless one is forced."""
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    if backend is None:
        return topology.representation
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    if backend not in topology.backends:
        raise ValueError(
            f"backend={backend!r} does not apply to {topology.name} (stored as "
            f"{topology.representation!r}); it can be mixed with {topology.backends}"
        )
    return backend


def mix(
    topology: Topology,
    tree: Any,
    step: Any = 0,
    *,
    rounds: int = 1,
    backend: str | None = None,
) -> Any:
    r"""Gossip every leaf of ``tree`` along axis 0: :math:`x_i \leftarrow \sum_j W_t[i, j] x_j`.

    With ``rounds = k`` the ``k`` consecutive matrices are applied,
    :math:`X \leftarrow W_{t+k-1} \cdots W_{t+1} W_t X` (for a static topology
    :math:`W^k`): ``step`` counts communication rounds.

    Backends (chosen from the topology's representation; one can be forced):

    * ``"average"`` – :math:`(1-a_t) X + a_t \bar X` (complete graph, solo,
      periodic averaging), :math:`O(nd)`;
    * ``"shift"`` – circulant graphs: :math:`\sum_k w_k \,\mathrm{roll}(X, -o_k)`,
      :math:`O(knd)`;
    * ``"sparse"`` – padded neighbour lists: a gather per slot, :math:`O(knd)`;
    * ``"dense"`` – one matmul at ``precision=HIGHEST`` (the default float32
      GPU matmul is TF32, whose ~1e-3 relative error ruins averaging),
      :math:`O(n^2 d)`, on the differences from worker 0's row.

    Every backend evaluates the same exact difference form
    :math:`x_i + \sum_{j \ne i} W_{ij} (x_j - x_i)`: the self weight is never
    read, so a float32 weight such as 1/3 whose row sums to ``1 +- 3e-8``
    cannot leak into the average, and exact methods stay exact on every
    backend (see ``mix_delta``).

    One code path serves one device, ``vmap`` and ``shard_map``: every
    reference to "the other workers" goes through :mod:`decjax._axis`. Outside
    any worker-axis context a leaf holds all ``n`` workers and those helpers
    are plain array operations (``jnp.roll``, indexing, ``sum``). Inside one —
    entered by ``simulate(..., mesh=...)`` around a ``jax.shard_map`` body, or
    by hand around ``jax.vmap(..., axis_name=...)`` — a leaf holds a block of
    ``n / size`` workers, and the same helpers become collectives: a shift is
    one or two ``ppermute``-s, a neighbour gather an ``all_gather``, the
    average a ``psum``. The backends below never branch on where they run.

    Time-varying topologies pick ``W_{t mod T}`` from a traced ``step`` inside
    ``jit`` (no recompile per step). Leaves in bfloat16/float16 are mixed in
    float32 and cast back.

    Args:
      topology: the :class:`~decjax.topology.Topology`.
      tree: a pytree of floating arrays, each with leading axis ``n``.
      step: the round index (Python int or int array; may be traced).
      rounds: number of consecutive gossip rounds, ``>= 1`` (static).
      backend: ``None`` (automatic) or one of the topology's ``backends``.

    Returns:
      A pytree like ``tree`` with every leaf mixed.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> x = jnp.arange(4.0)
      >>> decjax.mix(decjax.complete(4), x).tolist()
      [1.5, 1.5, 1.5, 1.5]
    """
    backend, rounds, step = _check_call(topology, tree, step, rounds, backend)
    leaves, treedef = jax.tree.flatten(tree)

    def one_round(r, xs):
        return [_mix_leaf(topology, x, step + r, backend) for x in xs]

    if rounds == 1:
        leaves = one_round(0, leaves)
    else:
        leaves = jax.lax.fori_loop(0, rounds, one_round, leaves)
    return jax.tree.unflatten(treedef, leaves)


def _check_call(topology, tree, step, rounds, backend):
    """Validate a gossip call; returns the backend, the rounds and the step as int32."""
    backend = resolve_backend(topology, backend)
    rounds = check_int("rounds", rounds, minimum=1)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        _check_leaf(topology.n, jax.tree_util.keystr(path), leaf)
    return backend, rounds, jnp.asarray(step, jnp.int32)


def _check_leaf(n: int, where: str, leaf) -> None:
    shape = jnp.shape(leaf)
    n = _axis.local_size(n)
    if len(shape) < 1 or shape[0] != n:
        raise ValueError(
            f"every leaf must have leading (worker) axis of size n={n}; leaf {where or '<root>'} "
            f"has shape {shape}"
        )
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
        raise TypeError(
            f"gossip mixes floating-point leaves only; leaf {where or '<root>'} has dtype "
            f"{jnp.result_type(leaf)}"
        )


def _delta_leaf(topology: Topology, x: jax.Array, step: jax.Array, backend: str) -> jax.Array:
    """``W_t x - x`` for one leaf already in its compute dtype.

    Row-stochastic backends evaluate it in difference ("Laplacian") form,
    ``sum_j W_ij (x_j - x_i)``: the self weight is implicitly ``1 - sum_j W_ij``,
    so a consensus vector is mixed to itself *exactly* even though weights such
    as 1/3 are inexact in float32, and near consensus the result carries the
    rounding of the (small) differences, not of ``x``. Methods that integrate
    their iterates (D², exact diffusion) rely on this to avoid drifting.
    """
    t = step % topology.period
    if backend == "average":
        a = topology.weights[t].astype(x.dtype)
        return a * (_axis.mean_workers(x)[None] - x)
    if backend == "shift":
        offsets, weights = shift_form(topology)
        weights = weights.astype(x.dtype)
        if all(offs == offsets[0] for offs in offsets):
            return _rolled_delta(x, offsets[0], weights[t])
        branches = [
            lambda x, offs=offs, w=w: _rolled_delta(x, offs, w)
            for offs, w in zip(offsets, weights, strict=True)
        ]
        return jax.lax.switch(t, branches, x)
    if backend == "sparse":
        nbr, w = realized_sparse(topology, step)
        nbr, w = _axis.local_rows(nbr), _axis.local_rows(w).astype(x.dtype)
        everyone = _axis.gather_rows(x)  # identity on one device; all_gather when sharded
        expand = (slice(None),) + (None,) * (x.ndim - 1)
        return sum(
            w[:, k][expand] * (jnp.take(everyone, nbr[:, k], axis=0) - x)
            for k in range(nbr.shape[1])
        )
    if not topology.row_stochastic:  # the stored self weight is part of the map
        return _dense_product(topology.matrix(step), x) - x
    return _dense_delta(topology.matrix(step), x)


def _dense_product(matrix: jax.Array, x: jax.Array) -> jax.Array:
    """``W x`` (local rows of it under a named worker axis), for matrices whose rows need not
    sum to one."""
    w = _axis.local_rows(matrix).astype(x.dtype)
    flat = _axis.gather_rows(x).reshape(matrix.shape[-1], -1)
    return jnp.matmul(w, flat, precision=jax.lax.Precision.HIGHEST).reshape(x.shape)


def _dense_delta(matrix: jax.Array, x: jax.Array) -> jax.Array:
    """``sum_j W_ij (x_j - x_i)`` for any ``(n, n)`` matrix, as one matmul.

    The diagonal is never read (the self weight is implicitly ``1 - sum_{j != i}
    W_ij``, as on the other backends), and the matmul acts on the differences
    ``d = x - x_0`` from worker 0's row: ``(W_off d)_i - r_i d_i`` with ``r``
    the off-diagonal row sums. A consensus vector therefore gives exactly zero,
    and rounding scales with the disagreement between workers, not with ``x``:
    a float32 row summing to ``1 +- 3e-8`` no longer leaks ``3e-8 x`` per step
    into methods that integrate their iterates (D², exact diffusion, gradient
    tracking). Under a named worker axis the rows are all-gathered first.
    """
    n = matrix.shape[-1]
    off = jnp.where(jnp.eye(n, dtype=bool), 0.0, matrix).astype(x.dtype)
    off = _axis.local_rows(off)
    everyone = _axis.gather_rows(x)
    reference = everyone[:1]
    diffs = (everyone - reference).reshape(n, -1)
    local = (x - reference).reshape(x.shape[0], -1)
    pulled = jnp.matmul(off, diffs, precision=jax.lax.Precision.HIGHEST)
    return (pulled - jnp.sum(off, axis=1, keepdims=True) * local).reshape(x.shape)


def _rolled_delta(x, offsets, w):
    """``sum_k w[k] * (x[(i + offsets[k]) mod n] - x)`` (offset 0 contributes nothing).

    Rolls along the worker axis become ``ppermute``-s under a named worker axis.
    """
    terms = [w[k] * (_axis.roll_rows(x, o) - x) for k, o in enumerate(offsets) if o]
    return sum(terms) if terms else jnp.zeros_like(x)


def _mix_leaf(topology: Topology, x: jax.Array, step: jax.Array, backend: str) -> jax.Array:
    dtype = x.dtype
    x = x.astype(jnp.promote_types(dtype, jnp.float32))
    if backend == "dense" and not topology.row_stochastic:
        return _dense_product(topology.matrix(step), x).astype(dtype)
    return (x + _delta_leaf(topology, x, step, backend)).astype(dtype)


def mix_delta(
    topology: Topology,
    tree: Any,
    step: Any = 0,
    *,
    rounds: int = 1,
    backend: str | None = None,
) -> Any:
    r"""The change gossip makes, :math:`W_{t+k-1}\cdots W_t X - X`, without cancellation.

    Equal to ``mix(...) - tree`` in exact arithmetic, but computed as a sum of
    neighbour differences :math:`\sum_j W_{ij}(x_j - x_i)` (on every backend),
    so its rounding error scales with the disagreement between
    workers rather than with the size of the parameters, and its worker
    average is zero up to that small rounding for a symmetric :math:`W`.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> decjax.gossip.mix_delta(decjax.complete(2), jnp.array([1.0, 3.0])).tolist()
      [1.0, -1.0]
    """
    backend, rounds, step = _check_call(topology, tree, step, rounds, backend)

    def leaf_delta(x):
        dtype = x.dtype
        x = x.astype(jnp.promote_types(dtype, jnp.float32))

        def body(r, carry):
            z, total = carry
            d = _delta_leaf(topology, z, step + r, backend)
            return z + d, total + d

        if rounds == 1:
            return _delta_leaf(topology, x, step, backend).astype(dtype)
        _, total = jax.lax.fori_loop(0, rounds, body, (x, jnp.zeros_like(x)))
        return total.astype(dtype)

    return jax.tree.map(leaf_delta, tree)
