"""Run options as objects (Evaluation, Checkpointing, Execution) stand for their flat keywords."""

import dataclasses
import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax

N = 8


@pytest.fixture(scope="module")
def quad():
    return decjax.problems.quadratics(N, 3, key=jax.random.key(0))


def _simulate(quad, **kwargs):
    tx = decjax.dpsgd(0.1, decjax.ring(N))
    base = {"steps": 40, "key": jax.random.key(1), "progress": False}
    return decjax.simulate(quad.loss, quad.init_params(), tx, quad.data, **base, **kwargs)


def test_objects_give_the_same_run_as_the_flat_keywords(quad, tmp_path):
    flat = _simulate(quad, eval_every=10, eval_fn=quad.eval_fn, chunks=2, steps_per_iteration=1)
    objects = _simulate(
        quad,
        evaluation=decjax.Evaluation(every=10, fn=quad.eval_fn),
        execution=decjax.Execution(chunks=2, steps_per_iteration=1),
        checkpointing=decjax.Checkpointing(tmp_path, run_id="a"),
    )
    np.testing.assert_array_equal(objects.steps, flat.steps)
    for name, values in flat.metrics.items():
        np.testing.assert_array_equal(objects.metrics[name], values, err_msg=name)
    assert (tmp_path / "checkpoint.npz").exists()
    calls = []
    again = _simulate(
        quad,
        evaluation=decjax.Evaluation(every=10, fn=quad.eval_fn),
        execution=decjax.Execution(chunks=2, steps_per_iteration=1),
        checkpointing=decjax.Checkpointing(tmp_path, run_id="a"),
        callback=lambda step, metrics: calls.append(step),
    )
    assert calls == []  # resumed from the finished checkpoint
    np.testing.assert_array_equal(again.metrics["train_loss"], flat.metrics["train_loss"])


@pytest.mark.slow  # simulate's objects stay in the inner loop
def test_sweep_and_make_run_take_the_objects_too(quad):
    grid = {"lr": [0.05, 0.1]}

    def make_tx(lr):
        return decjax.dpsgd(lr, decjax.ring(N))

    def sweep(**kwargs):
        return decjax.sweep(
            quad.loss,
            quad.init_params(),
            make_tx,
            quad.data,
            grid,
            steps=20,
            key=jax.random.key(2),
            progress=False,
            **kwargs,
        )

    flat = sweep(eval_every=5, eval_workers=False, eval_fn=quad.eval_fn)
    objects = sweep(evaluation=decjax.Evaluation(every=5, fn=quad.eval_fn, workers=False))
    np.testing.assert_array_equal(
        objects.metrics["test_suboptimality"], flat.metrics["test_suboptimality"]
    )
    assert "worker_test_suboptimality" not in objects.metrics
    run = decjax.make_run(
        quad.loss, make_tx, steps=20, evaluation=decjax.Evaluation(every=5, fn=quad.eval_fn)
    )
    _, metrics = jax.jit(run)(
        quad.init_params(), jax.random.key(2), quad.data, None, {"lr": jnp.asarray(0.1)}
    )
    assert metrics["test_suboptimality"].shape == (4,)


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (
            lambda q: _simulate(q, eval_every=10, evaluation=decjax.Evaluation(every=10)),
            ValueError,
            "not both",
        ),
        (lambda q: _simulate(q, chunks=2, execution=decjax.Execution()), ValueError, "not both"),
        (
            lambda q: _simulate(q, run_id="x", checkpointing=decjax.Checkpointing()),
            ValueError,
            "not both",
        ),
        (lambda q: _simulate(q, evaluation=decjax.Execution()), TypeError, "decjax.Evaluation"),
        (lambda q: decjax.Evaluation(every=0), ValueError, "Evaluation.every"),
        (lambda q: decjax.Evaluation(fn="accuracy"), TypeError, "Evaluation.fn"),
        (lambda q: decjax.Evaluation(workers="yes"), TypeError, "Evaluation.workers"),
        (lambda q: decjax.Checkpointing(dir=3), TypeError, "Checkpointing.dir"),
        (lambda q: decjax.Checkpointing(every=0), ValueError, "Checkpointing.every"),
        (lambda q: decjax.Checkpointing(run_id=5), TypeError, "Checkpointing.run_id"),
        (lambda q: decjax.Checkpointing(overwrite=1), TypeError, "Checkpointing.overwrite"),
        (lambda q: decjax.Execution(chunks=0), ValueError, "Execution.chunks"),
        (lambda q: decjax.Execution(worker_chunks=1.5), TypeError, "Execution.worker_chunks"),
        (
            lambda q: decjax.make_run(
                q.loss, lambda: None, steps=5, execution=decjax.Execution(chunks=5)
            ),
            ValueError,
            "make_run takes no",
        ),
    ],
)
def test_bad_options_are_refused_in_one_line(build, error, words, quad):
    with pytest.raises(error, match=words):
        build(quad)


@pytest.mark.parametrize(
    ("keyword", "value", "error"),
    [
        ("eval_every", 0, ValueError),
        ("eval_workers", "yes", TypeError),
        ("checkpoint_every", 0, ValueError),
        ("run_id", 5, TypeError),
        ("overwrite", 1, TypeError),
        ("chunks", 0, ValueError),
        ("worker_chunks", 1.5, TypeError),
        ("steps_per_iteration", 0, ValueError),
    ],
)
def test_a_bad_flat_keyword_is_refused_by_its_own_name(keyword, value, error, quad):
    """The door converts the flat keywords into the objects; a refusal still names the
    keyword the user typed, not the object's field."""
    with pytest.raises(error, match=f"^{keyword} ") as caught:
        _simulate(quad, **{keyword: value})
    assert "Evaluation." not in str(caught.value) and "Execution." not in str(caught.value)


def test_gather_converts_the_flat_keywords_once_into_the_objects():
    from decjax.simulate.options import Options, gather, gather_flat, keywords

    options = gather(
        (None, keywords(decjax.Evaluation, 5, None, None, False)),
        (None, keywords(decjax.Checkpointing, None, 2, "a", False)),
        (decjax.Execution(chunks=4), keywords(decjax.Execution, None, "auto", "auto", None)),
    )
    assert options == Options(
        decjax.Evaluation(every=5, workers=False),
        decjax.Checkpointing(every=2, run_id="a"),
        decjax.Execution(chunks=4),
    )
    assert gather_flat({"eval_every": 5, "eval_workers": False}) == Options(
        decjax.Evaluation(every=5, workers=False)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.evaluation = None


@pytest.mark.parametrize("door", ["simulate", "sweep", "make_run"])
def test_every_parameter_of_a_door_is_documented(door):
    """``simulate``, ``sweep`` and ``make_run`` document every parameter they take."""
    function = getattr(decjax, door)
    doc = inspect.getdoc(function)
    args = doc[doc.index("Args:") : doc.index("Returns") if "Returns" in doc else None]
    documented = set(re.findall(r"^  (\**\w+):", args, re.M))
    named = {
        ("**" if p.kind is p.VAR_KEYWORD else "") + name
        for name, p in inspect.signature(function).parameters.items()
    }
    assert named - documented == set()
    assert documented - named == set()


def test_the_layout_is_immutable_and_placing_returns_a_new_one():
    from decjax.simulate._execute import Layout

    layout = Layout(n=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.specs = ()
    state = {"w": jnp.ones((4, 2))}
    placed, copy, *_ = layout.place(None, state, None, None, {})
    assert placed == layout and copy["w"] is not state["w"]
