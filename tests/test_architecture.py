"""The shape of the code: the test machinery never imports the product.

(Model: go-containerregistry's ``pkg/registry/depcheck_test.go``.) The test bed starts the real
registries, builds and loads the test images and reads the results back; if it used arcmirror's
own code, the tests would grade the code with the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_test_bed_never_imports_arcmirror():
    offenders = {str(path.relative_to(ROOT)): sorted(m for m in imports_of(path) if m.split(".")[0] == "arcmirror")
                 for path in sorted((ROOT / "testbed").rglob("*.py"))}
    assert not {k: v for k, v in offenders.items() if v}


#: arcmirror's layers, lowest first (README's "How it works" draws the same table). A module may import
#: from its own layer or a lower one, never a higher one; the leaf types import nothing else of arcmirror.
LAYERS: dict[int, tuple[str, ...]] = {
    1: ("arcmirror.oci", "arcmirror.secret"),  # leaf types: pure data, no I/O
    2: ("arcmirror.cancel", "arcmirror.registry", "arcmirror.endpoints", "arcmirror.dockerengine",
        "arcmirror.settings"),  # I/O: registries, endpoints, the Docker engine, settings
    3: ("arcmirror.copy", "arcmirror.trust"),  # the copy algorithm; signature verification beside it
    4: ("arcmirror.runs",),  # the runs, sharing runs/report.py
    5: ("arcmirror.cli", "arcmirror.tasks", "arcmirror.__main__"),  # the front door
}
PACKAGE_ROOT = {"arcmirror": 1}  # arcmirror/__init__.py: the version only


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    if module in PACKAGE_ROOT:
        return PACKAGE_ROOT[module]
    matches = [(len(prefix), layer) for layer, prefixes in LAYERS.items() for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def product_modules() -> dict[str, set[str]]:
    """Every module of arcmirror/ and the modules of arcmirror/ it imports (function-local imports too)."""
    modules = {module_name(path): path for path in (ROOT / "arcmirror").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for target in imports_of(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]  # "arcmirror.runs.ci" is a module; ".ci.in_ci" is a name in it
            if target and target != name:
                imported.add(target)
        graph[name] = imported
    return graph


def test_every_module_has_a_layer():
    assert not [name for name in product_modules() if layer_of(name) is None]


def test_imports_go_downwards_only_and_the_leaf_imports_nothing_of_arcmirror():
    upward = []
    for name, imported in product_modules().items():
        for target in imported:
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})")
            if name.startswith("arcmirror.oci") and not target.startswith("arcmirror.oci"):
                upward.append(f"{name} is a leaf type but imports {target}")
            if name == "arcmirror.secret" or name in PACKAGE_ROOT:
                upward.append(f"{name} imports {target}")
    assert not upward


def test_there_is_no_import_cycle():
    graph = product_modules()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles


def test_the_checkout_s_tasks_py_is_the_package_s_tasks():
    imported = {m for m in imports_of(ROOT / "tasks.py") if m.startswith("arcmirror")}
    assert imported <= {"arcmirror.tasks", "arcmirror.tasks.ns"}


def test_readme_how_it_works_names_every_module_and_no_other():
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## How it works"):readme.index("## Tests")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    named = {(package, file) for line in rows
             for package in [p if p != "arcmirror" else "" for p in re.findall(r"^\| [^|]*\| `(\w+)/`", line)]
             for file in re.findall(r"`(\w+\.py)`", line)}
    named |= {("", file) for line in rows for file in re.findall(r"^\| [^|]*\| `(\w+\.py)`", line)}
    actual = {(p.parent.name if p.parent.name != "arcmirror" else "", p.name)
              for p in (ROOT / "arcmirror").rglob("*.py") if p.name != "__init__.py"}
    assert actual - named == set(), "modules README's How it works does not name"
    assert {(p, f) for p, f in named if (p, f) not in actual and f != "tasks.py"} == set(), "named but absent"
