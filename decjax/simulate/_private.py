"""DP-SGD's gradients for every worker of a run with ``privacy=Clip(...)``.

Each worker's sample is a Poisson sample of its shard (:mod:`decjax.privacy.poisson`)
drawn from the key its minibatch would use; its noise comes from a key folded from
the step's key with :data:`NOISE`, one per worker (:func:`~decjax.data.worker_keys`,
so a sharded run draws the same noise), independent of the sample. With full-batch
data every worker uses all its examples every step (sampling rate 1).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from decjax.data import WorkerData, worker_keys
from decjax.privacy.clip import GRID_KEYS, Clip
from decjax.privacy.correlated import zero_sum_noise
from decjax.privacy.mechanism import full_batch_private_gradient, noise_std
from decjax.privacy.poisson import poisson_private_gradient
from decjax.simulate._lowering import over_worker_groups

NOISE = 0x5EED  # folded into the step's key for the noise's keys
PAIRS = 0x9A125  # folded into the step's key for the pairs' shared noise
PRIVACY_STEPS = "_privacy_steps"  # a sweep's per-configuration budget, in steps


def within_budget(hyper: dict, state, trained: dict) -> dict:
    """``trained`` (new values of ``state``'s fields) while a sweep's configuration is
    within its budget (``state.step < hyper[PRIVACY_STEPS]``), the fields of ``state``
    after: its training has stopped."""
    if PRIVACY_STEPS not in hyper:
        return trained
    live = state.step < hyper[PRIVACY_STEPS]
    old = {name: getattr(state, name) for name in trained}
    return jax.tree.map(lambda a, b: jnp.where(live, a, b), trained, old)


def private_values(program, hyper: dict) -> dict:
    """``clip_norm`` and ``noise_multiplier``: the sweep's values if its grid has them,
    else the option's."""
    return {k: hyper.get(k, getattr(program.privacy, k)) for k in GRID_KEYS}


def private_gradients(program, params, data, key, model_state, hyper: dict):
    """Per-worker ``(losses, gradients, model_state, aux)`` as :meth:`Program.gradients`
    returns them, the gradients DP-SGD's. A stateful model (dropout; its state has no
    leaves, :func:`check_privacy`) gets a key per example."""
    n = jax.tree.leaves(params)[0].shape[0]
    values = private_values(program, hyper)
    noise_keys = worker_keys(jax.random.fold_in(key, NOISE), n)
    model_keys = None
    if program.stateful:
        key, model_key = jax.random.split(key)
        model_keys = worker_keys(model_key, n)

    if isinstance(data, WorkerData):
        per_worker, one = _poisson_worker(program, data, key, n, values)
        batch = program.batch_size
    else:
        per_worker, one = _full_batch_worker(program, data, values)
        batch = jax.tree.leaves(data)[0].shape[1]
    args = (params, model_state, noise_keys, model_keys, *per_worker)
    groups = program.worker_groups(params, data, key, 0, model_state)
    losses, grads = over_worker_groups(jax.vmap(one), args, groups)
    pairs = program.privacy.zero_sum
    if pairs is not None:
        std = noise_std(values["clip_norm"], pairs.noise_multiplier, batch)
        noise = zero_sum_noise(pairs, grads, jax.random.fold_in(key, PAIRS), std)
        grads = jax.tree.map(jnp.add, grads, noise)
    return losses, grads, model_state, {}


def _loss_of(program, state):
    """The loss of one example: ``loss_fn(params, batch)``, or a stateful model's loss with
    its (leafless) state, ``loss(params, batch, key)``."""
    if not program.stateful:
        return program.loss_fn
    return lambda p, batch, k: program.loss_fn(p, batch, state, k)[0]


def _example_keys(model_key, slots: int):
    return None if model_key is None else jax.random.split(model_key, slots)


def _poisson_worker(program, data: WorkerData, key, n: int, values: dict):
    """The per-worker arguments and function of a Poisson-sampled step."""

    def one(p, state, noise_key, model_key, sample_key, indices, count):
        return poisson_private_gradient(
            _loss_of(program, state),
            p,
            data.x,
            data.y,
            indices,
            count,
            sample_key,
            noise_key,
            expected_batch=program.batch_size,
            example_keys=_example_keys(model_key, indices.shape[0]),
            **values,
        )

    return (worker_keys(key, n), data.indices, data.counts), one


def _full_batch_worker(program, data, values: dict):
    """The per-worker arguments and function of a full-batch step (sampling rate 1)."""

    def one(p, state, noise_key, model_key, batch):
        size = jax.tree.leaves(batch)[0].shape[0]
        return full_batch_private_gradient(
            _loss_of(program, state),
            p,
            batch,
            noise_key,
            example_keys=_example_keys(model_key, size),
            **values,
        )

    return (data,), one


def check_make_run(privacy, batch_size) -> None:
    """``make_run(privacy=)``: the option checked; a budget, which needs the data's
    sampling rate, refused."""
    check_privacy(privacy, None, batch_size, None)
    if privacy is not None and privacy.epsilon_budget is not None:
        raise ValueError(
            "make_run: Clip.epsilon_budget needs the run's sampling rate: stop after "
            "Clip.steps_allowed(steps, rate) steps yourself, or use simulate/sweep"
        )


def check_privacy(
    privacy, data, batch_size: int | None, model_state, n: int | None = None
) -> float | None:
    """The sampling rate the accountant uses: the largest worker's (its smallest shard's),
    1 with full-batch data, ``None`` without data (``make_run``) or without ``privacy``.
    What DP-SGD here does not support is refused in one line."""
    if privacy is None:
        return None
    if not isinstance(privacy, Clip):
        raise TypeError(
            f"privacy must be a decjax.privacy.Clip or None, got {type(privacy).__name__}"
        )
    if n is not None and privacy.zero_sum is not None and privacy.zero_sum.n != n:
        raise ValueError(
            f"privacy: Clip.zero_sum pairs {privacy.zero_sum.n} workers and the run has {n}: "
            "build it with ZeroSum.on(the run's topology, ...)"
        )
    if jax.tree.leaves(model_state):
        raise ValueError(
            "privacy: per-example clipping needs each example's gradient alone, and this "
            "model's state (BatchNorm statistics) mixes a batch's examples: use a stateless "
            "normalisation (e.g. decjax.problems.zoo.resnet20(norm='group'))"
        )
    if data is None:
        return None
    if not isinstance(data, WorkerData):
        return 1.0
    if data.epoch_keys is not None:
        raise ValueError(
            "privacy: the accountant assumes Poisson sampling, which replaces the minibatch "
            "sampler: distribute the data with sampling='replacement' (the default)"
        )
    smallest = int(np.min(np.asarray(data.counts)))
    if batch_size is None or batch_size > smallest:
        raise ValueError(
            f"privacy: batch_size ({batch_size}) is each worker's expected Poisson sample and "
            f"must be at most the smallest shard ({smallest} examples)"
        )
    return batch_size / smallest


def privacy_of_configs(privacy, configs: list[dict], steps: int, rate):
    """Each configuration's :class:`Clip` (the grid's ``clip_norm`` and ``noise_multiplier``
    over the option's; each validated) and the steps its budget allows (``steps`` without
    one or without ``privacy``)."""
    if privacy is None:
        return [None] * len(configs), [steps] * len(configs)
    clips = [privacy.with_values(**{k: c[k] for k in GRID_KEYS if k in c}) for c in configs]
    allowed: dict = {}
    for clip in clips:
        if clip not in allowed:
            allowed[clip] = clip.steps_allowed(steps, rate)
    return clips, [allowed[clip] for clip in clips]


def record_epsilon(result, clips: list, rate, allowed: list[int]):
    """``result`` with the record ``epsilon``: each record's epsilon at its steps (at most
    the steps its budget allowed), ``(E,)`` for one run and ``(B, E)`` for a sweep."""
    curves: dict = {}
    rows = []
    for clip, stop in zip(clips, allowed, strict=True):
        if (clip, stop) not in curves:
            curves[clip, stop] = clip.epsilons(np.minimum(result.steps, stop), rate)
        rows.append(curves[clip, stop])
    epsilon = rows[0] if result.configs is None else np.stack(rows)
    return dataclasses.replace(result, metrics={**result.metrics, "epsilon": epsilon})
