"""The pure training program: one scan block of steps, then metrics. Vmappable."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decjax import _axis, _platform, _random
from decjax._validation import is_prng_key
from decjax.algorithms import apply_step
from decjax.algorithms._common import byzantine_of
from decjax.data import WorkerData, gather_batch, sample_batch, worker_keys
from decjax.gossip import TRAFFIC, mix
from decjax.metrics import (
    accumulate,
    consensus_distance,
    evaluate,
    masked_mean,
    traffic_metrics,
    zero_totals,
)
from decjax.privacy.clip import GRID_KEYS
from decjax.simulate._lowering import (
    AUTO,
    STEPS_PER_ITERATION,
    over_worker_groups,
    resolve_steps_per_iteration,
    resolve_worker_chunks,
)
from decjax.simulate._private import PRIVACY_STEPS, private_gradients, within_budget
from decjax.timing import TimeModel

TxFactory = Callable[..., optax.GradientTransformation]

NONFINITE_STEP = "_nonfinite_step"  # an internal metric, removed before results are returned


def scan_steps(step: Callable, state: Any, length: int, unroll: int = STEPS_PER_ITERATION):
    """``lax.scan(step, state, None, length)`` with ``unroll`` (default two) steps per iteration.

    A gossip step cannot write its output over its input (row ``i`` of the
    new params reads rows ``i +- 1`` of the old), so with one step per
    iteration XLA writes the new params to a fresh buffer and then copies them
    back into the loop carry: a whole extra pass over the params, and over
    every state leaf that is gossiped, each step. With two steps per
    iteration the first writes to a temporary and the second writes into the
    carry, whose old contents are dead by then: no copies (checked in
    ``tests/simulate/test_api.py`` for D-PSGD and gradient tracking; methods with
    more gossiped state may keep some). Same results to float rounding; the
    compiled loop body holds the step twice (a longer compile, which
    ``resolve_steps_per_iteration`` weighs against the run's length), and the
    temporary holds one more params-sized buffer at the peak (where the step
    used to write its new params over the gradients before the copy).
    """
    return jax.lax.scan(step, state, None, length=length, unroll=max(1, min(unroll, length)))


def _identity(batch):
    return batch


def _lowered(method: Callable) -> Callable:
    """``method`` traced under the program's lowering (:mod:`decjax._platform`)."""

    @functools.wraps(method)
    def traced(self, *args, **kwargs):
        with _platform.lowering(self.lowering):
            return method(self, *args, **kwargs)

    return traced


class RunState(NamedTuple):
    """Everything a run carries from step to step (a pytree of arrays)."""

    params: Any  # stacked (n, ...)
    opt_state: Any
    key: jax.Array
    step: jax.Array  # int32 scalar
    totals: dict  # running totals of the steps' records (bytes sent, rounds, staleness...)
    model_state: Any = None  # stacked (n, ...) non-parameter state (BatchNorm statistics...)
    run_key: Any = None  # the run's key: every keyed draw of the run folds it in (_random)


@dataclass(frozen=True)
class Program:
    """A decentralized training run as pure functions of ``(state, data, hyper)``.

    ``make_tx(**hyper)`` builds the transformation, so hyperparameters can be
    traced (and vmapped) values. ``data`` and ``eval_data`` are passed as
    arguments, never closed over, so large arrays are not baked into the
    compiled program.
    """

    loss_fn: Callable[[Any, Any], jax.Array]
    make_tx: TxFactory
    batch_size: int | None
    eval_every: int
    eval_fn: Callable[[Any, Any], dict] | None = None
    eval_workers: bool = False
    worker_chunks: int | str = AUTO
    steps_per_iteration: int | str = AUTO  # see _lowering.resolve_steps_per_iteration
    run_steps: int | None = None  # the run's training steps, which "auto" weighs; None: unknown
    keep_finite: bool = False  # a block that produces a non-finite loss returns its input
    stateful: bool = False  # loss_fn(params, batch, model_state, key) -> (loss, (state, aux))
    state_topology: Any = None  # mix the model state with this topology; None: keep it local
    timing: dict[str, TimeModel] | None = None  # record name ("time", "time_<label>") -> model
    lowering: str = _platform.AUTO  # the platform's workarounds (decjax._platform)
    privacy: Any = None  # a decjax.privacy.Clip: DP-SGD's gradient on every worker

    def tx_hyper(self, hyper: dict) -> dict:
        """``hyper`` without the privacy option's values (:func:`private_values`)."""
        if self.privacy is None:
            return hyper
        return {k: v for k, v in hyper.items() if k not in (*GRID_KEYS, PRIVACY_STEPS)}

    @_lowered
    def init(self, params, key, hyper, model_state=None) -> RunState:
        """The state at step 0. Every key of the transformation's state (compression,
        delays, stragglers) is folded with the run's ``key``, like every draw of the run."""
        tx = self.make_tx(**self.tx_hyper(hyper))
        with _random.run_key(key):
            opt_state = jax.tree.map(
                lambda x: _random.varied(x) if is_prng_key(x) else x, tx.init(params)
            )
        # the keys of the transformation's per-step record, from its shapes (nothing runs)
        info = jax.eval_shape(
            lambda p, s: self.record(self._priced(apply_step(tx, p, s, p)[2]), 0, p),
            params,
            opt_state,
        )
        zero = jnp.zeros((), jnp.int32)
        return RunState(params, opt_state, key, zero, zero_totals(info), model_state, key)

    def _priced(self, info: dict) -> dict:
        """A step's record, refused when a time model is asked to price a step that
        reports no traffic (its time would leave out every message)."""
        if self.timing and TRAFFIC not in info:
            raise ValueError(
                "timing= prices the traffic a step reports, and tx reports none (a plain optax "
                "transformation, or a from_step record without a decjax.gossip.Traffic): "
                "build tx with decjax.chain(..., algorithm), or drop timing="
            )
        return info

    def record(self, info: dict, step, params) -> dict:
        """What a step adds to the running totals: its scalars, and with a time model the
        simulated seconds ``time`` it took (from its traffic, which is not kept)."""
        out = {name: value for name, value in info.items() if name != TRAFFIC}
        n = _axis.total_workers(jax.tree.leaves(params)[0].shape[0])
        for name, model in (self.timing or {}).items():
            out[name] = model.step_time(info.get(TRAFFIC), step, n)
        return out

    def batch(self, data, key, step=0):
        if isinstance(data, WorkerData):
            return sample_batch(data, key, self.batch_size, step)
        return data  # full batch: a pytree stacked over workers

    def _grad_fn(self):
        """Per-worker ``(loss, grads, model_state, aux)``, vmapped over the workers."""
        if not self.stateful:

            def plain(params, batch):
                loss, grads = jax.value_and_grad(self.loss_fn)(params, batch)
                return loss, grads, None, {}

            return jax.vmap(plain)

        def stateful(params, batch, model_state, key):
            value_and_grad = jax.value_and_grad(self.loss_fn, has_aux=True)
            (loss, (model_state, aux)), grads = value_and_grad(params, batch, model_state, key)
            return loss, grads, model_state, aux

        return jax.vmap(stateful)

    def _loss_arguments(self, params, data, key, step, model_state) -> tuple:
        """The shapes of the loss's arguments for all the workers (nothing runs): what the
        ``"auto"`` choices of ``worker_chunks`` and ``steps_per_iteration`` read."""

        def arguments():
            batch = self.batch(data, key, step)
            if not self.stateful:
                return params, batch
            n = jax.tree.leaves(params)[0].shape[0]
            return params, batch, model_state, worker_keys(key, n)

        return jax.eval_shape(arguments)

    @_lowered
    def gradients(self, params, data, key, model_state=None, step=0, rows=None, hyper=None):
        """Per-worker losses, gradients, new model state and auxiliary outputs.

        ``worker_chunks`` groups of workers are computed one after another (a
        ``lax.map``), which bounds the memory of the minibatches and
        activations to one group's (the same random draws as without chunks,
        so the result does not depend on the chunking); ``"auto"`` chooses by
        device and model (:mod:`decjax.simulate._lowering`). A stateful model gets
        its state and a key of its own per worker and step (dropout,
        augmentation), drawn independently of the minibatch.

        ``rows`` (static indices, or ``None`` for all): the only workers whose gradients
        are computed, the others' are zero (Byzantine workers whose messages ignore
        their model: :func:`trained_rows`); the computed rows see the same minibatches.

        With ``privacy``, DP-SGD's gradients (:func:`private_gradients`), its values
        read from ``hyper`` (a sweep's grid) or the option.
        """
        n = jax.tree.leaves(params)[0].shape[0]
        if self.privacy is not None:
            out = private_gradients(self, params, data, key, model_state, hyper or {})
            return _zero_gradients(out, rows, _axis.total_workers(n))
        extra = ()
        if self.stateful:
            key, model_key = jax.random.split(key)
            extra = (model_state, worker_keys(model_key, n))
        grad_fn = self._grad_fn()
        chunks = self.worker_groups(params, data, key, step, model_state)
        if chunks == 1 and rows is not None and not self.stateful and _axis.current() is None:
            pick = functools.partial(jax.tree.map, lambda x: x[rows])
            out = grad_fn(pick(params), pick(self.batch(data, key, step)))
            return jax.tree.map(
                lambda part: jnp.zeros((n, *part.shape[1:]), part.dtype).at[rows].set(part), out
            )
        if chunks == 1:
            out = grad_fn(params, self.batch(data, key, step), *extra)
            return _zero_gradients(out, rows, _axis.total_workers(n))

        if isinstance(data, WorkerData):
            per_worker = (worker_keys(key, n), data.indices, data.counts, data.epoch_keys)

            def batch_of(k, idx, cnt, epoch_keys):
                return gather_batch(data, k, idx, cnt, self.batch_size, epoch_keys, step)

        else:
            per_worker = (data,)
            batch_of = _identity

        def one(p, w, e):
            return grad_fn(p, batch_of(*w), *e)

        out = over_worker_groups(one, (params, per_worker, extra), chunks)
        return _zero_gradients(out, rows, _axis.total_workers(n))

    def worker_groups(self, params, data, key, step, model_state) -> int:
        """``worker_chunks`` resolved: ``"auto"`` traces the loss's arguments' shapes (only
        then) and chooses by device and model."""
        if self.worker_chunks != AUTO:
            return int(self.worker_chunks)
        shapes = self._loss_arguments(params, data, key, step, model_state)
        return resolve_worker_chunks(self.worker_chunks, self.loss_fn, *shapes)

    @_lowered
    def block(self, state: RunState, data, eval_data, hyper):
        """``eval_every`` training steps, then the metrics of the new state (with Byzantine
        workers, of the honest ones only: :func:`honest_mask`)."""
        tx = self.make_tx(**self.tx_hyper(hyper))
        honest = honest_mask(tx, state.params)
        rows = trained_rows(tx, state.params)

        def step(state: RunState, _):
            key, sub = jax.random.split(state.key)
            with _random.run_key(state.run_key):
                losses, grads, model_state, aux = self.gradients(
                    state.params, data, sub, state.model_state, state.step, rows, hyper
                )
                params, opt_state, info = apply_step(tx, grads, state.opt_state, state.params)
                if self.state_topology is not None:
                    model_state = mix_floating(self.state_topology, model_state, state.step)
                totals = accumulate(state.totals, self.record(info, state.step, state.params))
            trained = {"params": params, "opt_state": opt_state, "totals": totals}
            trained = within_budget(hyper, state, {**trained, "model_state": model_state})
            new = state._replace(key=key, step=state.step + 1, **trained)
            # averaged in float32 at least: a bfloat16 model's mean over workers and steps
            # would round at every add
            aux = {f"train_{k}": masked_mean(_wide(v), honest) for k, v in aux.items()}
            return new, (masked_mean(_wide(losses), honest), aux)

        start = state
        shapes: tuple = ()
        if self.steps_per_iteration == AUTO:  # trace the shapes only when the choice needs them
            shapes = self._loss_arguments(
                state.params, data, state.key, state.step, state.model_state
            )
        unroll = resolve_steps_per_iteration(
            self.steps_per_iteration, self.loss_fn, *shapes, run_steps=self.run_steps
        )
        state, (losses, aux) = scan_steps(step, state, self.eval_every, unroll)
        bad = ~jnp.isfinite(losses)
        metrics = {
            "train_loss": jnp.mean(losses),  # already averaged over workers
            **{name: jnp.mean(values) for name, values in aux.items()},
            "consensus_distance": consensus_distance(state.params, honest),
            **traffic_metrics(state.totals),
            # the step whose training loss was first non-finite in this block (0: none)
            NONFINITE_STEP: jnp.where(bad.any(), start.step + jnp.argmax(bad) + 1, 0),
        }
        if self.keep_finite:
            finite = ~bad.any() & jnp.isfinite(metrics["consensus_distance"])
            state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), state, start)
        if self.eval_fn is not None:
            metrics.update(
                evaluate(
                    self.eval_fn,
                    state.params,
                    eval_data,
                    workers=self.eval_workers,
                    prefix="test_",
                    model_state=state.model_state if self.stateful else None,
                    mask=honest,
                )
            )
        return state, metrics

    def chunk(self, state: RunState, data, eval_data, hyper, *, blocks: int):
        """``blocks`` consecutive :meth:`block` calls; metrics stacked on a leading axis."""

        def body(state, _):
            return self.block(state, data, eval_data, hyper)

        return jax.lax.scan(body, state, None, length=blocks)


def honest_mask(tx, params) -> np.ndarray | None:
    """``(n,)`` bool: the honest workers of a transformation with Byzantine workers (a robust
    combine, :mod:`decjax.byzantine`), whose rows every record leaves out; ``None`` without."""
    byzantine = byzantine_of(tx)
    if byzantine is None:
        return None
    return byzantine.honest(_axis.total_workers(jax.tree.leaves(params)[0].shape[0]))


def trained_rows(tx, params) -> np.ndarray | None:
    """The workers whose gradients a step needs: all (``None``) but the Byzantine workers
    of an attack whose messages ignore the sender's own model (ALIE, IPM, dissensus,
    Gaussian noise: :meth:`~decjax.byzantine.Attack.uses_own_model`), which then keep
    their initial model. Sharded runs compute every row and zero the others' gradients,
    so they agree with one device."""
    byzantine = byzantine_of(tx)
    if byzantine is None or byzantine.attack.uses_own_model():
        return None
    n = _axis.total_workers(jax.tree.leaves(params)[0].shape[0])
    return np.flatnonzero(byzantine.honest(n))


def _zero_gradients(out: tuple, rows: np.ndarray | None, n: int) -> tuple:
    """``(losses, grads, model_state, aux)`` with the gradients of every row outside ``rows``
    (global indices) set to 0, for the paths that computed every row (sharded, chunked,
    stateful); unchanged for ``None``."""
    if rows is None:
        return out
    kept = np.zeros(n, bool)
    kept[rows] = True
    local = _axis.local_rows(jnp.asarray(kept))
    losses, grads, *rest = out
    grads = jax.tree.map(
        lambda g: jnp.where(local.reshape(-1, *([1] * (g.ndim - 1))), g, jnp.zeros_like(g)),
        grads,
    )
    return (losses, grads, *rest)


def mix_floating(topology, tree: Any, step) -> Any:
    """Gossip the floating-point leaves of a per-worker tree; other leaves stay local."""
    leaves, treedef = jax.tree.flatten(tree)
    floating = [i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.inexact)]
    mixed = mix(topology, [leaves[i] for i in floating], step) if floating else []
    for i, x in zip(floating, mixed, strict=True):
        leaves[i] = x
    return jax.tree.unflatten(treedef, leaves)


def _wide(x: jax.Array) -> jax.Array:
    """``x`` in float32 at least (float64 stays), for records averaged over workers."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))
