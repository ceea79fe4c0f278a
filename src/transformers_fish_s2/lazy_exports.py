"""Package namespaces whose public names import their module on first use.

``fish-s2 --help`` builds every subcommand's parser, which imports the subcommand's package; a package that
imported torch, peft or the engine eagerly would make the help wait seconds for nothing.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: name -> relative module (``".runner"``) it is defined in.

    ``__dir__`` lists the names the package already holds and the lazy ones, public before their first use."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
