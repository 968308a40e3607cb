"""tools/wheelhouse.py: files placed into part folders (of bounded size when asked) and joined back, offline.

The script runs as a real process, as it does on the target machine; ``build`` needs the network
and is exercised by hand (docs/GPU.md), everything after the download is covered here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "wheelhouse.py"
# Each folder also holds manifest.json and the script (~30 KB), so parts are somewhat smaller.
PART_SIZE = 256 * 1024
# Empty, tiny and single-part files in the core group; multi-part files in the other.
CORE_SIZES = {"a-1.0-py3-none-any.whl": 0, "b-2.0-py3-none-any.whl": 1000, "c.whl": 40_000}
BIG_SIZES = {"big-1.0-py3-none-any.whl": 1_000_001, "mid.whl": 400_000, "small.whl": 7}


def run(*args: str | Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_files(folder: Path, sizes: dict[str, int], seed: int) -> dict[str, str]:
    folder.mkdir(parents=True)
    digests = {}
    for i, (name, size) in enumerate(sizes.items()):
        # Distinct pseudo-random bytes per file, so a part put into the wrong file cannot pass.
        data = hashlib.shake_256(f"{seed}-{i}".encode()).digest(size) if size else b""
        (folder / name).write_bytes(data)
        digests[name] = sha(folder / name)
    return digests


@pytest.fixture
def packed(tmp_path):
    digests = make_files(tmp_path / "src" / "core", CORE_SIZES, 1)
    digests |= make_files(tmp_path / "src" / "isaaclab", BIG_SIZES, 2)
    out = tmp_path / "house"
    r = run(
        "pack", tmp_path / "src" / "core", tmp_path / "src" / "isaaclab", "--out", out, "--part-size", "256K"
    )
    assert r.returncode == 0, r.stderr
    return out, digests, json.loads((out / "part-01" / "manifest.json").read_text())


def test_parts_and_folders_are_bounded_and_complete(packed):
    out, digests, manifest = packed
    folders = sorted(out.iterdir())
    assert [f.name for f in folders] == [f"part-{i:02d}" for i in range(1, len(folders) + 1)]
    for folder in folders:
        assert sum(p.stat().st_size for p in folder.iterdir()) <= PART_SIZE
        assert (folder / "manifest.json").read_text() == (out / "part-01" / "manifest.json").read_text()
        assert (folder / "wheelhouse.py").read_bytes() == SCRIPT.read_bytes()
    # The core group travels alone: its folders hold no part of another group and come first.
    assert manifest["groups"]["core"] == ["part-01"]
    assert set(p.name for p in (out / "part-01").glob("*.part*")) == {f"{n}.part001" for n in CORE_SIZES}
    total_big = sum(BIG_SIZES.values())
    assert len(manifest["groups"]["isaaclab"]) >= -(-total_big // PART_SIZE)
    for entry in manifest["files"]:
        parts = entry["parts"]
        assert entry["sha256"] == digests[entry["name"]]
        assert sum(p["size"] for p in parts) == entry["size"]
        assert all(p["size"] <= PART_SIZE for p in parts)
        # Equal parts but the last, and no more of them than needed.
        assert len({p["size"] for p in parts[:-1]}) <= 1 and parts[-1]["size"] <= parts[0]["size"]
        assert len(parts) == 1 or entry["size"] > (len(parts) - 1) * parts[0]["size"]
        for part in parts:
            path = out / part["folder"] / part["name"]
            assert path.stat().st_size == part["size"] and sha(path) == part["sha256"]


def test_round_trip_restores_every_file(packed, tmp_path):
    out, digests, _ = packed
    wheels = tmp_path / "wheels"
    r = run("assemble", *sorted(out.iterdir()), "--out", wheels)
    assert r.returncode == 0, r.stderr
    assert {p.name: sha(p) for p in wheels.iterdir() if p.name != "manifest.json"} == digests
    # Running it again keeps the files (same content) and still succeeds.
    assert run("assemble", *sorted(out.iterdir()), "--out", wheels).returncode == 0


def test_without_a_part_size_each_group_is_one_folder_of_whole_files(tmp_path):
    digests = make_files(tmp_path / "src" / "core", CORE_SIZES, 1)
    digests |= make_files(tmp_path / "src" / "isaaclab", BIG_SIZES, 2)
    out = tmp_path / "house"
    r = run("pack", tmp_path / "src" / "core", tmp_path / "src" / "isaaclab", "--out", out)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "part-01" / "manifest.json").read_text())
    assert manifest["part_size"] is None
    assert manifest["groups"] == {"core": ["part-01"], "isaaclab": ["part-02"]}
    for entry in manifest["files"]:
        (part,) = entry["parts"]
        assert part["size"] == entry["size"] == (out / part["folder"] / part["name"]).stat().st_size
    wheels = tmp_path / "wheels"
    assert run("assemble", out / "part-01", out / "part-02", "--out", wheels).returncode == 0
    assert {p.name: sha(p) for p in wheels.iterdir() if p.name != "manifest.json"} == digests


def test_core_folder_alone_assembles_only_core(packed, tmp_path):
    out, digests, _ = packed
    wheels = tmp_path / "core"
    r = run("assemble", out / "part-01", "--out", wheels)
    assert r.returncode == 0, r.stderr
    assert {p.name: sha(p) for p in wheels.iterdir() if p.name != "manifest.json"} == {
        n: digests[n] for n in CORE_SIZES
    }


def test_missing_part_is_named(packed, tmp_path):
    out, _, manifest = packed
    big = next(f for f in manifest["files"] if f["name"] == "big-1.0-py3-none-any.whl")
    lost = big["parts"][2]
    (out / lost["folder"] / lost["name"]).unlink()
    wheels = tmp_path / "wheels"
    r = run("assemble", *sorted(out.iterdir()), "--out", wheels)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: missing part")
    assert lost["name"] in r.stderr and lost["folder"] in r.stderr
    assert not wheels.exists()


def test_missing_folder_is_named(packed, tmp_path):
    out, _, manifest = packed
    folders = manifest["groups"]["isaaclab"]
    r = run("assemble", *(out / f for f in folders[:-1]), "--out", tmp_path / "wheels")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"folder {folders[-1]}" in r.stderr


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_part_is_named_and_nothing_written(packed, tmp_path, damage):
    out, _, manifest = packed
    mid = next(f for f in manifest["files"] if f["name"] == "mid.whl")
    part = out / mid["parts"][1]["folder"] / mid["parts"][1]["name"]
    data = bytearray(part.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[:-1]
    part.write_bytes(bytes(data))
    wheels = tmp_path / "wheels"
    r = run("assemble", *sorted(out.iterdir()), "--out", wheels)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: damaged part")
    assert str(part) in r.stderr
    assert not wheels.exists()


def test_folders_of_two_builds_are_refused(packed, tmp_path):
    out, _, _ = packed
    other_src = tmp_path / "other" / "core"
    make_files(other_src, {"z.whl": 10}, 3)
    other = tmp_path / "other-house"
    assert run("pack", other_src, "--out", other, "--part-size", "256K").returncode == 0
    r = run("assemble", out / "part-01", other / "part-01", "--out", tmp_path / "wheels")
    assert r.returncode == 2 and "build" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("size", ["0", "60X", "-5", "abc"])
def test_bad_part_size_is_refused(tmp_path, size):
    make_files(tmp_path / "core", {"a.whl": 10}, 4)
    r = run("pack", tmp_path / "core", "--out", tmp_path / "house", "--part-size", size)
    assert r.returncode == 2 and size in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "house").exists()


def test_part_size_smaller_than_the_folder_overhead_is_refused(tmp_path):
    make_files(tmp_path / "core", {"a.whl": 10}, 5)
    r = run("pack", tmp_path / "core", "--out", tmp_path / "house", "--part-size", "1K")
    assert r.returncode == 2 and "too small" in r.stderr
    assert not (tmp_path / "house").exists()


def test_existing_output_is_not_overwritten(packed, tmp_path):
    out, _, _ = packed
    before = sorted(p.name for p in out.rglob("*"))
    make_files(tmp_path / "again", {"a.whl": 10}, 6)
    r = run("pack", tmp_path / "again", "--out", out, "--part-size", "256K")
    assert r.returncode == 2 and str(out) in r.stderr
    assert sorted(p.name for p in out.rglob("*")) == before


def test_assembled_file_with_other_content_is_not_overwritten(packed, tmp_path):
    out, _, _ = packed
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "c.whl").write_bytes(b"something else")
    r = run("assemble", out / "part-01", "--out", wheels)
    assert r.returncode == 2 and "c.whl" in r.stderr
    assert sorted(p.name for p in wheels.iterdir()) == ["c.whl"]


needs_pip = pytest.mark.skipif(
    importlib.util.find_spec("pip") is None,
    reason="pip is not installed in this Python (the dev extra has it)",
)


def make_wheel(folder: Path, name: str, version: str, platform: str = "any", requires: str = "") -> Path:
    """A minimal pure-Python wheel whose module holds its version (and requires ``requires``)."""
    import base64
    import zipfile

    info = f"{name}-{version}.dist-info"
    depends = f"Requires-Dist: {requires}\n" if requires else ""
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{depends}",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-{platform}.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def assembled_core(tmp_path: Path) -> Path:
    """``tmp_path/wheels``: the ``core`` group of ``tmp_path/src/<group>/`` packed and assembled
    (the other groups are packed, not assembled)."""
    r = run("pack", *sorted((tmp_path / "src").iterdir()), "--out", tmp_path / "house")
    assert r.returncode == 0, r.stderr
    r = run("assemble", tmp_path / "house" / "part-01", "--out", tmp_path / "wheels")
    assert r.returncode == 0, r.stderr
    return tmp_path / "wheels"


@needs_pip
def test_install_from_assembled_parts_without_an_index(tmp_path):
    make_wheel(tmp_path / "src" / "core", "whtest_alpha", "1.2.3")
    make_wheel(tmp_path / "src" / "core", "whtest_beta", "0.4")
    assembled_core(tmp_path)
    site = tmp_path / "site"
    r = run("install", tmp_path / "wheels", "--target", site)
    assert r.returncode == 0, r.stderr
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import whtest_alpha, whtest_beta; print(whtest_alpha.VERSION, whtest_beta.VERSION)",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert probe.stdout.split() == ["1.2.3", "0.4"], probe.stderr


@needs_pip
def test_install_refuses_a_damaged_wheel_and_a_newer_glibc(tmp_path):
    make_wheel(tmp_path / "src" / "core", "whtest_gamma", "1.0", platform="manylinux_2_999_x86_64")
    assembled_core(tmp_path)
    r = run("install", tmp_path / "wheels", "--target", tmp_path / "site")
    assert r.returncode == 2 and "glibc 2.999" in r.stderr and r.stderr.count("\n") == 1
    wheel = next((tmp_path / "wheels").glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-1])
    r = run("install", tmp_path / "wheels", "--target", tmp_path / "site")
    assert r.returncode == 2 and wheel.name in r.stderr and "damaged" in r.stderr
    assert not (tmp_path / "site").exists()


@pytest.fixture
def traced_site(tmp_path):
    """Three installed test packages; the traced program imports two, one in a subprocess that
    leaves through os._exit (as launchers and forked workers do)."""
    for name in ("whtest_used", "whtest_child", "whtest_idle"):
        make_wheel(tmp_path / "src" / "core", name, "1.0")
    site = tmp_path / "site"
    assert run("install", assembled_core(tmp_path), "--target", site).returncode == 0
    program = (
        "import os, subprocess, sys, whtest_used; "
        "sys.exit(subprocess.run([sys.executable, '-c', 'import os, whtest_child; os._exit(0)']).returncode)"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    return site, [sys.executable, "-c", program], env


@needs_pip
def test_trace_records_what_every_process_imported_and_nothing_else(traced_site, tmp_path):
    _, program, env = traced_site
    out = tmp_path / "trace.json"
    r = run("trace", out, "--", *program, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    trace = json.loads(out.read_text())
    used = trace["distributions"]
    assert used.get("whtest-used") == "1.0" and used.get("whtest-child") == "1.0"
    assert "whtest-idle" not in used
    (run_,) = trace["runs"]
    assert len(run_["processes"]) == 2
    by_process = sorted(p["distributions"] for p in run_["processes"])
    assert ["whtest-child"] in [[n for n in d if n.startswith("whtest")] for d in by_process]
    # a second workload merges into the same file with --add, and only with it
    r = run("trace", out, "--", sys.executable, "-c", "import whtest_idle", env=env, timeout=120)
    assert r.returncode == 2 and "--add" in r.stderr and r.stderr.count("\n") == 1
    r = run("trace", out, "--add", "--", sys.executable, "-c", "import whtest_idle", env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    trace = json.loads(out.read_text())
    assert {"whtest-used", "whtest-child", "whtest-idle"} <= set(trace["distributions"])
    assert len(trace["runs"]) == 2


@needs_pip
def test_trace_of_a_failing_command_writes_nothing(traced_site, tmp_path):
    _, _, env = traced_site
    out = tmp_path / "trace.json"
    r = run(
        "trace",
        out,
        "--",
        sys.executable,
        "-c",
        "import whtest_used; raise SystemExit(3)",
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and "exited with 3" in r.stderr and not out.exists()
    r = run("trace", out, env=env, timeout=120)
    assert r.returncode == 2 and "no command" in r.stderr and not out.exists()


def load_script():
    spec = importlib.util.spec_from_file_location("wheelhouse_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_isaaclab_packages_split_by_the_runtime_trace(tmp_path):
    wh = load_script()
    travel = [{"name": n, "version": "1"} for n in ("omegaconf", "warp-lang", "open3d", "isaaclab")]
    members = wh.group_members(travel, {"omegaconf"}, frozenset({"warp-lang", "isaaclab", "numpy"}))
    names = {g: [i["name"] for i in items] for g, items in members.items()}
    assert names == {
        "core": ["omegaconf"],
        "isaaclab": ["warp-lang", "isaaclab"],
        "isaaclab-rest": ["open3d"],
    }
    assert list(wh.group_members(travel, {"omegaconf"}, None)) == ["core"]
    # the committed trace names what the Isaac runs need, and not what they never import
    runtime, commands = wh.read_runtime(wh.RUNTIME_TRACE)
    assert {"isaaclab", "warp-lang", "newton", "rsl-rl-lib", "rl-games"} <= runtime
    assert "open3d" not in runtime and commands
    bad = tmp_path / "bad.json"
    bad.write_text('{"distributions": {}, "runs": []}')
    with pytest.raises(wh.WheelhouseError, match="names no distribution"):
        wh.read_runtime(bad)


@needs_pip
def test_install_sums_up_requirements_of_a_group_left_out(tmp_path):
    """Only the core and used groups assembled: pip check's complaints about packages of the group
    left out are one summary line naming that group; any other problem is still listed."""
    make_wheel(tmp_path / "src" / "core", "whtest_main", "1.0", requires="whtest_extra")
    make_wheel(tmp_path / "src" / "core", "whtest_other", "1.0", requires="whtest_nowhere")
    make_wheel(tmp_path / "src" / "rest", "whtest_extra", "1.0")
    assembled_core(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    r = subprocess.run(
        [str(venv / "bin" / "python"), str(SCRIPT), "install", str(tmp_path / "wheels")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1"},
    )
    assert r.returncode == 0, r.stderr
    assert "1 requirement(s) not installed belong to group rest" in r.stderr and "whtest-extra" in r.stderr
    assert "whtest-other 1.0 requires whtest-nowhere" in r.stderr.replace("_", "-").lower()
    assert "1 other problem(s)" in r.stderr


def test_have_file_takes_pip_freeze_output(tmp_path):
    """--have names what the target already has; the target's ``pip freeze`` is such a file."""
    wh = load_script()
    have = tmp_path / "freeze.txt"
    have.write_text(
        "# the target\nNumPy==2.1.0\nfarama_notifications==0.0.4\n"
        "-e git+https://example.org/x.git@abc#egg=x\nscipy @ file:///wheels/scipy.whl\n\n"
    )
    names = wh._read_names(have)
    assert names == {"numpy", "farama-notifications", "scipy"}
    assert not wh.carried("numpy", names) and wh.carried("omegaconf", names)
    assert not wh.carried("torch", frozenset()) and not wh.carried("nvidia-cublas", frozenset())
