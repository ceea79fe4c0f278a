"""The package's import arrows point one way: processing → modeling and codec; modeling and codec stay apart.

Read from the source with ``ast`` (no import runs), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import transformers_fish_s2

PACKAGE_ROOT = Path(transformers_fish_s2.__file__).parent
PACKAGE = "transformers_fish_s2"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import audio`
    return found


def imports_of(subpackage: str) -> dict[str, set[str]]:
    return {
        module_name(path): imported_modules(path)
        for path in sorted((PACKAGE_ROOT / subpackage).rglob("*.py"))
    }


def offending(subpackage: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in imports_of(subpackage).items()
        for target in targets
        if any(target == f"{PACKAGE}.{name}" or target.startswith(f"{PACKAGE}.{name}.") for name in forbidden)
    )


def test_the_reader_resolves_relative_imports():
    imports = imported_modules(PACKAGE_ROOT / "processing" / "processing_fish_s2.py")
    assert f"{PACKAGE}.codec" in imports and f"{PACKAGE}.processing.markup" in imports


@pytest.mark.parametrize(
    ("subpackage", "forbidden"),
    [("modeling", ("processing", "codec")), ("codec", ("modeling", "processing"))],
)
def test_subpackage_does_not_import(subpackage, forbidden):
    assert imports_of(subpackage), f"no modules found under {subpackage}/"
    assert offending(subpackage, forbidden) == []
