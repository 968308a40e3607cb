"""The core knows no simulator: it imports nothing from meow_isaac, and new env kinds plug in
through the ``meow.envs`` entry points without any change to it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "source" / "meow"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth, and every ``import_module("...")`` literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def test_no_core_module_imports_the_isaac_extension():
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 20
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules
        for line, name in _imported_modules(path)
        if name == "meow_isaac" or name.startswith(("meow_isaac.", "isaaclab", "isaacsim"))
    ]
    assert offending == []


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n"
        "    from meow_isaac.env import x\n"
        "    import importlib\n"
        "    importlib.import_module('meow_isaac')\n"
    )
    assert [name for _, name in _imported_modules(module)] == ["meow_isaac.env", "importlib", "meow_isaac"]


def test_importing_every_core_module_loads_no_extension():
    code = (
        "import importlib, pkgutil, sys, meow\n"
        "for m in pkgutil.walk_packages(meow.__path__, 'meow.'):\n"
        "    importlib.import_module(m.name)\n"
        "ext = ('meow_isaac', 'isaaclab', 'isaaclab_tasks')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ext))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "[]"


def test_an_installed_package_adds_an_env_kind_and_its_tasks(toysim):
    from meow.config import load_config
    from meow.envs import kind_names, make_env_from_config

    assert "toysim" in kind_names()
    cfg = load_config("ToySim", ["env.num_envs=3"])
    assert (cfg.env.kind, cfg.env.num_envs, cfg.algo.coupling_hidden) == ("toysim", 3, [16])
    env = make_env_from_config(cfg, 3)
    assert type(env).__name__ == "ToySimEnv" and env.reset().shape == (3, 1)


def test_train_takes_the_same_path_for_a_plugged_in_kind(toysim, capsys):
    train = load_script("train")
    log_dir = toysim / "logs"
    assert train.main(["--task", "ToySim", "runner.total_steps=160", f"runner.log_dir={log_dir}"]) == 0
    (run,) = (log_dir / "meow" / "ToySim").iterdir()
    assert sorted(p.name for p in run.glob("model_*.pt")) == ["model_160.pt", "model_80.pt"]


def test_an_env_kind_nobody_installed_is_a_one_line_error(tmp_path):
    from meow.config import ConfigError, load_config

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "meow.yaml").write_text((ROOT / "config" / "meow.yaml").read_text())
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "x.yaml").write_text("env:\n  id: X-v0\n  kind: nosuchsim\n")
    with pytest.raises(ConfigError, match=r"env.kind=nosuchsim is invalid; valid: .*gymnasium") as err:
        load_config("X-v0", root=tmp_path)
    assert "\n" not in str(err.value)
