"""Flax NNX models as decjax classifiers (needs the optional extra ``decjax[flax]``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from decjax._validation import check_callable, check_nonnegative
from decjax.problems.classifiers import Classifier, StatefulClassifier


def from_nnx(
    make_model: Callable[[Any], Any], *, l2: float = 0.0
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
        return _stateless(nnx, graphdef, make_model, float(l2))

    def init(key):
        _, params, _, state = nnx.split(make_model(nnx.Rngs(key)), nnx.Param, nnx.RngState, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(state)

    def apply(params, state, key, x, train):
        module = nnx.merge(graphdef, nnx.State(params), _fresh(rngs, key), nnx.State(state))
        module.train() if train else module.eval()
        logits = module(x)
        _, _, _, new_state = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return logits, nnx.to_pure_dict(new_state)

    return StatefulClassifier(init, apply, float(l2))


def _fresh(rngs, key):
    """The module's RNG streams reset to ``key`` (counts to zero): new variables in this trace."""
    return jax.tree.map(
        lambda x: key if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x * 0, rngs
    )


def _stateless(nnx, graphdef, make_model, l2: float) -> Classifier:
    def init(key):
        _, params = nnx.split(make_model(nnx.Rngs(key)), nnx.Param)
        return nnx.to_pure_dict(params)

    def apply(params, x):
        return nnx.merge(graphdef, nnx.State(params))(x)

    return Classifier(init, apply, l2)
