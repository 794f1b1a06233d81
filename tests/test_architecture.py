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
