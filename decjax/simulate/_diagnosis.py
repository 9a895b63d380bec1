"""Why a run diverged: the step, and whether the updates or the inputs are the cause."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _random
from decjax.simulate._program import NONFINITE_STEP, Program


def diverged_message(host: dict, chunk_end: int, mismatch: str | None) -> str:
    """The divergence message: where, and the likely cause (not always the learning rate)."""
    nonfinite = host[NONFINITE_STEP]
    if (nonfinite > 0).any():
        where = f"at step {int(nonfinite[nonfinite > 0].min())}: the training loss became"
    else:
        where = f"by step {chunk_end}: the params became too large for float32 or"
    if mismatch is not None:
        return f"training diverged {where} non-finite, and not through the updates: {mismatch}"
    return (
        f"training diverged {where} non-finite. The params, the data and the topology weights "
        "were finite and checked at the start, and the loss was finite on the first "
        "minibatches, so the updates blew up: lower the learning rate, or pass "
        "on_divergence='stop' (returns the last finite state) or 'ignore'"
    )


DIAGNOSED_STEPS = 8


def mismatch(program: Program, state, data) -> str | None:
    """Why a run diverged when it is not the updates: the loss is already non-finite at the
    initial params on one of the first minibatches (labels outside the model's classes,
    token ids beyond its vocabulary, sequences longer than its context). ``None`` when the
    loss is finite there."""

    @jax.jit
    def losses(state, data):
        out, key = [], state.key
        with _random.run_key(state.run_key):
            for s in range(DIAGNOSED_STEPS):
                key, sub = jax.random.split(key)
                out.append(program.gradients(state.params, data, sub, state.model_state, s)[0])
        return jnp.stack(out)

    values = np.asarray(losses(state, data))
    if np.isfinite(values).all():
        return None
    step, worker = np.unravel_index(int(np.argmax(~np.isfinite(values))), values.shape)
    return (
        f"the loss is already {values[step, worker]} at the initial params (worker {worker}, "
        f"the minibatch of step {step + 1}), so the data and the model do not fit: labels "
        "outside the model's classes, token ids beyond its vocabulary, sequences longer than "
        "its context, or a loss that is not finite on these inputs. The learning rate is not "
        "the cause"
    )
