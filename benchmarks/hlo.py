"""Reading compiled programs: what the benchmarks and the tests check in XLA's output."""

from __future__ import annotations

import math
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


ITEMSIZE = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2}
ITEMSIZE |= {"f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8}
# instructions that launch nothing and move no bytes of their own
FREE = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant", "while"}
_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%(\S+) = (.*?) ([a-z][a-z0-9-]*)\(([^)]*)\)(.*)$")
_HEADER = re.compile(r"^(?:ENTRY )?%(\S+) ")


def _computations(text: str) -> tuple[dict[str, list], set[str]]:
    """``{computation: [(name, type, opcode, operand names, called)]}`` of an HLO module's
    text (``called``: the computation a ``call`` runs, else None), and the names of the
    computations that are loop bodies."""
    out: dict[str, list] = {}
    bodies = set()
    current = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = out.setdefault(header.group(1), [])
            continue
        instruction = _INSTRUCTION.match(line)
        if instruction and current is not None:
            name, kind, opcode, operands, attributes = instruction.groups()
            operands = re.findall(r"%([\w.\-]+)", operands)
            called = re.search(r"\bto_apply=%([\w.\-]+)", attributes) if opcode == "call" else None
            current.append((name, kind, opcode, operands, called and called.group(1)))
            bodies.update(
                re.findall(r"\bbody=%([\w.\-]+)", attributes) if opcode == "while" else []
            )
    return out, bodies


def _arrays(kind: str, dims: str) -> list[int]:
    """Item sizes of the arrays in an HLO type (a tuple may hold several) whose dimensions
    are ``dims`` in any order (a transposed weight is the same bytes)."""
    want = sorted(dims.split(","))
    found = re.findall(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]", kind)
    return [ITEMSIZE.get(dtype, 4) for dtype, shape in found if sorted(shape.split(",")) == want]


def step_census(compiled, shapes) -> dict:
    """What one iteration of a compiled program's training loop does to arrays of ``shapes``.

    The loop is the ``while`` body that writes arrays of ``shapes[0]`` most
    often (the step loop, not the loop over records). Counted at its top level,
    where each instruction is one kernel reading its operands from memory and
    writing its result there (a ``call``, a CPU subroutine or a GPU command
    buffer, counts the kernels it runs):

    - ``kernels``: every instruction but parameters, tuples, bitcasts,
      constants and nested loops; ``integer_kernels`` among them have no
      floating result (random keys, minibatch indices, counters);
    - per shape, ``reads`` (operands of that shape), ``writes`` (results of
      that shape; a gemm on a GPU is a custom call whose tuple holds it) and
      ``copies``; an array with the same dimensions in another order counts as
      one of that shape (a transposed gradient is the same bytes);
    - ``bytes``: the reads and writes of every shape. A fusion that reads only
      a slice of an operand counts as reading all of it, so this is XLA's
      memory traffic for these arrays when no cache keeps them between kernels.
    """
    computations, bodies = _computations(compiled.as_text())
    types = {op[0]: op[1] for ops in computations.values() for op in ops}
    keys = list({tuple(sorted(s)): ",".join(map(str, s)) for s in shapes}.values())

    def kernels(computation):  # a call (CPU subroutines, GPU command buffers) runs its body
        for op in computations.get(computation, []):
            if op[4]:
                yield from kernels(op[4])
            elif op[2] not in FREE:
                yield op

    def count(body):
        ops = list(kernels(body))
        integer = sum(not re.search(r"\b(?:f|bf)\d+\[", op[1]) for op in ops)
        row = {"kernels": len(ops), "integer_kernels": integer, "bytes": 0, "shapes": {}}
        for dims in keys:
            writes = [b for _, kind, *_ in ops for b in _arrays(kind, dims)]
            reads = [b for op in ops for a in op[3] for b in _arrays(types.get(a, ""), dims)]
            copies = sum(op[2] == "copy" and bool(_arrays(op[1], dims)) for op in ops)
            row["shapes"][dims] = {"reads": len(reads), "writes": len(writes), "copies": copies}
            size = math.prod(int(d) for d in dims.split(",") if d)
            row["bytes"] += size * (sum(reads) + sum(writes))
        return row

    rows = [count(b) for b in sorted(bodies)]
    best = max(rows, key=lambda r: r["shapes"][keys[0]]["writes"], default=None)
    if best is None or not best["shapes"][keys[0]]["writes"]:
        raise ValueError(
            f"step_census: no loop of the compiled program writes an array of {shapes[0]} "
            "(a loop of one iteration is compiled away: run at least two)"
        )
    return best
