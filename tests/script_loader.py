"""Imports the command-line files of scripts/, benchmarks/ and tools/ as modules, for the tests that
call their main()."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("scripts", "benchmarks", "tools")


def load_script(name: str) -> ModuleType:
    """``<folder>/<name>.py`` of the first of :data:`FOLDERS` that has it, as a module (loaded once
    per test session)."""
    module_name = f"meow_script_{name}"
    if module_name not in sys.modules:
        path = next((ROOT / f / f"{name}.py" for f in FOLDERS if (ROOT / f / f"{name}.py").is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no {name}.py in {', '.join(FOLDERS)}")
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]
