"""Plugins: the user's modules of scorers, imported so their decorators register them.

Named in eval.toml (`plugins = ["mypkg.scorers"]`) or with `--plugin`; a name is a module
on the import path, or a path to a `.py` file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from crewbus.evals.scorers.errors import ScorerConfigError


def load_plugins(names: Iterable[str], base_dir: Path | None = None) -> list[ModuleType]:
    """Import each plugin once (a second import is a no-op, as for any module). A plugin
    that fails to import is one line naming it and why, never a traceback."""
    return [load_plugin(name, base_dir) for name in names]


def load_plugin(name: str, base_dir: Path | None = None) -> ModuleType:
    try:
        if name.endswith(".py"):
            return _load_file(name, base_dir)
        return importlib.import_module(name)
    except ScorerConfigError:
        raise
    except Exception as exc:  # the user's module: any failure is theirs to read
        raise ScorerConfigError(
            f"plugin {name!r} does not import: {type(exc).__name__}: {exc}"
        ) from None


def _load_file(name: str, base_dir: Path | None) -> ModuleType:
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    path = path.resolve()
    if not path.is_file():
        raise ScorerConfigError(f"plugin {name!r}: no such file {path}")
    module_name = f"crewbus_plugin_{path.stem}_{hashlib.sha256(bytes(path)).hexdigest()[:8]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ScorerConfigError(f"plugin {name!r}: {path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
