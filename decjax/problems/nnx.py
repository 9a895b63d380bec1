"""Flax NNX models as decjax classifiers (needs the optional extra ``decjax[flax]``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from decjax._validation import check_callable, check_nonnegative
from decjax.problems.classifiers import Classifier, StatefulClassifier


def from_nnx(
    make_model: Callable[[Any], Any],
    *,
    l2: float = 0.0,
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> Classifier | StatefulClassifier:
    """Wrap a Flax NNX module so each worker trains its own copy.

    ``make_model(rngs)`` builds the module from an ``nnx.Rngs``. Its
    ``nnx.Param`` state becomes the params (a plain pytree, so it stacks over
    workers and passes through ``jit``/``vmap``); inputs reach the module with
    their shape (images stay images).

    A module whose only state is ``nnx.Param`` gives a :class:`Classifier`.
    Any other state (``nnx.BatchNorm`` statistics, any ``nnx.Variable``) or an
    RNG stream (``nnx.Dropout``) gives a :class:`StatefulClassifier`:
    ``init(key) -> (params, state)``, training in train mode (statistics
    updated, dropout on) and evaluation in eval mode.
    RNG streams (``nnx.Dropout``'s) are not state: every call gets the key
    ``simulate`` draws for that worker and step.

    ``loss(outputs, targets) -> scalar`` replaces the default objective, the
    mean softmax cross-entropy with integer labels (then ``eval_fn`` reports
    ``"loss"`` only: the outputs need not be class scores). :func:`to_nnx`
    puts trained params (one worker's, or their average) back into a module.

    Examples:
      >>> import jax, decjax
      >>> from flax import nnx
      >>> model = decjax.problems.from_nnx(lambda rngs: nnx.Linear(64, 10, rngs=rngs))
      >>> params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 4))
      >>> params["kernel"].shape
      (4, 64, 10)
    """
    check_callable("make_model", make_model)
    check_nonnegative("l2", l2)
    if loss is not None:
        check_callable("loss", loss)
    try:
        from flax import nnx
    except ImportError as err:  # pragma: no cover - exercised only without flax
        raise ImportError("from_nnx needs flax: pip install 'decjax[flax]'") from err

    module = make_model(nnx.Rngs(0))
    if not isinstance(module, nnx.Module):
        raise TypeError(
            f"make_model(rngs) must return a flax nnx.Module, got {type(module).__name__}"
        )
    graphdef, _, rngs, other = nnx.split(module, nnx.Param, nnx.RngState, ...)  # type: ignore[misc]
    if not jax.tree.leaves(other) and not jax.tree.leaves(rngs):
        return _stateless(nnx, graphdef, make_model, float(l2), loss)

    def init(key):
        _, params, _, state = nnx.split(make_model(nnx.Rngs(key)), nnx.Param, nnx.RngState, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(state)

    def apply(params, state, key, x, train):
        module = nnx.merge(graphdef, nnx.State(params), _fresh(rngs, key), nnx.State(state))
        module.train() if train else module.eval()
        logits = module(x)
        _, _, _, new_state = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return logits, nnx.to_pure_dict(new_state)

    return StatefulClassifier(init, apply, float(l2), loss)


def _fresh(rngs, key):
    """The module's RNG streams reset to ``key`` (counts to zero): new variables in this trace."""
    return jax.tree.map(
        lambda x: key if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x * 0, rngs
    )


def _stateless(nnx, graphdef, make_model, l2: float, loss) -> Classifier:
    def init(key):
        _, params = nnx.split(make_model(nnx.Rngs(key)), nnx.Param)
        return nnx.to_pure_dict(params)

    def apply(params, x):
        return nnx.merge(graphdef, nnx.State(params))(x)

    return Classifier(init, apply, l2, loss)


def to_nnx(
    make_model: Callable[[Any], Any], params, state=None, *, worker: int | str | None = None
):
    """A module built by ``make_model`` holding trained ``params`` (and ``state``:
    BatchNorm statistics and other non-parameter variables), ready to call.

    ``params`` / ``state`` as :func:`from_nnx`'s model uses them: one model's, or
    stacked over workers (``result.params``, ``result.model_state``) with
    ``worker`` naming which: an index, or ``"mean"`` for the workers' average
    (the averaged model x̄ that ``simulate``'s ``test_`` metrics evaluate). Leaf
    shapes are checked against the module's.

    Examples:
      >>> import jax, jax.numpy as jnp, decjax
      >>> from flax import nnx
      >>> make = lambda rngs: nnx.Linear(3, 2, rngs=rngs)
      >>> model = decjax.problems.from_nnx(make)
      >>> stacked = decjax.replicate(model.init(jax.random.key(0)), 4)
      >>> module = decjax.problems.to_nnx(make, stacked, worker="mean")
      >>> module(jnp.ones((1, 3))).shape
      (1, 2)
    """
    from flax import nnx

    check_callable("make_model", make_model)
    module = make_model(nnx.Rngs(0))
    _, own_params, _, own_state = nnx.split(module, nnx.Param, nnx.RngState, ...)  # type: ignore[misc]
    for what, values, own in (("params", params, own_params), ("state", state, own_state)):
        if values is None:
            continue
        values = _one_model(values, worker, what)
        _check_like(values, nnx.to_pure_dict(own), what)
        nnx.replace_by_pure_dict(own, values)
        nnx.update(module, own)
    return module


def _one_model(tree, worker, what: str):
    """One model's leaves: as given (``worker=None``), worker ``i``'s, or the mean."""
    if worker is None:
        return tree
    if worker == "mean":
        return jax.tree.map(lambda x: jax.numpy.mean(x, axis=0), tree)
    if isinstance(worker, int) and not isinstance(worker, bool):
        n = jax.tree.leaves(tree)[0].shape[0]
        if not 0 <= worker < n:
            raise ValueError(f"worker must be in [0, {n}) for {what} of {n} workers, got {worker}")
        return jax.tree.map(lambda x: x[worker], tree)
    raise ValueError(f'worker must be None, a worker index or "mean", got {worker!r}')


def _check_like(values, own, what: str) -> None:
    got = jax.tree_util.tree_flatten_with_path(values)[0]
    want = dict(
        (jax.tree_util.keystr(p), np.shape(x))
        for p, x in jax.tree_util.tree_flatten_with_path(own)[0]
    )
    have = {jax.tree_util.keystr(p): np.shape(x) for p, x in got}
    if have.keys() != want.keys():
        raise ValueError(
            f"{what} do not have the module's structure: {sorted(have)} vs {sorted(want)}"
        )
    for name, shape in have.items():
        if shape != want[name]:
            hint = (
                " (stacked over workers? pass worker=i or worker='mean')"
                if len(shape) == len(want[name]) + 1
                else ""
            )
            raise ValueError(f"{what}{name} has shape {shape}, the module's is {want[name]}{hint}")
