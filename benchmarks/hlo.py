"""Reading compiled programs: what the benchmarks and the tests check in XLA's output."""

from __future__ import annotations

import re


def loop_copies(compiled, shape) -> int:
    """Copies of float32 arrays of ``shape`` inside a compiled program's loops.

    ``compiled`` is ``jax.jit(f).lower(...).compile()``; everything before the
    entry computation is a called computation (loop bodies, fusions).
    """
    loops = compiled.as_text().split("\nENTRY")[0]
    dims = ",".join(map(str, shape))
    return len(re.findall(rf"= f32\[{dims}\]\{{[^}}]*\}} copy\(", loops))


def array_ops(compiled, shape) -> int:
    """Operations (fusions, adds, copies...) anywhere in a compiled program that write a
    float32 array of ``shape``: each is one pass over such an array in memory."""
    dims = ",".join(map(str, shape))
    return len(re.findall(rf"= f32\[{dims}\]\{{[^}}]*\}} [a-z-]+\(", compiled.as_text()))
