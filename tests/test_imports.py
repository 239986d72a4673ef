"""The shape of the package (../shared/ARCHITECTURE.md): no two modules import each other,
measuring code does not import training, and every library the package imports is one it
declares. Read from the source with `ast`, every import counted: absolute and relative, at
module level and inside functions (lazy imports), but not those under ``if TYPE_CHECKING:``
(they never run)."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_bench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, *, lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements of `tree`: all of them (`lazy`), or module-level ones only."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(ast.Module(body=[other], type_ignores=[]), top)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom) and (top or lazy):
                found.append(child)
            inside = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, top and not inside)

    visit(tree, True)
    return found


def _resolve(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package's modules `node` (in `module`) imports."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    if node.level == 0:
        base = node.module or ""
    else:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    if base not in MODULES:
        return set()
    # `from . import x` imports the submodule x where there is one, else a name of base.
    subs = {f"{base}.{alias.name}" for alias in node.names}
    return {s for s in subs if s in MODULES} | ({base} if subs - set(MODULES) else set())


def imports(module: str, *, lazy: bool = True) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    found = {m for node in _import_nodes(tree, lazy=lazy) for m in _resolve(module, node)}
    return found - {module}


GRAPH = {module: imports(module) for module in MODULES}


def _module_level_closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for child in imports(todo.pop(), lazy=False):
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parents = {".".join(child.split(".")[:i]) for i in range(1, child.count(".") + 1)}
            for name in {child, *parents} - seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_the_parser_sees_relative_absolute_and_lazy_imports():
    assert "mnist_bench.augment" in GRAPH["mnist_bench.device_input"]  # from .augment import
    assert "mnist_bench.models" in GRAPH["mnist_bench.export"]  # lazy, inside a function
    assert "mnist_bench.training" in GRAPH["mnist_bench.reproduction"]  # lazy, in reproduce
    assert "mnist_bench.training" in GRAPH["mnist_bench.cli.train"]  # from ..training import
    assert "mnist_bench.models.saving" in GRAPH["mnist_bench.models"]  # a package's own parts
    assert "mnist_bench.provenance" in GRAPH["mnist_bench.export_bench"]


def test_no_two_modules_import_each_other():
    pairs = sorted(
        (a, b) for a, targets in GRAPH.items() for b in targets if a < b and a in GRAPH[b]
    )
    assert pairs == [], "modules importing each other (give the shared piece its own module)"


@pytest.mark.parametrize("module", ["mnist_bench.robustness", "mnist_bench.evaluation"])
def test_measuring_does_not_import_training(module):
    assert "mnist_bench.training" not in GRAPH[module]  # not even lazily
    assert "mnist_bench.training" not in _module_level_closure(module)


def test_checking_published_results_does_not_import_training():
    # reproduction trains (lazily, inside `reproduce`), but importing it for check_results
    # and its tables pulls no training code in.
    for module in ("mnist_bench.reproduction", "mnist_bench.published"):
        assert "mnist_bench.training" not in _module_level_closure(module)


def test_weights_digest_lives_with_the_models_and_keeps_its_old_homes():
    import mnist_bench
    from mnist_bench import models, training

    assert mnist_bench.weights_digest is models.weights_digest is training.weights_digest
    assert models.weights_digest.__module__ == "mnist_bench.models.saving"


def _third_party_imports() -> set[str]:
    """Top-level names of the libraries the package imports (standard library left out)."""
    names = set()
    for path in MODULES.values():
        for node in _import_nodes(ast.parse(path.read_text()), lazy=True):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - {"mnist_bench"}


def _distribution(requirement: str) -> str:
    """The normalised project name of a requirement string, e.g. "scikit-learn>=1.3" ->
    "scikit-learn"."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]).lower()


def test_every_library_the_package_imports_is_declared():
    """A library imported but left to arrive with another one (Keras with TensorFlow) has no
    lower bound of its own: pip keeps whatever version is installed, and the version matrix
    never tries the oldest one. Checked against pyproject.toml's dependencies and extras."""
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    declared = {_distribution(r) for r in project["dependencies"]}
    declared |= {_distribution(r) for extra in project["optional-dependencies"].values()
                 for r in extra}  # fmt: skip
    providers = metadata.packages_distributions()  # top-level name -> distributions
    imported = _third_party_imports()
    assert {"keras", "tensorflow", "numpy"} <= imported  # the scan sees the imports
    undeclared = {
        name: providers.get(name)
        for name in imported
        if not {_distribution(d) for d in providers.get(name, [name])} & declared
    }
    assert undeclared == {}, "imported by mnist_bench, missing from pyproject.toml"
