"""Checkpoint and resume: bitwise identical to an uninterrupted run; never half-written."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decjax
from decjax.algorithms import uniform_delay

N = 8


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def problem():
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, N, "dirichlet", key=0, alpha=0.5)
    model = decjax.problems.mlp([64, 16, 10])
    params = decjax.replicate(model.init(jax.random.key(0)), N)
    return ds, data, model, params


def _run(problem, tx, directory=None, callback=None, steps=60):
    ds, data, model, params = problem
    return decjax.simulate(
        model.loss,
        params,
        tx,
        data,
        steps=steps,
        batch_size=8,
        key=jax.random.key(3),
        eval_every=10,
        chunks=6,
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        progress=False,
        checkpoint_dir=directory,
        callback=callback,
    )


def _stop_after(step):
    def callback(at, metrics):
        if at >= step:
            raise Interrupt

    return callback


TXS = {
    # momentum state, Adam moments and counts
    "adam": lambda: decjax.decentralize(optax.adam(1e-2), decjax.one_peer_exponential(N)),
    # delay ring buffers, RNG key in the algorithm state, staleness accumulators
    "dasgd": lambda: decjax.dasgd(
        0.01, delays=uniform_delay(3), n=N, speeds=[1.0] * 6 + [0.5] * 2, key=jax.random.key(5)
    ),
    # random link failures realized from a key, stragglers with their own key
    "faulty": lambda: decjax.algorithms.stragglers(
        decjax.gradient_tracking(
            0.05,
            decjax.topology.with_faults(
                decjax.torus(2, 4), key=jax.random.key(1), link_failure=0.2
            ),
        ),
        [1.0, 0.5] * 4,
        key=jax.random.key(2),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", TXS)
def test_resumed_run_is_bitwise_identical_to_an_uninterrupted_one(name, problem, tmp_path):
    full = _run(problem, TXS[name]())
    with pytest.raises(Interrupt):
        _run(problem, TXS[name](), directory=tmp_path, callback=_stop_after(30))
    assert (tmp_path / "checkpoint.npz").exists()
    assert not (tmp_path / "checkpoint.npz.tmp").exists()
    resumed = _run(problem, TXS[name](), directory=tmp_path)
    np.testing.assert_array_equal(resumed.steps, full.steps)
    for metric in full.metrics:
        np.testing.assert_array_equal(resumed.metrics[metric], full.metrics[metric], err_msg=metric)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(full.state), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_stateful_model_resumes_bitwise_with_its_statistics_and_dropout_keys(tmp_path):
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
    model = decjax.problems.from_nnx(Net)
    params, state = model.init(jax.random.key(0))

    def run(directory=None, callback=None):
        return decjax.simulate(
            model.loss,
            decjax.replicate(params, N),
            decjax.dpsgd(0.1, decjax.ring(N), momentum=0.9),
            decjax.data.distribute(ds, N, "iid", key=0),
            steps=60,
            batch_size=8,
            key=jax.random.key(3),
            eval_every=10,
            chunks=6,
            eval_fn=model.eval_fn,
            eval_data=(ds.x_test, ds.y_test),
            model_state=decjax.replicate(state, N),
            progress=False,
            checkpoint_dir=directory,
            callback=callback,
        )

    full = run()
    with pytest.raises(Interrupt):
        run(tmp_path, _stop_after(30))
    resumed = run(tmp_path)
    for metric in full.metrics:
        np.testing.assert_array_equal(resumed.metrics[metric], full.metrics[metric], err_msg=metric)
    got, want = jax.tree.leaves(resumed.model_state), jax.tree.leaves(full.model_state)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_finished_checkpoint_is_returned_without_training(problem, tmp_path):
    first = _run(problem, TXS["adam"](), directory=tmp_path)
    calls = []
    again = _run(problem, TXS["adam"](), directory=tmp_path, callback=lambda s, m: calls.append(s))
    assert calls == []
    np.testing.assert_array_equal(again.metrics["train_loss"], first.metrics["train_loss"])


@pytest.mark.slow  # the field-by-field refusals stay in the inner loop
def test_resuming_a_different_configuration_is_an_error(problem, tmp_path):
    _run(problem, TXS["adam"](), directory=tmp_path)
    with pytest.raises(ValueError, match="another run: steps is"):
        _run(problem, TXS["adam"](), directory=tmp_path, steps=120)
    with pytest.raises(ValueError, match=r"another run: (leaves|treedef) is"):
        _run(problem, decjax.dpsgd(0.1, decjax.ring(N)), directory=tmp_path)


@pytest.mark.slow
def test_sweeps_checkpoint_too(problem, tmp_path):
    _ds, data, model, params = problem

    def sweep(directory, callback=None):
        return decjax.sweep(
            model.loss,
            params,
            lambda lr: decjax.dpsgd(lr, decjax.ring(N)),
            data,
            {"lr": [0.05, 0.2], "seed": [0, 1]},
            steps=40,
            batch_size=8,
            eval_every=10,
            key=jax.random.key(0),
            progress=False,
            checkpoint_dir=directory,
            callback=callback,
        )

    full = sweep(None)
    with pytest.raises(Interrupt):
        sweep(tmp_path, _stop_after(20))
    resumed = sweep(tmp_path)
    np.testing.assert_array_equal(resumed.metrics["train_loss"], full.metrics["train_loss"])


# -- identity: a checkpoint never resumes another run ----------------------------


def _quick(problem, tx, directory, loss_fn=None, **kwargs):
    _ds, data, model, params = problem
    options = {
        "steps": 20,
        "batch_size": 8,
        "key": jax.random.key(3),
        "eval_every": 10,
        "chunks": 2,
        "progress": False,
        "checkpoint_dir": directory,
        **kwargs,
    }
    return decjax.simulate(loss_fn or model.loss, params, tx, data, **options)


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tx": decjax.dpsgd(0.2, decjax.ring(N))}, "hyperparameters: learning_rate"),
        pytest.param({"tx": decjax.dpsgd(0.1, decjax.exponential(N))}, "topology", marks=SLOW),
        pytest.param(
            {"tx": decjax.dpsgd(0.1, decjax.ring(N), order="parallel")}, "algorithm", marks=SLOW
        ),
        pytest.param({"key": jax.random.key(4)}, "key", marks=SLOW),
        pytest.param({"run_id": "second"}, "run_id", marks=SLOW),
        pytest.param({"loss_fn": "other"}, "loss_fn", marks=SLOW),
        ({"data": "other"}, "data"),
        pytest.param({"params": "other"}, "initial params", marks=SLOW),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_naming_the_field(problem, tmp_path, change, field):
    """Each of these resumed the old run silently (same state shapes) before runs had identities."""
    ds, data, model, params = problem
    _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path)
    change = dict(change)
    tx = change.pop("tx", decjax.dpsgd(0.1, decjax.ring(N)))
    if change.get("loss_fn") == "other":
        change["loss_fn"] = lambda p, b: model.loss(p, b)
    if change.get("data") == "other":
        change.pop("data")
        other = decjax.data.distribute(ds, N, "iid", key=1)
        problem = (ds, other, model, params)
    if change.get("params") == "other":
        change.pop("params")
        problem = (ds, data, model, decjax.replicate(model.init(jax.random.key(9)), N))
    with pytest.raises(ValueError, match=f"another run: {field} is") as info:
        _quick(problem, tx, tmp_path, **change)
    if field.startswith("hyperparameters"):
        assert "learning_rate is 0.1 there and 0.2 here" in str(info.value)
    with pytest.raises(ValueError, match="overwrite=True") as info:
        _quick(problem, tx, tmp_path, **change)
    assert "overwrite=True" in str(info.value)
    # overwrite=True starts afresh and replaces the checkpoint
    fresh = _quick(problem, tx, tmp_path, overwrite=True, **change)
    again = _quick(problem, tx, tmp_path, **change)
    np.testing.assert_array_equal(again.metrics["train_loss"], fresh.metrics["train_loss"])


def test_the_same_run_built_twice_resumes(problem, tmp_path):
    """Identity is stable: a freshly built, equal transformation is the same run."""
    first = _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path, run_id="a")
    calls = []
    again = _quick(
        problem,
        decjax.dpsgd(0.1, decjax.ring(N)),
        tmp_path,
        run_id="a",
        callback=lambda s, m: calls.append(s),
    )
    assert calls == []  # nothing left to train: it was resumed, not restarted
    np.testing.assert_array_equal(again.metrics["train_loss"], first.metrics["train_loss"])


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_corrupt_checkpoint_is_named_not_a_traceback(problem, tmp_path, damage):
    _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path)
    path = tmp_path / "checkpoint.npz"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        for i in range(len(raw) // 3, len(raw) // 3 + 64):
            raw[i] ^= 0xFF
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"corrupt checkpoint .*checkpoint.npz.*delete it"):
        _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path)


def test_a_diverged_state_never_overwrites_the_last_finite_checkpoint(problem, tmp_path):
    lr = optax.piecewise_constant_schedule(0.1, {15: 1e12})  # blows up after step 15
    tx = decjax.decentralize(optax.sgd(lr), decjax.ring(N))
    with pytest.raises(FloatingPointError, match=r"diverged at step 1[6-9]"):
        _quick(problem, tx, tmp_path)
    with np.load(tmp_path / "checkpoint.npz") as saved:
        assert all(np.isfinite(saved[k]).all() for k in saved.files if k.startswith("leaf_"))


def test_a_symlink_at_the_temporary_path_is_never_followed(problem, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "checkpoint.npz.tmp").symlink_to(victim)
    _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), directory)
    assert victim.read_text() == "keep me"
    assert (directory / "checkpoint.npz").is_file()


@pytest.mark.slow
def test_ctrl_c_names_the_step_and_keeps_the_checkpoint(problem, tmp_path):
    def interrupt(step, metrics):
        if step >= 10:
            raise KeyboardInterrupt

    with pytest.raises(
        KeyboardInterrupt,
        match=r"interrupted after step 10; the checkpoint in .* holds step 10: rerun the same "
        "command to resume from step 10",
    ):
        _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path, callback=interrupt)
    resumed = _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path)
    full = _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), None)
    np.testing.assert_array_equal(resumed.metrics["train_loss"], full.metrics["train_loss"])


def test_checkpoint_dir_that_is_a_file_is_refused_before_training(problem, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint_dir .* is not a directory"):
        _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), path)


# -- the loss, what is recorded, and the state on disk ------------------------------


def _digits_run(directory, model=None, **kwargs):
    """:func:`_quick` on digits with ``model`` (another activation, weight decay...)."""
    ds = decjax.data.load_digits()
    model = model or decjax.problems.mlp([64, 16, 10])
    params = decjax.replicate(model.init(jax.random.key(0)), N)
    problem = (ds, decjax.data.distribute(ds, N, "iid", key=0), model, params)
    test = {"eval_fn": model.eval_fn, "eval_data": (ds.x_test, ds.y_test)}
    return _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), directory, **test, **kwargs)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": decjax.problems.mlp([64, 16, 10], activation=jax.nn.tanh)}, "loss_fn"),
        pytest.param({"model": decjax.problems.mlp([64, 16, 10], l2=1e-2)}, "loss_fn", marks=SLOW),
        ({"eval_workers": True}, "eval_workers"),
        pytest.param({"mix_model_state": decjax.ring(N)}, "mix_model_state", marks=SLOW),
    ],
)
def test_a_checkpoint_knows_the_computation_and_the_records(tmp_path, change, field):
    """The same shapes and the same loss_fn name, but another activation or weight decay,
    other records or another gossip of the model state: refused, naming the argument (each
    resumed silently before, or crashed with a KeyError on the missing records)."""
    base = {"model_state": {}} if field == "mix_model_state" else {}
    if base:  # a stateful run with an empty state, whose gossip can differ
        model = decjax.problems.mlp([64, 16, 10])
        base["loss_fn"] = lambda p, b, s, k: (model.loss(p, b), (s, {}))
    _digits_run(tmp_path, **base)
    with pytest.raises(ValueError, match=f"another run: {field} is") as info:
        _digits_run(tmp_path, **base, **change)
    if field == "loss_fn":
        assert "computes something else now" in str(info.value)


def test_the_same_loss_built_again_resumes(tmp_path):
    """The computation's hash is stable: a new but equal model (another Python object) and
    equal constants resume (nothing left to train)."""
    first = _digits_run(tmp_path, model=decjax.problems.mlp([64, 16, 10]))
    again = _digits_run(tmp_path, model=decjax.problems.mlp([64, 16, 10]))
    assert again.resumed_from == 20
    np.testing.assert_array_equal(again.metrics["train_loss"], first.metrics["train_loss"])


@pytest.mark.parametrize("on_divergence", ["raise", "ignore", "stop"])
def test_params_that_blow_up_at_a_chunks_last_step_are_never_saved(
    problem, tmp_path, on_divergence
):
    """At step 10, the last of the first chunk, the update makes the params infinite while
    every recorded loss is finite: the checkpoint keeps the finite state of step 0 (none
    written) or of the last finite chunk, and a rerun does not start from inf."""

    # the update of step 10 (count 9) makes the params infinite (not a learning-rate
    # schedule, which simulate checks over the run and would refuse)
    blow_up = optax.scale_by_schedule(lambda count: jnp.where(count == 9, jnp.inf, 1.0))
    tx = decjax.decentralize(optax.chain(optax.sgd(0.1), blow_up), decjax.ring(N))
    if on_divergence == "raise":
        with pytest.raises(FloatingPointError, match="by step 10: the params became too large"):
            _quick(problem, tx, tmp_path, on_divergence=on_divergence)
    else:
        _quick(problem, tx, tmp_path, on_divergence=on_divergence)
    assert not (tmp_path / "checkpoint.npz").exists()


def test_stale_temporary_files_of_killed_saves_are_removed(problem, tmp_path):
    """A save killed mid-write leaves checkpoint.npz.<random>.tmp: the next run removes
    them (regular files of that pattern only: a symlink named so is left alone)."""
    for name in ("checkpoint.npz.abc.tmp", "checkpoint.npz.x1y2.tmp"):
        (tmp_path / name).write_bytes(b"half a checkpoint")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (tmp_path / "checkpoint.npz.link.tmp").symlink_to(outside)
    _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["checkpoint.npz", "checkpoint.npz.link.tmp", "outside.txt"]
    assert outside.read_text() == "keep me"


def test_a_resumed_run_says_from_which_step(problem, tmp_path):
    def stop(step, metrics):
        if step >= 10:
            raise Interrupt

    with pytest.raises(Interrupt):
        _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path, callback=stop)
    resumed = _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path)
    assert resumed.resumed_from == 10
    assert _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), None).resumed_from is None


def test_an_interrupt_before_the_first_save_says_nothing_was_saved(problem, tmp_path):
    def stop(step, metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match=r"no checkpoint was written to .* yet"):
        _quick(
            problem, decjax.dpsgd(0.1, decjax.ring(N)), tmp_path, checkpoint_every=2, callback=stop
        )
    with pytest.raises(KeyboardInterrupt, match="no checkpoint_dir: nothing was saved"):
        _quick(problem, decjax.dpsgd(0.1, decjax.ring(N)), None, callback=stop)


def test_a_sweep_checkpoint_names_the_grid_entry_that_differs(tmp_path):
    q = decjax.problems.quadratics(N, 3, key=jax.random.key(0))

    def run(grid):
        return decjax.sweep(
            q.loss,
            q.init_params(),
            lambda lr: decjax.dpsgd(lr, decjax.ring(N)),
            q.data,
            grid,
            steps=4,
            eval_every=2,
            key=jax.random.key(1),
            progress=False,
            checkpoint_dir=tmp_path,
        )

    run({"lr": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"configs is \[\{'lr': 0.1\}, \{'lr': 0.2\}\] there"):
        run({"lr": [0.1, 0.3]})


NNX_IDENTITY = """
import jax, decjax
from flax import nnx
from decjax.simulate.identity import function_identity

class Net(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.norm = nnx.BatchNorm(4, rngs=rngs)
        self.drop = nnx.Dropout(RATE, rngs=rngs)
        self.out = nnx.Linear(4 * 8 * 8, 10, rngs=rngs)

    def __call__(self, x):
        h = self.drop(nnx.relu(self.norm(self.conv(x.reshape(-1, 8, 8, 1)))))
        return self.out(h.reshape(h.shape[0], -1))

model = decjax.problems.from_nnx(Net)
params, state = model.init(jax.random.key(0))
batch = (jax.numpy.zeros((4, 64)), jax.numpy.zeros((4,), jax.numpy.int32))
args = (params, batch, state, jax.random.key(0))
print(function_identity(model.loss, args).split()[-1])
"""


@pytest.mark.slow
def test_a_models_computation_hash_is_the_same_in_every_process():
    """An NNX CNN with BatchNorm and dropout: two fresh processes give the same hash (no
    object addresses or hash seeds in the jaxpr), another dropout rate another one."""
    import subprocess
    import sys

    def digest(rate, seed):
        code = NNX_IDENTITY.replace("RATE", rate)
        env = {"JAX_PLATFORMS": "cpu", "PATH": "", "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        return out.stdout.strip()

    first, second = digest("0.1", "1"), digest("0.1", "2")
    assert first == second and len(first) == 16
    assert digest("0.5", "1") != first
