"""Every public name is in the API reference (docs/api/*.md), and no module hides one.

mkdocstrings renders a ``::: package`` page from the package's public names; a
submodule named like a function it holds (``algorithms/dpsgd.py`` holding
``dpsgd``) took the function's place there, and the function vanished from the
reference. The implementation modules are private (``_dpsgd.py``); these tests
keep it that way (optax checks its API coverage likewise).
"""

import importlib
import pathlib
import pkgutil
import re
import types

import pytest

import decjax

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api"
DIRECTIVE = re.compile(r"^::: ([\w.]+)", re.M)


def _documented() -> dict[str, types.ModuleType]:
    names = [m for page in sorted(DOCS.glob("*.md")) for m in DIRECTIVE.findall(page.read_text())]
    return {name: importlib.import_module(name) for name in names}


DOCUMENTED = _documented()


def _public(module: types.ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n in vars(module) if not n.startswith("_")]


def _objects_on_pages() -> list:
    """Every object rendered on a page of the reference (the ``decjax`` page lists none)."""
    return [
        getattr(module, name)
        for module_name, module in DOCUMENTED.items()
        if module_name != "decjax"
        for name in _public(module)
        if hasattr(module, name)
    ]


def test_every_public_subpackage_has_a_page():
    packages = {
        f"decjax.{name}"
        for name in decjax.__all__
        if isinstance(getattr(decjax, name), types.ModuleType)
    }
    assert packages - set(DOCUMENTED) == set()


def test_every_public_name_of_decjax_is_documented_on_a_page():
    """``decjax.<name>`` re-exports are documented where they are defined: each one is a
    public name of a module with a page (or that module itself)."""
    on_pages = _objects_on_pages()
    missing = [
        name
        for name in decjax.__all__
        if not isinstance(getattr(decjax, name), types.ModuleType)
        and not any(getattr(decjax, name) is obj for obj in on_pages)
    ]
    assert missing == []


@pytest.mark.parametrize("name", sorted(set(DOCUMENTED) - {"decjax"}))
def test_no_public_module_is_named_like_a_public_name(name):
    """A package's public names are its functions and classes, never a submodule: a
    module named like the function it holds shadows it in the reference. (The ``decjax``
    page renders no members: its ``simulate`` is the function, documented with
    ``decjax.simulate``'s page.)"""
    package = DOCUMENTED[name]
    if not hasattr(package, "__path__"):
        return
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    shadowing = sorted(
        n
        for n in _public(package)
        if n in submodules and not isinstance(getattr(package, n), types.ModuleType)
    )
    assert shadowing == []


def test_the_ten_functions_that_were_shadowed_are_in_the_reference():
    on_pages = _objects_on_pages()
    shadowed = [
        decjax.dpsgd,
        decjax.gradient_tracking,
        decjax.algorithms.combine,
        decjax.detag,
        decjax.dasgd,
        decjax.diloco,
        decjax.consensus_control,
        decjax.gossip.mix,
        decjax.data.partition,
        decjax.topology.epidemic,
    ]
    assert all(isinstance(f, types.FunctionType) for f in shadowed)
    assert all(any(f is obj for obj in on_pages) for f in shadowed)
