"""The core knows no simulator: it imports nothing from meow_isaac, and new env kinds plug in
through the ``meow.envs`` entry points without any change to it. The core is MEow: the baselines
(``meow_baselines``) and the curves and plots (``meow_compare``) sit beside it, and neither they
nor the libraries only they need (matplotlib, scipy, Stable-Baselines3: extras of the package)
are imported by it, so training MEow needs none of them. No module of the core, of those two or
of the extension imports, directly or through others, a module that imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "source" / "meow"
SIBLINGS = [ROOT / "source" / "meow_baselines", ROOT / "source" / "meow_compare"]
"""The packages beside the core: they import it, it never imports them."""
OUTSIDE_THE_CORE = ("meow_baselines", "meow_compare", "matplotlib", "scipy", "stable_baselines3")
"""Top-level packages no core module imports: the siblings, and the libraries of the extras
``compare`` and ``baselines`` (not dependencies of the core)."""
SHIPPED = [
    ROOT / "scripts",
    ROOT / "benchmarks",
    ROOT / "tools",
    CORE,
    *SIBLINGS,
    ROOT / "exts" / "meow_isaac",
]
"""What a user runs or imports: it reaches the package as installed, never through ``sys.path``."""


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


def _sys_path_edits(path: Path) -> list[int]:
    """Lines of ``path`` that change ``sys.path``: a mutating call on it (``insert``, ``append``,
    ``extend``, ...), an assignment to it or to an item or slice of it, ``+=``, ``del``, or
    ``site.addsitedir``."""

    def is_sys_path(node: ast.AST) -> bool:
        if isinstance(node, ast.Subscript):
            node = node.value
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        )

    mutators = {"insert", "append", "extend", "remove", "pop", "clear", "__setitem__", "__iadd__"}
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if (node.func.attr in mutators and is_sys_path(node.func.value)) or (
                node.func.attr == "addsitedir" and getattr(node.func.value, "id", None) == "site"
            ):
                found.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            if any(is_sys_path(t) for t in targets):
                found.append(node.lineno)
    return sorted(found)


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


def _outside_the_core(path: Path) -> list[str]:
    """``"line: module"`` of every import of ``path``, at any depth (a lazy one fails on a core
    installed without extras all the same), of a package in :data:`OUTSIDE_THE_CORE`."""
    return [
        f"{line}: {name}" for line, name in _imported_modules(path) if name.split(".")[0] in OUTSIDE_THE_CORE
    ]


def test_no_core_module_imports_the_baselines_the_curves_or_their_libraries():
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 20 and all(folder.is_dir() for folder in SIBLINGS)
    offending = [f"{path.relative_to(ROOT)}:{hit}" for path in modules for hit in _outside_the_core(path)]
    assert offending == []


def test_the_core_check_sees_the_siblings_and_their_libraries_at_any_depth(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import scipy.stats\n"
        "from meow.utils.io import atomic_torch_save\n"  # the core itself
        "from meowx import y\n"
        "def f():\n"
        "    from meow_baselines.sac import SAC_FORMAT\n"
        "    import matplotlib.pyplot as plt\n"
        "    from meow_compare import curves\n"
        "    __import__('stable_baselines3')\n"
    )
    assert _outside_the_core(module) == [
        "1: scipy.stats",
        "5: meow_baselines.sac",
        "6: matplotlib.pyplot",
        "7: meow_compare",
        "8: stable_baselines3",
    ]


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n"
        "    from meow_isaac.env import x\n"
        "    import importlib\n"
        "    importlib.import_module('meow_isaac')\n"
    )
    assert [name for _, name in _imported_modules(module)] == ["meow_isaac.env", "importlib", "meow_isaac"]


def test_importing_every_core_module_loads_no_extension_sibling_or_extra():
    code = (
        "import importlib, pkgutil, sys, meow\n"
        "for m in pkgutil.walk_packages(meow.__path__, 'meow.'):\n"
        "    importlib.import_module(m.name)\n"
        f"ext = ('meow_isaac', 'isaaclab', 'isaaclab_tasks', *{OUTSIDE_THE_CORE!r})\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & set(ext)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "[]"


def test_meow_trains_on_a_core_installed_without_extras(tmp_path):
    """What ``pip install .`` without extras can run: ``scripts/train.py --algo meow`` on a MuJoCo
    task with matplotlib, scipy and Stable-Baselines3 not importable; it loads neither sibling."""
    argv = ["--task", "Hopper-v5", "--algo", "meow", "--total_steps", "128", "runner.warmup_steps=64"]
    argv += ["algo.batch_size=32", "env.eval_envs=0", "runner.progress=false", f"runner.log_dir={tmp_path}"]
    code = (
        "import runpy, sys\n"
        "for name in ('matplotlib', 'scipy', 'stable_baselines3'):\n"
        "    sys.modules[name] = None  # not installed: importing it raises ImportError\n"
        f"status = runpy.run_path({str(ROOT / 'scripts' / 'train.py')!r})['main']({argv!r})\n"
        "loaded = {n.split('.')[0] for n, m in sys.modules.items() if m is not None}\n"
        f"print(status, sorted(loaded & set({OUTSIDE_THE_CORE!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout[-2000:]
    (run,) = (tmp_path / "meow" / "Hopper-v5").iterdir()
    assert (run / "model_128.pt").is_file()


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


def test_no_shipped_code_changes_sys_path():
    files = sorted(f for folder in SHIPPED for f in folder.rglob("*.py"))
    assert len(files) > 40 and all(folder.is_dir() for folder in SHIPPED)
    offending = [f"{f.relative_to(ROOT)}:{line}" for f in files for line in _sys_path_edits(f)]
    assert offending == []


def test_the_check_sees_every_way_of_changing_sys_path(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import site, sys\n"
        "sys.path.insert(0, 'source')\n"
        "sys.path.append('x')\n"
        "def f():\n"
        "    sys.path.extend(['y'])\n"
        "sys.path = ['z']\n"
        "sys.path[:0] = ['w']\n"
        "sys.path += ['v']\n"
        "site.addsitedir('u')\n"
        "del sys.path[0]\n"
        "print(sys.path, [p for p in sys.path if p])\n"  # reading it is fine
        "other.path.insert(0, 'x')\n"
    )
    assert _sys_path_edits(module) == [2, 3, 5, 6, 7, 8, 9, 10]


EXTENSION = ROOT / "exts" / "meow_isaac" / "meow_isaac"


def _modules(package: Path) -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package in folder ``package``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _import_graph(packages: list[Path]) -> dict[str, set[str]]:
    """``{module: the modules of packages it imports}``.

    Imports at any depth count: one inside a function runs later but is a dependency all the same
    (the registry/baselines circle was two of them). ``from package import module`` is an import
    of the module, relative imports are resolved. A parent package that Python runs before a
    module is not counted: else every package that re-exports its modules would be a circle.
    """
    modules = {name: path for folder in packages for name, path in _modules(folder).items()}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [node.module])])
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (``[a, b, a]``) per group of modules that import each other, directly or not
    (Tarjan's strongly connected components of two or more modules)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def circle_through(start: str, members: set[str]) -> list[str]:
        paths, queue = {start: [start]}, [start]
        for v in queue:
            for w in sorted(graph[v] & members):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    queue.append(w)
        raise AssertionError("a strongly connected component always holds a circle")

    def visit(v: str) -> None:
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            if len(component) > 1:
                circles.append(circle_through(min(component), set(component)))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return circles


def test_no_import_circles_in_the_core_its_siblings_or_the_extension():
    graph = _import_graph([CORE, *SIBLINGS, EXTENSION])
    assert len(graph) > 40 and {"meow.config", "meow_isaac.tasks", "meow_baselines.registry"} <= set(graph)
    assert graph["meow_isaac.kind"] >= {"meow.envs.registry", "meow_isaac.env"}  # read at any depth
    assert graph["meow_baselines.sac"] >= {"meow.runners.checkpoint", "meow_baselines"}
    assert [" -> ".join(circle) for circle in _circles(graph)] == []


def test_the_circle_check_finds_a_circle_through_function_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")  # a re-export: no circle
    (pkg / "a.py").write_text("import os\n\ndef f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from ..c import C\nB = 1\n")
    (pkg / "c.py").write_text("import pkg.a\nC = 1\n")
    (pkg / "d.py").write_text("from pkg import c\n")  # leads into the circle, is not part of it
    graph = _import_graph([pkg])
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.c"}
    assert _circles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    (pkg / "a.py").write_text("def f():\n    return 1\n")
    assert _circles(_import_graph([pkg])) == []
