"""Small classifiers in pure JAX: logistic regression and an MLP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax._validation import check_int, check_nonnegative


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels (the classifiers' default objective)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _metrics(objective, outputs, y) -> dict[str, jax.Array]:
    """``{"loss"}``, and ``"accuracy"`` under the default cross-entropy (a custom
    objective's outputs need not be class scores)."""
    if objective is None:
        return {
            "loss": cross_entropy(outputs, y),
            "accuracy": jnp.mean(jnp.argmax(outputs, axis=-1) == y),
        }
    return {"loss": objective(outputs, y)}


class Classifier(NamedTuple):
    """A model as pure functions on one worker's (unstacked) params.

    ``init(key) -> params``; ``apply(params, x) -> outputs``;
    ``loss(params, (x, y)) -> scalar``: ``objective(outputs, y)`` (default: mean
    softmax cross-entropy with integer labels) ``+ l2/2 ||params||^2``;
    ``eval_fn(params, (x, y)) -> {"loss", "accuracy"}`` (``"accuracy"`` only
    under the default objective).
    """

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], jax.Array]
    l2: float = 0.0
    objective: Callable[[jax.Array, jax.Array], jax.Array] | None = None

    def loss(self, params, batch) -> jax.Array:
        x, y = batch
        outputs = self.apply(params, x)
        value = (self.objective or cross_entropy)(outputs, y)
        if self.l2:
            value = value + 0.5 * self.l2 * optax.tree.norm(params, squared=True)
        return value

    def eval_fn(self, params, batch, state=None) -> dict[str, jax.Array]:
        del state  # no model state; accepted so an augmented (stateful) loss can share it
        x, y = batch
        return _metrics(self.objective, self.apply(params, x), y)


class StatefulClassifier(NamedTuple):
    """A model with non-parameter state (BatchNorm statistics) and randomness (dropout).

    ``init(key) -> (params, state)``; ``apply(params, state, key, x, train) ->
    (logits, new_state)`` (``train`` static: training mode updates the state and
    uses ``key``, evaluation mode does neither). Its ``loss`` and ``eval_fn``
    follow :func:`decjax.simulate`'s stateful protocol: pass the stacked state
    as ``simulate(..., model_state=state)``.
    """

    init: Callable[[jax.Array], tuple[Any, Any]]
    apply: Callable[..., tuple[jax.Array, Any]]
    l2: float = 0.0
    objective: Callable[[jax.Array, jax.Array], jax.Array] | None = None

    def loss(self, params, batch, state, key):
        """``(loss, (new_state, {"accuracy": training accuracy}))`` in training mode (the
        accuracy only under the default cross-entropy objective)."""
        x, y = batch
        outputs, state = self.apply(params, state, key, x, True)
        value = (self.objective or cross_entropy)(outputs, y)
        if self.l2:
            value = value + 0.5 * self.l2 * optax.tree.norm(params, squared=True)
        extra = _metrics(self.objective, outputs, y)
        extra.pop("loss")
        return value, (state, extra)

    def eval_fn(self, params, batch, state) -> dict[str, jax.Array]:
        """``{"loss", "accuracy"}`` in evaluation mode (running statistics, no dropout)."""
        x, y = batch
        outputs, _ = self.apply(params, state, jax.random.key(0), x, False)
        return _metrics(self.objective, outputs, y)


def mlp(
    layer_sizes: Sequence[int],
    *,
    activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
    l2: float = 0.0,
) -> Classifier:
    """A fully connected network, e.g. ``mlp([784, 256, 256, 10])``; He-normal init.

    ``apply`` takes a batch ``(B, ...)`` and flattens each example to
    ``layer_sizes[0]`` features.

    Examples:
      >>> import jax, decjax
      >>> model = decjax.problems.mlp([64, 32, 10])
      >>> params = model.init(jax.random.key(0))
      >>> [w.shape for w, b in params]
      [(64, 32), (32, 10)]
    """
    sizes = [check_int(f"layer_sizes[{i}]", s, minimum=1) for i, s in enumerate(layer_sizes)]
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes must have at least 2 entries, got {list(layer_sizes)}")
    check_nonnegative("l2", l2)
    if not callable(activation):
        raise TypeError("activation must be callable")

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            (
                jax.random.normal(k, (i, o)) * jnp.sqrt(2.0 / i),
                jnp.zeros((o,)),
            )
            for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]

    def apply(params, x):
        h = x.reshape(x.shape[0], -1)  # (batch, features)
        for i, (w, b) in enumerate(params):
            h = h @ w + b[None, :]
            if i < len(params) - 1:
                h = activation(h)
        return h

    return Classifier(init, apply, float(l2))


def logistic_regression(num_features: int, num_classes: int, *, l2: float = 0.0) -> Classifier:
    """Multinomial logistic regression (a linear layer + softmax), zero init.

    Examples:
      >>> import jax, decjax
      >>> model = decjax.problems.logistic_regression(64, 10)
      >>> model.init(jax.random.key(0))[0][0].shape
      (64, 10)
    """
    num_features = check_int("num_features", num_features, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    base = mlp([num_features, num_classes], l2=l2)

    def init(key):
        del key
        return [(jnp.zeros((num_features, num_classes)), jnp.zeros((num_classes,)))]

    return base._replace(init=init)
