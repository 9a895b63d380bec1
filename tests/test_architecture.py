"""The module graph and the size rules of docs/architecture.md, checked on the source."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "decjax"

# Layers, bottom first: a module may import from its own layer or below, never above.
LAYERS = [
    (
        "decjax._validation",
        "decjax._arguments",
        "decjax._bits",
        "decjax._random",
        "decjax._axis",
        "decjax._platform",
        "decjax._closures",
    ),
    ("decjax.topology", "decjax.metrics"),
    (
        "decjax.gossip",
        "decjax.byzantine",
        "decjax.privacy",
    ),  # gossip writes the traffic record (gossip/traffic.py)
    ("decjax.algorithms",),
    ("decjax.timing",),  # reads it: no algorithm or gossip module imports the clock
    ("decjax.data", "decjax.problems"),
    ("decjax.distributed",),
    ("decjax.simulate", "decjax.monitor"),  # monitor: callbacks for simulate's records
    ("decjax.learn",),  # differentiates through simulate
    (
        "decjax.cli",
        "decjax.workloads",
        "decjax.multihost",
        "decjax.__main__",
        "decjax",
    ),  # "decjax": the package
]


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The decjax modules ``name`` imports (``from pkg import mod`` resolved to ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("decjax"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("decjax")}
    return found - {name}


def _layer(name: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(name == p or (p != "decjax" and name.startswith(p + ".")) for p in prefixes):
            return level
    return None


def test_every_module_has_a_layer():
    assert [m for m in MODULES if _layer(m) is None] == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m != "decjax"))
def test_no_module_imports_upward(name):
    own = _layer(name)
    upward = [d for d in _imports(name) if _layer(d) is None or _layer(d) > own]
    assert upward == [], f"{name} imports from a higher layer: {upward}"


def test_the_module_graph_has_no_cycle():
    graph = {m: _imports(m) & set(MODULES) for m in MODULES if m != "decjax"}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*path, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep != "decjax" and not node.startswith(dep + "."):  # a package's own __init__
                visit(dep, [*path, node])
        state[node] = 2

    for module in sorted(graph):
        visit(module, [])


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines from its signature to its end, less its docstring."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
        if isinstance(first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1
    return lines


BODY_LINES = 60


def test_no_function_body_is_over_60_lines():
    """Every function (docstring excluded) fits on a screen: at most 60 lines."""
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if _body_lines(node) > BODY_LINES:
                    long.append(f"{name}.{node.name}: {_body_lines(node)}")
    assert long == []


def test_body_lines_excludes_the_docstring_only():
    tree = ast.parse('def f(x):\n    """One.\n\n    Two.\n    """\n    y = x\n    return y\n')
    assert _body_lines(tree.body[0]) == 3
    tree = ast.parse("def g(x):\n    y = x\n    return y\n")
    assert _body_lines(tree.body[0]) == 3


def test_topology_kinds_are_not_switched_on_by_name_outside_their_classes():
    """Each kind carries its own behaviour: no ``representation ==`` chains elsewhere."""
    switch = re.compile(r"representation\s*(==|!=|in\b)")
    outside = [
        f"{name}:{i}"
        for name, path in MODULES.items()
        if not name.startswith(("decjax.topology.kinds", "decjax.topology.base"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if switch.search(line)
    ]
    assert outside == []


MODULE_LINES = 400


def test_no_module_is_over_400_lines():
    """Small files: every module of decjax/ at most 400 lines."""
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MODULE_LINES
    }
    assert long == {}


def test_the_run_arguments_travel_typed():
    """The doors convert their keywords once: no SimpleNamespace and no ``locals()``
    forwarding anywhere in decjax/simulate."""
    found = [
        f"{name}: {word}"
        for name, path in MODULES.items()
        if name.startswith("decjax.simulate")
        for word in ("SimpleNamespace", "locals()")
        if word in path.read_text()
    ]
    assert found == []


def test_no_code_outside_the_kinds_reads_a_kind_flag():
    """What differs between kinds is a method of the kind (``has_fixed_matrices``,
    ``unstackable``, ``expected_contraction``...): no ``.random`` / ``.has_lists`` flag and no
    ``law ==`` switch outside ``topology/base.py`` and ``topology/kinds/``."""
    flag = re.compile(r"\.(has_lists|random)\b(?!\.|\()|\blaw\s*==")
    outside = [
        f"{name}:{i}"
        for name, path in MODULES.items()
        if not name.startswith("decjax.topology.kinds") and name != "decjax.topology.base"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if flag.search(line.replace("jax.random", "").replace("np.random", ""))
    ]
    assert outside == []
