"""Sharded execution on 8 emulated devices: agreement with one device, collectives, multi-host."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import bfloat16_digits, dense_reference, on_graph
from jax.sharding import PartitionSpec as P

import decjax
from decjax import _axis
from decjax.algorithms import ALGORITHMS, NAMES
from decjax.distributed import shard_workers, sharded, worker_mesh


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8
    return worker_mesh()


# n = 8: one worker per device; 16: two; 32: four (symmetric graphs, so D² applies).
GRAPHS = {
    8: lambda: decjax.ring(8),
    16: lambda: decjax.hypercube(16),
    32: lambda: decjax.torus(4, 8),
}


# n = 8 is the inner loop; 16 and 32 (several workers per device) are in the slow tier
SIZES = [8, pytest.param(16, marks=pytest.mark.slow), pytest.param(32, marks=pytest.mark.slow)]
# and six algorithms (different state, gossip and collectives) at n = 8; all in the slow tier
# (consensus control's sharded gossip estimator has its own inner-loop test below)
FAST = ("dpsgd", "gradient_tracking", "d2", "choco_sign", "dasgd")


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
)
def test_every_algorithm_sharded_agrees_with_one_device(name, n, mesh):
    """... and so does the simulated clock (ports, random compute draws)."""
    q = decjax.problems.quadratics(n, 3, key=jax.random.key(n))
    network = decjax.timing.Network(1e-3, 1e4, port_bandwidth=2e4)
    compute = decjax.timing.Compute(0.01, law="exponential", key=jax.random.key(2))
    kwargs = {
        "steps": 20,
        "eval_every": 10,
        "key": jax.random.key(1),
        "eval_fn": q.eval_fn,
        "progress": False,
        "timing": decjax.timing.TimeModel(network, compute=compute),
    }
    single = decjax.simulate(
        q.loss,
        q.init_params(),
        ALGORITHMS[name](0.05, on_graph(name, GRAPHS[n]())),
        q.data,
        **kwargs,
    )
    multi = decjax.simulate(
        q.loss,
        q.init_params(),
        ALGORITHMS[name](0.05, on_graph(name, GRAPHS[n]())),
        q.data,
        mesh=mesh,
        **kwargs,
    )
    assert multi.params.sharding.spec == jax.sharding.PartitionSpec("workers")
    np.testing.assert_allclose(multi.params, single.params, rtol=1e-5, atol=1e-6)
    for metric, values in single.metrics.items():
        np.testing.assert_allclose(
            multi.metrics[metric], values, rtol=1e-4, atol=1e-6, err_msg=metric
        )
    assert multi.traces == 1


@pytest.mark.slow
def test_minibatches_faults_stragglers_and_churn_sharded(mesh):
    ds = decjax.data.load_digits()
    n = 16
    data = decjax.data.distribute(ds, n, "dirichlet", key=0, alpha=0.5)
    model = decjax.problems.mlp([64, 16, 10])
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    flaky = decjax.topology.with_faults(
        decjax.ring(n), key=jax.random.key(2), link_failure=0.3, node_failure=0.1, down_steps=5
    )

    def tx():
        inner = decjax.algorithms.node_churn(decjax.dpsgd(0.2, flaky, momentum=0.5), flaky)
        return decjax.algorithms.stragglers(inner, [1.0, 0.5] * 8, key=jax.random.key(3))

    kwargs = {
        "steps": 30,
        "batch_size": 8,
        "eval_every": 10,
        "key": jax.random.key(4),
        "eval_fn": model.eval_fn,
        "eval_data": (ds.x_test, ds.y_test),
        "progress": False,
    }
    single = decjax.simulate(model.loss, params, tx(), data, **kwargs)
    multi = decjax.simulate(model.loss, params, tx(), data, mesh=mesh, **kwargs)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(multi.params), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(multi.metrics["test_accuracy"], single.metrics["test_accuracy"])


@pytest.mark.slow
@pytest.mark.parametrize("mixed", [False, True], ids=["local-state", "mixed-state"])
def test_a_batchnorm_dropout_model_sharded_agrees_with_one_device(mixed, mesh):
    """Model state keeps the worker axis first: split by worker like the params, and the
    per-worker dropout keys are the same whether or not the workers are sharded."""
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(64, 16, rngs=rngs)
            self.norm = nnx.BatchNorm(16, rngs=rngs)
            self.drop = nnx.Dropout(0.2, rngs=rngs)
            self.out = nnx.Linear(16, 10, rngs=rngs)

        def __call__(self, x):
            return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))

    ds = decjax.data.load_digits()
    n = 16
    model = decjax.problems.from_nnx(Net)
    params, state = model.init(jax.random.key(0))
    kwargs = {
        "steps": 20,
        "batch_size": 8,
        "eval_every": 10,
        "key": jax.random.key(4),
        "eval_fn": model.eval_fn,
        "eval_data": (ds.x_test, ds.y_test),
        "model_state": decjax.replicate(state, n),
        "mix_model_state": decjax.ring(n) if mixed else None,
        "progress": False,
    }
    args = (
        model.loss,
        decjax.replicate(params, n),
        decjax.dpsgd(0.1, decjax.ring(n)),
        decjax.data.distribute(ds, n, "iid", key=0),
    )
    single = decjax.simulate(*args, **kwargs)
    multi = decjax.simulate(*args, mesh=mesh, **kwargs)
    for a, b in zip(jax.tree.leaves(single.state), jax.tree.leaves(multi.state), strict=True):
        if jnp.issubdtype(a.dtype, jnp.inexact):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(multi.metrics["train_accuracy"], single.metrics["train_accuracy"])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "name", ["ring", "exponential", "one_peer_exponential", "torus", "complete", "erdos_renyi"]
)
def test_gossip_backends_under_shard_map_match_the_reference(name, n, mesh):
    topo = decjax.topology.by_name(name, n)
    x = jax.random.normal(jax.random.key(0), (n, 5))
    for backend in topo.backends:
        for step in range(topo.period + 1):
            run = sharded(
                lambda x, t=topo, s=step, b=backend: decjax.mix(t, x, s, backend=b),
                mesh,
                n,
                (jax.sharding.PartitionSpec("workers"),),
                jax.sharding.PartitionSpec("workers"),
            )
            got = jax.jit(run)(shard_workers(x, mesh))
            np.testing.assert_allclose(
                got,
                dense_reference(topo, x, step),
                atol=2e-6,
                err_msg=f"{name} {backend} step {step}",
            )


def test_shift_gossip_is_ppermute_and_sparse_gossip_is_all_gather(mesh):
    x = shard_workers(jnp.zeros((16, 4)), mesh)

    def hlo(topology):
        run = sharded(lambda x: decjax.mix(topology, x), mesh, 16, (P("workers"),), P("workers"))
        return jax.jit(run).lower(x).compile().as_text()

    ring = hlo(decjax.ring(16))
    assert "collective-permute" in ring and "all-gather" not in ring
    assert "all-gather" in hlo(decjax.torus(4, 4))
    assert "all-reduce" in hlo(decjax.complete(16))


def test_the_same_gossip_code_runs_under_vmap_with_a_named_axis():
    """``ppermute`` inside ``jax.vmap(axis_name=...)``: one worker per vmapped member."""
    for topo in [decjax.exponential(8), decjax.one_peer_exponential(8), decjax.star(8)]:
        x = jax.random.normal(jax.random.key(1), (8, 3))

        def one(row, t=topo):
            with _axis.worker_axis("w", 8, 8):
                return decjax.mix(t, row[None], 1)[0]

        got = jax.vmap(one, axis_name="w")(x)
        np.testing.assert_allclose(got, dense_reference(topo, x, 1), atol=2e-6)


@pytest.mark.parametrize(
    ("topology", "peers"),
    [
        (decjax.ring(16), 2),
        (decjax.torus(4, 4), 4),
        (decjax.hypercube(16), 4),
        (decjax.exponential(16), 4),
        (decjax.one_peer_exponential(16), 1),
        (decjax.solo(16), 0),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_bytes_per_worker_per_step_is_k_times_d_times_itemsize(topology, peers):
    params = {"w": jnp.zeros((16, 100)), "b": jnp.zeros((16, 10), jnp.bfloat16)}
    d_bytes = 100 * 4 + 10 * 2
    assert float(decjax.gossip.bytes_per_round(topology, params)) == peers * d_bytes
    tx = decjax.dpsgd(0.1, topology)
    _, _, info = tx.step(optax_zeros(params), tx.init(params), params)
    assert float(info["bytes_sent"]) == peers * d_bytes


def optax_zeros(tree):
    return jax.tree.map(jnp.zeros_like, tree)


@pytest.mark.parametrize(  # split by worker / by configuration
    "kind", ["simulate", pytest.param("sweep", marks=pytest.mark.slow)]
)
def test_checkpoint_resume_sharded(kind, mesh, tmp_path):
    q = decjax.problems.quadratics(16, 3, key=jax.random.key(0))
    kwargs = {"steps": 40, "eval_every": 10, "chunks": 4, "key": jax.random.key(0)}

    def run(callback=None, checkpoint_dir=tmp_path):
        kw = {**kwargs, "mesh": mesh, "checkpoint_dir": checkpoint_dir, "callback": callback}
        if kind == "simulate":
            tx = decjax.gradient_tracking(0.1, decjax.ring(16))
            return decjax.simulate(q.loss, q.init_params(), tx, q.data, progress=False, **kw)
        grid = {"learning_rate": [0.05, 0.1, 0.2]}  # 3 runs, padded to 8 devices

        def make_tx(learning_rate):
            return decjax.gradient_tracking(learning_rate, decjax.ring(16))

        return decjax.sweep(q.loss, q.init_params(), make_tx, q.data, grid, progress=False, **kw)

    def stop(step, metrics):
        if step >= 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(stop)
    seen = []
    resumed, full = run(lambda step, _: seen.append(step)), run(checkpoint_dir=None)
    assert seen == [30, 40]  # it went on from the checkpoint written after step 20
    np.testing.assert_array_equal(resumed.params, full.params)
    np.testing.assert_array_equal(resumed.metrics["train_loss"], full.metrics["train_loss"])


def test_bad_meshes_are_rejected(mesh):
    q = decjax.problems.quadratics(12, 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        decjax.simulate(
            q.loss,
            q.init_params(),
            decjax.dpsgd(0.1, decjax.ring(12)),
            q.data,
            steps=10,
            key=jax.random.key(0),
            mesh=mesh,
            progress=False,
        )
    with pytest.raises(TypeError, match=r"1-D jax\.sharding\.Mesh"):
        decjax.distributed.worker_specs(jnp.zeros((8, 2)), 8, "workers")
    with pytest.raises(ValueError, match="process_id must be < num_processes"):
        decjax.distributed.initialize("localhost:1", num_processes=2, process_id=2)


@pytest.mark.slow  # two launches of two processes, and a third single-process run
def test_two_processes_train_together_like_one(tmp_path):
    """JAX's own distributed runtime: 2 processes x 4 CPU devices == 1 process x 8 devices.

    The two processes stop after step 10 and a second launch resumes from their
    checkpoint; then a sweep split by configuration runs across both.
    """
    base = [sys.executable, "-m", "decjax.multihost", "--steps", "30"]
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    two = [*base, "--launch", "2", "--devices-per-process", "4", "--out", str(tmp_path / "two")]
    two += ["--checkpoint-dir", str(tmp_path / "checkpoint")]
    for extra in (["--stop-at", "10"], []):
        launched = subprocess.run([*two, *extra], capture_output=True, text=True, timeout=600)
        assert launched.returncode == 0, launched.stderr[-2000:]
        if extra:
            stopped = json.loads((tmp_path / "two" / "result.json").read_text())
            assert stopped == {"processes": 2, "interrupted_at": 10}
    one = subprocess.run(
        [*base, "--devices-per-process", "8", "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
    )
    assert one.returncode == 0, one.stderr[-2000:]
    a = json.loads((tmp_path / "two" / "result.json").read_text())
    b = json.loads((tmp_path / "one" / "result.json").read_text())
    assert a["processes"] == 2 and b["processes"] == 1 and a["devices"] == b["devices"] == 8
    assert (a["first_step_run"], b["first_step_run"]) == (20, 10)  # the second launch resumed
    for metric in b["metrics"]:
        np.testing.assert_allclose(
            a["metrics"][metric], b["metrics"][metric], rtol=1e-5, atol=1e-6, err_msg=metric
        )
    for x, y in zip(a["params"], b["params"], strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    for metric, values in b["sweep_metrics"].items():  # a sweep split over both processes
        assert np.shape(values) == (6, 3)
        np.testing.assert_allclose(
            a["sweep_metrics"][metric], values, rtol=1e-5, atol=1e-6, err_msg=metric
        )


def test_consensus_control_gossip_estimator_is_global_when_sharded(mesh):
    """The round count depends on a sum over *all* workers, so every device loops alike."""
    q = decjax.problems.quadratics(16, 3, key=jax.random.key(0))
    kwargs = {"steps": 20, "eval_every": 10, "key": jax.random.key(1), "progress": False}

    def tx():
        return decjax.consensus_control(optax.sgd(0.1), decjax.ring(16), target=1e-3)

    single = decjax.simulate(q.loss, q.init_params(), tx(), q.data, **kwargs)
    multi = decjax.simulate(q.loss, q.init_params(), tx(), q.data, mesh=mesh, **kwargs)
    np.testing.assert_array_equal(multi.metrics["gossip_rounds"], single.metrics["gossip_rounds"])
    np.testing.assert_allclose(multi.params, single.params, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seeds", [[0], [0, 1, 2, 3]]
)  # 6 runs padded to 8 devices; 24 split 3/device
def test_sweep_splits_configurations_over_the_mesh(seeds, mesh):
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, 8, "sorted", key=0)
    model = decjax.problems.logistic_regression(64, 10)
    params = decjax.replicate(model.init(jax.random.key(0)), 8)
    grid = {
        "learning_rate": [0.05, 0.1, 0.2],
        "topology": [decjax.ring(8), decjax.complete(8)],
        "seed": seeds,
    }
    kwargs = {
        "steps": 20,
        "eval_every": 10,
        "batch_size": 8,
        "key": jax.random.key(1),
        "eval_fn": model.eval_fn,
        "eval_data": (ds.x_test, ds.y_test),
        "progress": False,
    }

    def run(**extra):
        return decjax.sweep(model.loss, params, decjax.dpsgd, data, grid, **kwargs, **extra)

    single, split = run(), run(mesh=mesh)
    runs = 6 * len(seeds)
    assert split.traces == 1 and len(split.configs) == runs
    for name, values in single.metrics.items():
        assert split.metrics[name].shape == (runs, 2)
        np.testing.assert_allclose(split.metrics[name], values, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(split.params), strict=True):
        assert b.shape == a.shape == (runs, 8, *a.shape[2:])
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    if runs % 8 == 0:  # no padding: the final state stays split over the devices
        assert len(jax.tree.leaves(split.params)[0].sharding.device_set) == 8
    with pytest.raises(TypeError, match=r"1-D jax\.sharding\.Mesh"):
        run(mesh="workers")


@pytest.mark.parametrize("kind", ["simulate", pytest.param("sweep", marks=pytest.mark.slow)])
def test_evaluation_data_with_n_rows_stays_whole_on_every_device(kind, mesh):
    """Placement is by role: 8 evaluation rows on 8 devices are not split as if per-worker
    (they were: the sharded test metric read [0.24, 0.31] where one device gave [-14.3, -18.8])."""
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, 8, "iid", key=0)
    model = decjax.problems.logistic_regression(64, 10)
    params = decjax.replicate(model.init(jax.random.key(0)), 8)
    eval_data = (ds.x_test[:8], ds.y_test[:8])
    kwargs = {
        "steps": 20,
        "batch_size": 4,
        "eval_every": 10,
        "key": jax.random.key(1),
        "eval_fn": model.eval_fn,
        "eval_data": eval_data,
        "progress": False,
    }

    def run(**extra):
        if kind == "simulate":
            tx = decjax.dpsgd(0.1, decjax.ring(8))
            return decjax.simulate(model.loss, params, tx, data, **kwargs, **extra)
        grid = {"learning_rate": [0.05, 0.1]}
        make_tx = lambda learning_rate: decjax.dpsgd(learning_rate, decjax.ring(8))  # noqa: E731
        return decjax.sweep(model.loss, params, make_tx, data, grid, **kwargs, **extra)

    single, multi = run(), run(mesh=mesh)
    for metric, values in single.metrics.items():
        np.testing.assert_allclose(
            multi.metrics[metric], values, rtol=1e-4, atol=1e-5, err_msg=metric
        )


def test_placement_specs_follow_roles_not_shapes(mesh):
    data = decjax.data.distribute(decjax.data.load_digits(), 8, "iid", key=0)
    specs = decjax.distributed.data_specs(data, 8, mesh)
    assert specs.x == P() and specs.y == P() and specs.indices == P("workers")
    eight_rows = jnp.zeros((8, 3))
    assert decjax.distributed.replicated_specs(eight_rows) == P()
    with pytest.raises(ValueError, match=r"per-worker leaf .* must have leading axis n=8"):
        decjax.distributed.worker_specs({"w": jnp.zeros((4, 2))}, 8, mesh)


COMPRESSORS = {
    "identity": lambda: decjax.gossip.identity(),
    "top_k": lambda: decjax.gossip.top_k(fraction=0.1),
    "random_k": lambda: decjax.gossip.random_k(fraction=0.1),
    "sign": lambda: decjax.gossip.sign(),
    "qsgd": lambda: decjax.gossip.qsgd(4),
}
FAST_COMPRESSORS = ("sign",)  # the regression case; the others run in the slow tier


def _choco_digits(compressor, n, mesh=None, params_shift=0, worker_chunks="auto"):
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, n, "sorted", key=0)
    model = decjax.problems.mlp([64, 32, 10])
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    if params_shift:  # one ulp on every weight
        params = jax.tree.map(lambda x: jnp.nextafter(x, jnp.inf), params)
    tx = decjax.choco_sgd(0.1, decjax.ring(n), compressor=compressor, consensus_step=0.5)
    result = decjax.simulate(
        model.loss,
        params,
        tx,
        data,
        steps=40,
        eval_every=10,
        batch_size=8,
        key=jax.random.key(1),
        progress=False,
        mesh=mesh,
        worker_chunks=worker_chunks,
    )
    return jax.tree.leaves(result.params)


@pytest.mark.parametrize(
    "name",
    [c if c in FAST_COMPRESSORS else pytest.param(c, marks=pytest.mark.slow) for c in COMPRESSORS],
)
def test_choco_with_every_compressor_agrees_sharded_and_on_one_device(name, mesh):
    """One worker per device: the inputs to compression are bitwise the same, so the
    messages are too (sign and QSGD norms use a fixed-order sum; a vmapped jnp.sum over
    8 rows and over 1 differed in the last bit, and sign() made that a 1.6e-2 difference).
    The single-device run computes one worker's gradient at a time (``worker_chunks=8``),
    as each device does: on some CPUs (an AMD EPYC, 2026-12-03) XLA's matmul over a
    batch of 8 workers and over 1 differ in the last bit, and sign() amplifies it."""
    single = _choco_digits(COMPRESSORS[name](), 8, worker_chunks=8)
    multi = _choco_digits(COMPRESSORS[name](), 8, mesh)
    for a, b in zip(single, multi, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_top_k_amplifies_one_ulp_on_one_device_too():
    """Why several workers per device can still differ under top-k: blocks of 2 workers
    and of 16 give gradients that differ in the last bit (D-PSGD: 6e-8), and top-k turns a
    last-bit change into another choice of coordinates. The same happens on one device
    when the initial params move by one ulp, so it is the compressor, not the sharding."""
    base = _choco_digits(COMPRESSORS["top_k"](), 16)
    nudged = _choco_digits(COMPRESSORS["top_k"](), 16, params_shift=1)
    change = max(
        float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
        for a, b in zip(base, nudged, strict=True)
    )
    assert change > 1e-4


def test_worker_chunks_on_a_mesh_divide_each_devices_block(mesh):
    q = decjax.problems.quadratics(16, 3, key=jax.random.key(0))
    kwargs = {"steps": 10, "key": jax.random.key(0), "progress": False}

    def run(**extra):
        tx = decjax.dpsgd(0.1, decjax.ring(16))
        return decjax.simulate(q.loss, q.init_params(), tx, q.data, **kwargs, **extra)

    with pytest.raises(ValueError, match=r"worker_chunks \(4\) must divide .* = 2"):
        run(mesh=mesh, worker_chunks=4)
    np.testing.assert_allclose(run(mesh=mesh, worker_chunks=2).params, run().params, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("sgp", lambda n: decjax.topology.random_out(n, 2, key=3)),
        ("relaysgd", lambda n: decjax.topology.binary_tree(n)),
        *(
            pytest.param(*case, marks=pytest.mark.slow)
            for case in [
                ("push_diging", lambda n: decjax.topology.from_digraph(_digraph(n))),
                ("osgp", lambda n: decjax.topology.from_digraph(_digraph(n))),
                ("dpsgd", lambda n: decjax.topology.epidemic(n, 2, key=3)),
                ("gradient_tracking", lambda n: decjax.topology.equi_dyn(n, key=3)),
                ("dpsgd", lambda n: decjax.topology.base_graph(n, 2)),
                ("relaysgd", lambda n: decjax.topology.double_binary_trees(n)),
            ]
        ),
    ],
)
def test_directed_and_random_topologies_sharded_agree_with_one_device(name, build, mesh):
    """Push-sum gossip (scatter of shares, column sums) and per-step random graphs under
    shard_map, 2 workers per device."""
    n = 16
    q = decjax.problems.quadratics(n, 3, key=jax.random.key(n))
    kwargs = {"steps": 20, "eval_every": 10, "key": jax.random.key(1), "progress": False}
    single = decjax.simulate(
        q.loss, q.init_params(), ALGORITHMS[name](0.05, build(n)), q.data, **kwargs
    )
    multi = decjax.simulate(
        q.loss, q.init_params(), ALGORITHMS[name](0.05, build(n)), q.data, mesh=mesh, **kwargs
    )
    np.testing.assert_allclose(multi.params, single.params, rtol=1e-5, atol=1e-6)
    assert multi.traces == 1


def _digraph(n: int):
    import networkx as nx

    graph = nx.gnp_random_graph(n, 0.2, seed=0, directed=True)
    graph.add_edges_from((i, (i + 1) % n) for i in range(n))
    return graph


def test_stochastic_rounding_draws_the_same_bits_however_the_workers_are_split(mesh):
    """low_precision's bits come from (key, step, worker, leaf), the worker's global index:
    two workers per device round exactly as on one device."""
    n = 16
    model, params, data = bfloat16_digits(n)

    def tx():
        return decjax.algorithms.low_precision(decjax.dpsgd(0.1, decjax.ring(n)), key=5)

    kwargs = {"steps": 20, "batch_size": 8, "key": jax.random.key(4), "progress": False}
    single = decjax.simulate(model.loss, params, tx(), data, **kwargs)
    multi = decjax.simulate(model.loss, params, tx(), data, mesh=mesh, **kwargs)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(multi.params), strict=True):
        assert a.dtype == b.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(b, np.float32), np.asarray(a, np.float32))
