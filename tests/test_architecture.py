"""The house's layout rules, read from the source: imports only go down, no module imports one
that imports it back, and long files say why they are long.

The layers, lowest first (README "Development"): a module may import modules of its own layer
and of the layers below it, never of a layer above. Every import counts, including those inside
functions and under TYPE_CHECKING: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "shoprec"

LAYERS = ("errors", "data", "demo", "text", "evaluate", "models", "explore", "simulation", "privacy", "serve", "cli")
MAX_LINES = 500
LONG_FILE_REASON = "Long file:"


def module_name(path: Path) -> str:
    parts = ("shoprec", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer index of a shoprec module; the root package `shoprec` sits below everything."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module} is in no layer; add its package to LAYERS (and the README).")
    return LAYERS.index(parts[1])


def imports_of(path: Path) -> set[str]:
    """The shoprec modules a file imports (as named; `from a import b` may name module a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "shoprec")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name.split(".")[0] == "shoprec":
                found.add(name)
                found.update(f"{name}.{a.name}" for a in node.names)
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the shoprec modules it imports (only names that are modules of the package)."""
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    return {mod: {m for m in imports_of(path) if m in files and m != mod} for mod, path in files.items()}


def test_every_import_goes_to_the_same_layer_or_below():
    wrong = [
        f"{mod} ({LAYERS[layer_of(mod)] if layer_of(mod) >= 0 else 'root'}) imports {dep} ({LAYERS[layer_of(dep)]})"
        for mod, deps in sorted(graph().items())
        for dep in sorted(deps)
        if layer_of(dep) > layer_of(mod)
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_two_modules_import_each_other_even_through_others():
    g = graph()
    # A module imports its package's __init__ implicitly; the package's own imports of its
    # submodules are not a dependency back, so edges into a package from inside it are dropped.
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in g.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep):], dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_a_source_file_over_500_lines_says_why_at_its_top(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) <= MAX_LINES:
        return
    head = "\n".join(lines[:40])
    assert LONG_FILE_REASON in head, (
        f"{path.relative_to(SRC)} has {len(lines)} lines; split it, or say why near its top "
        f"with a line starting '{LONG_FILE_REASON}'"
    )


def test_no_module_is_named_utils():
    assert not [p for p in SRC.rglob("*.py") if "util" in p.stem]


def test_the_layer_check_catches_an_upward_import(tmp_path):
    # The check itself: a data module importing the service would be reported.
    assert layer_of("shoprec.data.split") < layer_of("shoprec.serve.app")
    assert layer_of("shoprec.models.neural.loop") == layer_of("shoprec.models.base")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("shoprec.nowhere.module")
