"""Workers on a device mesh: ``shard_map`` execution with ``ppermute`` gossip, one or many hosts.

The worker axis of every per-worker array is placed on a mesh axis (default
``"workers"``); each device holds a contiguous block of ``n / devices`` workers.
Inside :func:`sharded` the same algorithm code runs under ``jax.shard_map``:
gossip on shift topologies becomes ``jax.lax.ppermute`` between devices (plus
local slicing within a device), sparse and dense topologies gather the models
they need (``all_gather``), and reductions over workers (averages, metrics)
become ``psum``. ``decjax.simulate(..., mesh=mesh)`` uses this.

Several hosts use JAX's own runtime: call :func:`initialize` (a thin wrapper
of ``jax.distributed.initialize``) in every process before anything else;
:func:`worker_mesh` then spans all processes' devices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from decjax import _axis
from decjax._validation import check_callable, check_int, is_prng_key
from decjax.data import WorkerData

AXIS = "workers"


def initialize(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    local_device_ids: Sequence[int] | None = None,
    coordinator_bind_address: str | None = None,
) -> None:
    """Join a multi-process run (JAX's ``jax.distributed.initialize``; nothing home-made).

    On CPU this also selects the gloo collectives so processes can talk.
    Call it at the start of every process, before any other JAX call.
    Process 0 runs the coordinator service; by default it listens on every
    interface at the port of ``coordinator_address`` (what a cluster needs).
    Pass ``coordinator_bind_address="127.0.0.1:PORT"`` when every process runs
    on this machine, so nothing outside it can connect.

    Example (two processes on one machine)::

        decjax.distributed.initialize("localhost:12345", num_processes=2, process_id=rank)
        mesh = decjax.distributed.worker_mesh()      # all devices of all processes
    """
    num_processes = check_int("num_processes", num_processes, minimum=1)
    process_id = check_int("process_id", process_id, minimum=0)
    if process_id >= num_processes:
        raise ValueError(f"process_id must be < num_processes={num_processes}, got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        coordinator_bind_address=coordinator_bind_address,
    )


def worker_mesh(devices: Sequence[jax.Device] | None = None, *, axis_name: str = AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process) named ``axis_name``.

    The axis is ``Auto`` (not ``jax.make_mesh``'s default ``Explicit``), so
    ``shard_map`` accepts arrays placed by :func:`shard_workers`.

    Examples:
      >>> import decjax
      >>> decjax.distributed.worker_mesh().axis_names
      ('workers',)
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must not be empty")
    return Mesh(np.array(devices), (axis_name,), axis_types=(jax.sharding.AxisType.Auto,))


def _axis_name(mesh: Mesh) -> str:
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
        raise TypeError(
            "mesh must be a 1-D jax.sharding.Mesh, e.g. decjax.distributed.worker_mesh()"
        )
    return mesh.axis_names[0]


def mesh_size(mesh: Mesh) -> int:
    """The number of devices of a 1-D mesh (``TypeError`` for anything else)."""
    _axis_name(mesh)
    return mesh.devices.size


def check_workers(n: int, mesh: Mesh) -> int:
    """The number of devices; ``n`` must be a multiple of it."""
    size = mesh_size(mesh)
    if n % size:
        raise ValueError(
            f"the number of workers n={n} must be a multiple of the number of devices ({size}) "
            "on the mesh"
        )
    return size


def worker_specs(tree: Any, n: int, mesh: Mesh) -> Any:
    """Partition specs that split *every* leaf of ``tree`` along its leading (worker) axis.

    The tree is declared per-worker by the caller (params, data shards): each
    leaf must have leading axis ``n``. Replicated inputs (evaluation data,
    hyperparameters) get :func:`replicated_specs` instead; decjax never
    guesses a role from a shape, so an evaluation set with ``n`` rows stays
    whole.
    """
    name = _axis_name(mesh)

    def spec(path, x):
        shape = np.shape(x)
        if len(shape) < 1 or shape[0] != n:
            raise ValueError(
                f"per-worker leaf {jax.tree_util.keystr(path) or '<root>'} must have leading "
                f"axis n={n} to be split over the mesh, got shape {shape}"
            )
        return PartitionSpec(name)

    return jax.tree_util.tree_map_with_path(spec, tree)


def replicated_specs(tree: Any) -> Any:
    """Partition specs that keep every leaf whole on every device, whatever its shape."""
    return jax.tree.map(lambda _: PartitionSpec(), tree)


def state_specs(state: Any, n: int, mesh: Mesh) -> Any:
    """Specs of a run state (:class:`decjax.simulate.RunState`) by role.

    ``params`` are per-worker; the algorithm's state keeps the worker axis
    first in its per-worker leaves (decjax's convention for optimizer and
    algorithm state: a leaf with leading axis ``n`` is per-worker, scalars
    such as counters and keys are shared); the run's key, step and running totals
    of the steps' records are shared.
    """
    name = _axis_name(mesh)
    if not all(hasattr(state, f) for f in ("params", "opt_state", "key", "step", "totals")):
        raise TypeError(
            f"state must be a decjax run state (RunState: params, opt_state, key, step, "
            f"totals...), got {type(state).__name__}"
        )

    def algorithm_leaf(x):
        shape = np.shape(x)
        return PartitionSpec(name) if len(shape) >= 1 and shape[0] == n else PartitionSpec()

    return type(state)(
        params=worker_specs(state.params, n, mesh),
        opt_state=jax.tree.map(algorithm_leaf, state.opt_state),
        key=PartitionSpec(),
        step=PartitionSpec(),
        totals=replicated_specs(state.totals),
        model_state=None if state.model_state is None else worker_specs(state.model_state, n, mesh),
        run_key=PartitionSpec(),
    )


def data_specs(data: Any, n: int, mesh: Mesh) -> Any:
    """Specs of training data by role: a ``WorkerData``'s arrays are shared and its shards
    (``indices``, ``counts``) split; any other data is a full batch stacked over workers."""
    if isinstance(data, WorkerData):
        name = _axis_name(mesh)
        whole, split = PartitionSpec(), PartitionSpec(name)
        keys = None if data.epoch_keys is None else split
        # WorkerData's own structure, holding a partition spec per field
        return WorkerData(x=whole, y=whole, indices=split, counts=split, epoch_keys=keys)  # type: ignore[arg-type]
    return worker_specs(data, n, mesh)


def shard_workers(tree: Any, mesh: Mesh, n: int | None = None) -> Any:
    """Place a per-worker tree on ``mesh``: every leaf split along its leading axis.

    Works across processes: every process passes the same full values and keeps
    the blocks of its own devices. Use :func:`place` with :func:`state_specs`,
    :func:`data_specs` or :func:`replicated_specs` for trees whose leaves have
    other roles.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> mesh = decjax.distributed.worker_mesh()
      >>> x = decjax.distributed.shard_workers(jnp.zeros((16, 3)), mesh)
      >>> len(x.addressable_shards) == len(mesh.devices.ravel())
      True
    """
    leaves = jax.tree.leaves(tree)
    if n is None:
        n = np.shape(leaves[0])[0]
    check_workers(n, mesh)
    return place(tree, mesh, worker_specs(tree, n, mesh))


def place_replicated(tree: Any, mesh: Mesh) -> Any:
    """Place a copy of every leaf of ``tree`` on every device of ``mesh`` (also across processes).

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> mesh = decjax.distributed.worker_mesh()
      >>> x = decjax.distributed.place_replicated(jnp.arange(3.0), mesh)
      >>> x.sharding.is_fully_replicated
      True
    """
    _axis_name(mesh)
    return place(tree, mesh, replicated_specs(tree))


def place(tree: Any, mesh: Mesh, specs: Any) -> Any:
    """Put every leaf of ``tree`` on ``mesh`` with the matching ``PartitionSpec`` of ``specs``."""
    _axis_name(mesh)  # a 1-D Mesh, or a TypeError naming the fix

    def put(x, spec):
        sharding = NamedSharding(mesh, spec)
        if is_prng_key(x):
            data = put(jax.random.key_data(x), spec)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        if isinstance(x, jax.Array) and x.is_fully_addressable is False:
            return jax.device_put(x, sharding)
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree, specs)


def sharded(
    fn: Callable,
    mesh: Mesh,
    n: int,
    in_specs: Sequence[Any],
    out_tree_specs: Any,
) -> Callable:
    """``jax.shard_map(fn)`` with decjax's worker axis active while ``fn`` is traced.

    ``in_specs`` declares each argument's placement (one spec tree per
    argument: :func:`worker_specs`, :func:`state_specs`, :func:`data_specs`,
    :func:`replicated_specs`); ``out_tree_specs`` gives the output specs.
    Inside ``fn`` every decjax gossip, metric and algorithm sees its device's
    block of workers and communicates with collectives.
    """
    check_callable("fn", fn)
    size = check_workers(n, mesh)
    name = _axis_name(mesh)
    in_specs = tuple(in_specs)

    def body(*args):
        with _axis.worker_axis(name, size, n):
            return fn(*args)

    return jax.shard_map(
        body, mesh=mesh, in_specs=in_specs, out_specs=out_tree_specs, check_vma=False
    )


def to_host(tree: Any) -> Any:
    """Numpy copies of whole arrays on this host, also in a multi-process run.

    Replicated arrays are read from a local device; arrays split across
    processes (workers, or a sweep's configurations) are all-gathered.
    """
    from jax.experimental import multihost_utils

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(get, tree)
