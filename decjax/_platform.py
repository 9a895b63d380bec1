"""The platform choices, in one place: which lowering a run's program is traced with.

XLA's CPU compiler needs four workarounds that other backends do not, and
decjax applies them only under the ``"cpu"`` lowering:

* the convolution's gradients as matmuls of patches
  (:func:`decjax.problems.conv_general_dilated`: 102 ms against 2,282 ms for
  ResNet-20's first-stage layer's weight gradient, 75 against 462 for its
  input gradient, 16 workers one at a time);
* ``worker_chunks="auto"``: one worker at a time for a loss with a convolution
  (a vmapped convolution is a grouped one, several times slower on the CPU;
  :mod:`decjax.simulate._lowering`);
* gossip whose input is the previous gossip's output passes through a
  conditional XLA cannot fuse across (:func:`separated`), where the CPU
  compiler would recompute the producer for every neighbour it reads.
* sums over the workers (the complete graph, periodic averaging, the
  consensus distance, averaged evaluation) as a dot with ones
  (:func:`decjax._axis.sum_rows`): XLA:CPU's reduction over the leading axis
  is 40 to 60 times slower (``python -m benchmarks.simulate_step``).

The choice is ``Execution(lowering=...)``: ``"auto"`` (the default) is ``"cpu"``
on the CPU backend and ``"plain"`` elsewhere; ``"plain"`` uses the plain XLA
operations everywhere, ``"cpu"`` the workarounds on any backend. Results agree
to float rounding whatever the choice. The program is traced inside
:func:`lowering` (``Program`` does it), which every workaround reads through
:func:`cpu_lowering`; outside a run (a model called directly) ``"auto"`` holds.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import jax
import jax.numpy as jnp

AUTO = "auto"
LOWERINGS = (AUTO, "cpu", "plain")

_CHOICE: contextvars.ContextVar[str] = contextvars.ContextVar("decjax_lowering", default=AUTO)


def check_lowering(name: str, value) -> str:
    """One of :data:`LOWERINGS`, refused in one line otherwise."""
    if not isinstance(value, str) or value not in LOWERINGS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, LOWERINGS))}, got {value!r}")
    return value


@contextlib.contextmanager
def lowering(choice: str) -> Iterator[None]:
    """Trace what runs inside with the lowering ``choice`` (see the module docstring)."""
    token = _CHOICE.set(check_lowering("lowering", choice))
    try:
        yield
    finally:
        _CHOICE.reset(token)


def cpu_lowering() -> bool:
    """Whether the CPU workarounds apply to what is being traced now."""
    choice = _CHOICE.get()
    if choice == AUTO:
        return jax.default_backend() == "cpu"
    return choice == "cpu"


def separated(tree, step):
    """``tree`` unchanged, through a ``lax.cond`` that XLA cannot fuse across (CPU lowering).

    Each of the ``k`` gathers (or rolls) and differences of a gossip reads its
    input; XLA's CPU compiler may fuse the input's producer into every one of
    them, and when that producer is itself a gossip (a tracker mixed again in
    the next step of the same loop iteration: Push-DIGing, parallel gradient
    tracking) the fused loop recomputes it for every read. Materializing the
    input first costs one copy. ``optimization_barrier`` does not stop CPU
    fusion, and a conditional with a constant predicate is inlined; this one's
    predicate ``step > INT_MIN`` is always true but known only at run time (and
    unbatched in a sweep, where the step counter is shared). The other branch is
    never taken. Other backends fuse without recomputing, and get ``tree`` as is.
    """
    if not cpu_lowering():
        return tree
    always = jnp.asarray(step) > jnp.iinfo(jnp.int32).min

    def never(t):
        return jax.tree.map(lambda x: -x if jnp.issubdtype(x.dtype, jnp.inexact) else x, t)

    return jax.lax.cond(always, lambda t: t, never, tree)
