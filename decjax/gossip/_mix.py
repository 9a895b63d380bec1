"""Gossip: the linear map ``X <- W_t X`` applied to every leaf along the worker axis."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._validation import check_int
from decjax.topology import Topology, representations


def resolve_backend(topology: Topology, backend: str | None) -> str:
    """The backend to use: the topology's own kind unless one is forced."""
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    if backend is None:
        return topology.representation
    if backend not in representations():  # the kinds registered now
        raise ValueError(f"backend must be one of {representations()} or None, got {backend!r}")
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

    Backends: each is a topology kind (:mod:`decjax.topology.kinds`) that
    evaluates its own ``delta``; the topology's own kind is used unless one
    is forced, in which case the topology is converted with ``topology.to``:

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
    average a ``psum``. The kinds never branch on where they run.

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
    kind, rounds, step = _check_call(topology, tree, step, rounds, backend)
    leaves, treedef = jax.tree.flatten(tree)

    def one_round(r, xs):
        return [_mix_leaf(kind, x, step + r) for x in xs]

    if rounds == 1:
        leaves = one_round(0, leaves)
    else:
        leaves = jax.lax.fori_loop(0, rounds, one_round, leaves)
    return jax.tree.unflatten(treedef, leaves)


def _check_call(topology, tree, step, rounds, backend):
    """Validate a gossip call; returns the topology as the backend's kind, the rounds and
    the step as int32."""
    backend = resolve_backend(topology, backend)
    rounds = check_int("rounds", rounds, minimum=1)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        _check_leaf(topology.n, jax.tree_util.keystr(path), leaf)
    return topology.to(backend), rounds, _check_step(step)


def _check_step(step) -> jax.Array:
    """The round index as int32: an integer (a Python or numpy int ``>= 0``, or an integer
    JAX array, possibly traced); a float, a string or a negative Python int is refused."""
    if isinstance(step, jax.Array | np.ndarray):
        if not jnp.issubdtype(step.dtype, jnp.integer) or step.ndim:
            raise TypeError(f"step must be an integer scalar, got {step.dtype}{list(step.shape)}")
        return jnp.asarray(step, jnp.int32)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(
            f"step must be an int (the gossip round), got {type(step).__name__} {step!r}"
        )
    if not 0 <= int(step) < 2**31:
        raise ValueError(f"step must be in [0, 2**31), got {step}")
    return jnp.int32(step)


def _mix_leaf(kind: Topology, x: jax.Array, step: jax.Array) -> jax.Array:
    """One gossip round of one leaf, in float32 at least and cast back."""
    dtype = x.dtype
    return kind.mix_leaf(x.astype(jnp.promote_types(dtype, jnp.float32)), step).astype(dtype)


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
    kind, rounds, step = _check_call(topology, tree, step, rounds, backend)

    def leaf_delta(x):
        dtype = x.dtype
        x = x.astype(jnp.promote_types(dtype, jnp.float32))

        def body(r, carry):
            z, total = carry
            d = kind.delta(z, step + r)
            return z + d, total + d

        if rounds == 1:
            return kind.delta(x, step).astype(dtype)
        _, total = jax.lax.fori_loop(0, rounds, body, (x, jnp.zeros_like(x)))
        return total.astype(dtype)

    return jax.tree.map(leaf_delta, tree)
