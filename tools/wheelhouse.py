"""Carry this project's Python dependencies as wheels to a machine with no network.

    python3.12 tools/wheelhouse.py build .wheelhouse --isaaclab       # here: resolve and download
    python3 .wheelhouse/part-01/wheelhouse.py assemble .wheelhouse/part-* --out wheels   # there: check sha256
    python3 .wheelhouse/part-01/wheelhouse.py install wheels          # there: pip install --no-index

The target is a Linux x86-64 machine with CPython 3.12 and PyTorch already installed (PyTorch and
NVIDIA's CUDA libraries are never carried). ``build`` resolves the project's dependencies
(``pyproject.toml``; with ``--isaaclab`` also ``exts/meow_isaac``'s and Isaac Lab 3.0's) in a clean
resolution of pip, leaves out what the target already has (``--have``: its ``pip freeze``),
downloads wheels for CPython 3.12 on manylinux x86-64 (a pure-Python package published only as an
sdist is built into a ``py3-none-any`` wheel here) and writes one folder per group, ``part-01/``,
``part-02/``, ..., each holding a copy of ``manifest.json`` (names, sizes and sha256 of every file)
and of this script. The ``core`` group (what ``meow`` needs: omegaconf, gymnasium, ...) comes first
and alone; the ``isaaclab`` groups follow. With ``--part-size SIZE`` every wheel is cut into
``NAME.partNNN`` files and every folder holds at most SIZE bytes, for a medium or a transfer that
limits the size of a file or a copy. ``assemble`` joins the parts of every group it is given a part
of, checks each part and each file against the manifest and stops at the first missing or damaged
one; ``install`` installs the assembled wheels with ``pip --no-index --no-deps`` and runs ``pip
check``. ``pack`` does the same for a folder of files you already have (one group per folder).

Standard library only: the same file runs here (Python 3.11+) and on the target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "manifest.json"
FORMAT = 1
DEFAULT_TORCH = "2.11.0"
"""The target's PyTorch: pinned during resolution so every other package is chosen to work with it."""
ISAACLAB_SPEC = "isaaclab==3.0.*"
"""The Isaac Lab release the extension is tested with (``scripts/setup.sh`` installs the same)."""
RUNTIME_TRACE = ROOT / "tools" / "isaaclab_runtime.json"
"""What training and benchmarking the Isaac tasks really imported (``trace``; docs/GPU.md): with
``--isaaclab`` the Isaac Lab packages named there form the ``isaaclab`` group, the rest of what Isaac
Lab declares (open3d, ...) the ``isaaclab-rest`` group, which training the Isaac tasks does not need."""
VIDEO_ONLY = frozenset({"moviepy"})
"""Requirements that only record videos (and need sdists or ffmpeg); left out of the wheelhouse."""
MAX_GLIBC_MINOR = 35
"""Newest manylinux_2_N accepted. Isaac Lab 3.0 needs 2.35 (omniverseclient and open3d publish only
manylinux_2_35 wheels); the core group needs no more than 2.28, as PyTorch 2.11 itself."""
_LEGACY_MANYLINUX = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}


class WheelhouseError(Exception):
    """A problem reported as one ``error:`` line and exit status 2."""


def log(message: str) -> None:
    """Progress on stderr, so stdout stays free for data."""
    print(f"[wheelhouse] {message}", file=sys.stderr, flush=True)


def normalize(name: str) -> str:
    """PEP 503 form of a distribution name: ``Farama_Notifications`` -> ``farama-notifications``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized distribution name at the start of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise WheelhouseError(f"requirement {requirement!r} has no distribution name")
    return normalize(match.group(1))


def wheel_distribution(filename: str) -> str:
    """The normalized distribution name of a wheel file: ``warp_lang-1.17.0-...whl`` -> ``warp-lang``."""
    return normalize(filename.split("-")[0])


def parse_size(text: str | None) -> int | None:
    """Bytes of ``123``, ``64K``, ``60M``, ``60MiB`` or ``1G`` (binary units); None stays None (no split)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if match is None or int(match.group(1)) == 0:
        raise WheelhouseError(
            f"--part-size {text!r} is invalid; valid: a positive byte count, optionally with K, M or G "
            "(binary units), e.g. 60M"
        )
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")


def human(size: float) -> str:
    """``61.9 MiB``-style size for progress lines and tables."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_glibc_minor(filename: str) -> int:
    """Least glibc 2.N a wheel runs with, from its platform tags (0: pure Python or not Linux)."""
    platform = filename.removesuffix(".whl").split("-")[-1]
    minors = []
    for tag in platform.split("."):
        match = re.fullmatch(r"manylinux_2_(\d+)_\w+", tag)
        legacy = _LEGACY_MANYLINUX.get(tag.split("_")[0])
        if match:
            minors.append(int(match.group(1)))
        elif legacy is not None:
            minors.append(legacy)
        elif not tag.startswith("linux"):
            minors.append(0)
    return min(minors, default=0)


def this_glibc_minor() -> int | None:
    """glibc 2.N of this machine, or None when it is not a glibc system."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return None
    match = re.fullmatch(r"glibc 2\.(\d+).*", version)
    return int(match.group(1)) if match else None


# ----------------------------------------------------------------------------------------------
# pack: files -> parts in folders of bounded size, with a manifest
# ----------------------------------------------------------------------------------------------


def _plan(
    groups: dict[str, list[Path]], chunk: int, capacity: int
) -> tuple[list[dict], dict[str, list[str]]]:
    """File entries with their parts and the folder of each part, and each group's folders.

    Every group starts a new folder, so the small ``core`` group can travel without the rest;
    inside a group the parts are placed first-fit in decreasing size, which keeps the number of
    folders near the minimum.
    """
    files: list[dict] = []
    group_folders: dict[str, list[str]] = {}
    folder_count = 0
    for group, paths in groups.items():
        entries = []
        for path in sorted(paths, key=lambda p: p.name):
            size = path.stat().st_size
            n_parts = max(1, -(-size // chunk))
            parts = [
                {"name": f"{path.name}.part{i + 1:03d}", "size": min(chunk, size - i * chunk)}
                for i in range(n_parts)
            ]
            entries.append({"name": path.name, "group": group, "size": size, "parts": parts, "_path": path})
        bins: list[int] = []  # bytes used in each folder of this group
        all_parts = [part for entry in entries for part in entry["parts"]]
        for part in sorted(all_parts, key=lambda p: (-p["size"], p["name"])):
            for index, used in enumerate(bins):
                if used + part["size"] <= capacity:
                    bins[index] += part["size"]
                    break
            else:
                index = len(bins)
                bins.append(part["size"])
            part["folder"] = f"part-{folder_count + index + 1:02d}"
        group_folders[group] = [f"part-{folder_count + i + 1:02d}" for i in range(len(bins))]
        folder_count += len(bins)
        files.extend(entries)
    return files, group_folders


def pack(groups: dict[str, list[Path]], out: Path, part_size: int | None, meta: dict | None = None) -> dict:
    """Places the files of each group under ``out/part-NN/`` and returns the manifest.

    Each folder holds its parts, ``manifest.json`` and a copy of this script. With ``part_size``
    every file is cut into parts and every folder is at most that many bytes in total; with None
    each group fills one folder and every file stays whole (one part). ``out`` must not exist yet;
    it appears only when complete.
    """
    if out.exists():
        raise WheelhouseError(f"{out} already exists; valid: a path that does not exist yet")
    names = [p.name for paths in groups.values() for p in paths]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise WheelhouseError(f"file name {duplicates[0]!r} appears in more than one group")
    script_size = Path(__file__).stat().st_size
    # The manifest's own size depends on the plan; grow the space kept for it until it fits.
    reserve = 4096
    while True:
        capacity = sys.maxsize if part_size is None else part_size - script_size - reserve
        if capacity < 1:
            raise WheelhouseError(
                f"--part-size {part_size} is too small: each folder also holds manifest.json and "
                f"wheelhouse.py ({script_size + reserve} bytes); valid: more than that"
            )
        files, group_folders = _plan(groups, capacity, capacity)
        manifest = {
            "format": FORMAT,
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "part_size": part_size,
            **(meta or {}),
            "groups": group_folders,
            "files": [{k: v for k, v in f.items() if k != "_path"} for f in files],
        }
        text = json.dumps(manifest, indent=1)
        # sha256 strings are added below: 64 characters + key per part and file.
        n_hashes = len(files) + sum(len(f["parts"]) for f in files)
        if part_size is None or len(text) + n_hashes * 90 + 200 <= reserve:
            break
        reserve = len(text) + n_hashes * 90 + 4096
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for folder in (f for folders in group_folders.values() for f in folders):
            (tmp / folder).mkdir()
        for entry in files:
            whole = hashlib.sha256()
            with entry["_path"].open("rb") as src:
                for part in entry["parts"]:
                    data = src.read(part["size"])
                    whole.update(data)
                    part["sha256"] = hashlib.sha256(data).hexdigest()
                    (tmp / part["folder"] / part["name"]).write_bytes(data)
            entry["sha256"] = whole.hexdigest()
            log(f"split {entry['name']} ({human(entry['size'])}) into {len(entry['parts'])} part(s)")
        manifest["files"] = [{k: v for k, v in f.items() if k != "_path"} for f in files]
        manifest["build"] = hashlib.sha256(
            json.dumps([(f["name"], f["sha256"]) for f in manifest["files"]]).encode()
        ).hexdigest()[:16]
        text = json.dumps(manifest, indent=1) + "\n"
        for folders in group_folders.values():
            for folder in folders:
                (tmp / folder / MANIFEST).write_text(text)
                shutil.copyfile(__file__, tmp / folder / "wheelhouse.py")
                total = sum(p.stat().st_size for p in (tmp / folder).iterdir())
                # the reserve above makes this unreachable; keep the promise checked
                if part_size is not None and total > part_size:
                    raise WheelhouseError(f"internal: folder {folder} is {total} bytes > {part_size}")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# ----------------------------------------------------------------------------------------------
# assemble: part folders -> whole files, checked against the manifest
# ----------------------------------------------------------------------------------------------


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise WheelhouseError(f"{folder} is not a folder; valid: part folders written by build or pack")
    if not path.is_file():
        raise WheelhouseError(
            f"{folder} holds no {MANIFEST}; valid: part folders written by 'build' or 'pack'"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WheelhouseError(f"{path} is damaged: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "build" not in manifest:
        raise WheelhouseError(f"{path} is not a wheelhouse manifest of format {FORMAT}")
    return manifest


def assemble(sources: Sequence[Path], out: Path) -> dict:
    """Joins the parts found in ``sources`` into whole files in ``out`` and returns the manifest.

    Every group with at least one part among the sources must be complete; each part and each
    joined file must match the manifest's size and sha256. Everything is checked before the
    first file is written; a file already in ``out`` with the right sha256 is kept.
    """
    manifests = [_read_manifest(src) for src in sources]
    manifest = manifests[0]
    for src, other in zip(sources, manifests, strict=True):
        if other["build"] != manifest["build"]:
            raise WheelhouseError(
                f"{src} belongs to build {other['build']}, {sources[0]} to build {manifest['build']}; "
                "valid: folders of one build"
            )
    found: dict[str, Path] = {}
    for src in sources:
        for path in src.iterdir():
            if re.search(r"\.part\d{3}$", path.name):
                found.setdefault(path.name, path)
    wanted_groups = [
        g
        for g in manifest["groups"]
        if any(p["name"] in found for f in manifest["files"] if f["group"] == g for p in f["parts"])
    ]
    if not wanted_groups:
        raise WheelhouseError(f"no parts of build {manifest['build']} in {', '.join(map(str, sources))}")
    files = [f for f in manifest["files"] if f["group"] in wanted_groups]
    for entry in files:
        for part in entry["parts"]:
            path = found.get(part["name"])
            if path is None:
                raise WheelhouseError(
                    f"missing part {part['name']} (folder {part['folder']}, group {entry['group']}); "
                    "valid: pass every folder of the groups to assemble"
                )
            if path.stat().st_size != part["size"]:
                raise WheelhouseError(
                    f"damaged part {path}: {path.stat().st_size} bytes, the manifest says {part['size']}"
                )
            if sha256_file(path) != part["sha256"]:
                raise WheelhouseError(f"damaged part {path}: its sha256 differs from the manifest's")
    existing = out / MANIFEST
    if existing.is_file() and _read_manifest(out)["build"] != manifest["build"]:
        raise WheelhouseError(f"{out} holds files of another build; valid: an empty or new folder")
    keep = set()
    for entry in files:
        target = out / entry["name"]
        if target.exists():
            if not target.is_file() or sha256_file(target) != entry["sha256"]:
                raise WheelhouseError(f"{target} exists with other content; valid: an empty or new folder")
            keep.add(entry["name"])
    out.mkdir(parents=True, exist_ok=True)
    for entry in files:
        if entry["name"] in keep:
            log(f"{entry['name']} already assembled")
            continue
        tmp = out / f".{entry['name']}.tmp"
        digest = hashlib.sha256()
        with tmp.open("wb") as dst:
            for part in entry["parts"]:
                data = found[part["name"]].read_bytes()
                digest.update(data)
                dst.write(data)
        if digest.hexdigest() != entry["sha256"]:
            tmp.unlink()
            raise WheelhouseError(f"joined {entry['name']} differs from the manifest's sha256")
        os.replace(tmp, out / entry["name"])
        log(f"assembled {entry['name']} ({human(entry['size'])}) from {len(entry['parts'])} part(s)")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"{len(files)} file(s) of group(s) {', '.join(wanted_groups)} in {out}")
    return manifest


# ----------------------------------------------------------------------------------------------
# install: assembled wheels -> the running Python (or a --target folder), offline
# ----------------------------------------------------------------------------------------------


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def install(folder: Path, target: Path | None) -> int:
    """``pip install --no-index --no-deps`` of the folder's wheels into this Python or ``target``."""
    if not folder.is_dir():
        raise WheelhouseError(f"{folder} is not a folder; valid: the --out folder of 'assemble'")
    manifest = _read_manifest(folder) if (folder / MANIFEST).is_file() else None
    if manifest is None:
        wheels = sorted(folder.glob("*.whl"))
    else:
        present = [f for f in manifest["files"] if (folder / f["name"]).is_file()]
        groups = sorted({f["group"] for f in present}, key=list(manifest["groups"]).index)
        wheels = []
        for entry in manifest["files"]:
            if entry["group"] not in groups:
                continue
            path = folder / entry["name"]
            if not path.is_file():
                raise WheelhouseError(f"{path} is missing (group {entry['group']}); run 'assemble' again")
            if sha256_file(path) != entry["sha256"]:
                raise WheelhouseError(f"{path} is damaged: its sha256 differs from the manifest's")
            wheels.append(path)
        expected = {n for g in groups for n in manifest.get("on_target", {}).get(g, {})}
        missing = sorted(n for n in expected if not _installed(n))
        if missing:
            log(
                f"note: {len(missing)} package(s) the wheels were resolved with are neither installed "
                f"here nor carried: {', '.join(missing)}"
            )
    wheels = [w for w in wheels if w.name.endswith(".whl")]
    if not wheels:
        raise WheelhouseError(f"{folder} holds no wheels; valid: the --out folder of 'assemble'")
    needs = max((wheel_glibc_minor(w.name) for w in wheels), default=0)
    have = this_glibc_minor()
    if have is not None and have < needs:
        raise WheelhouseError(
            f"these wheels need glibc 2.{needs} or newer and this machine has 2.{have}; valid: "
            f"a folder built with --max-glibc {have}, or only the groups that fit"
        )
    log(f"installing {len(wheels)} wheel(s) from {folder} into {target or sys.prefix}")
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check"]
    command += ["--no-index", "--no-deps", "--find-links", str(folder)]
    if target is not None:
        command += ["--target", str(target)]
    result = subprocess.run([*command, *map(str, wheels)])
    if result.returncode != 0:
        raise WheelhouseError(f"pip install exited with {result.returncode}; see pip's output above")
    if target is None:
        check = subprocess.run(
            [sys.executable, "-m", "pip", "check", "--isolated", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
        )
        # pip check exits 0 with "No broken requirements found." when all is well.
        lines = [line for line in check.stdout.splitlines() if line.strip()] if check.returncode else []
        mine = {wheel_distribution(w.name) for w in wheels}
        relevant = [line for line in lines if normalize(line.split(" ")[0]) in mine]
        # Requirements carried by a group that was not assembled (isaaclab-rest: what the traced
        # Isaac runs never import) are missing on purpose; they are summed up, not listed.
        not_here = {
            wheel_distribution(entry["name"]): entry["group"]
            for entry in (manifest["files"] if manifest is not None else [])
            if entry["group"] not in groups
        }
        skipped: dict[str, set[str]] = {}
        problems = 0
        for line in relevant:
            match = re.fullmatch(r"\S+ \S+ requires (\S+), which is not installed\.", line.strip())
            group = not_here.get(normalize(match.group(1))) if match else None
            if group is not None:
                skipped.setdefault(group, set()).add(normalize(match.group(1)))
            else:
                problems += 1
                log(f"pip check: {line}")
        for group, names in skipped.items():
            log(
                f"pip check: {len(names)} requirement(s) not installed belong to group {group}, not "
                f"assembled here (assemble its folders too to install them): {', '.join(sorted(names))}"
            )
        log(f"pip check: {problems} other problem(s) of installed wheels ({len(lines)} lines in this Python)")
    log("done")
    return 0


# ----------------------------------------------------------------------------------------------
# trace: which installed distributions a command really uses
# ----------------------------------------------------------------------------------------------

TRACE_ENV = "WHEELHOUSE_TRACE_DIR"

# Written as sitecustomize.py into a folder put first on PYTHONPATH, so every Python process the
# traced command starts (subprocesses included) records, when it ends, the distributions owning
# the files of the modules it imported after start-up and the shared libraries mapped into it (a
# library loaded with ctypes from another package's folder counts for that package). Modules that
# the start-up loaded through installed packages' .pth files are left out: they are there because
# the package is installed, not because the program needs it. os._exit is wrapped, since
# launchers and forked workers leave through it without running atexit.
_SITECUSTOMIZE = r"""
import atexit, json, os, sys

_out = os.environ.get("@TRACE_ENV@")
_done = []
_startup = set(sys.modules)  # site and the .pth files: not counted


def _wheelhouse_trace_dump():
    if _done or not _out:
        return
    _done.append(True)
    try:
        paths = set()
        for key, module in list(sys.modules.items()):
            path = None if key in _startup else getattr(module, "__file__", None)
            if isinstance(path, str):
                paths.add(os.path.abspath(path))
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    fields = line.split(None, 5)
                    if len(fields) == 6 and fields[5].startswith("/"):
                        paths.add(fields[5].strip())
        except OSError:
            pass
        from importlib import metadata

        owner = {}
        for dist in metadata.distributions():
            name, version = dist.metadata["Name"], dist.version
            for file in dist.files or ():
                owner[os.path.abspath(str(dist.locate_file(file)))] = (name, version)
        used = {}
        for path in paths:
            hit = owner.get(path) or owner.get(os.path.realpath(path))
            if hit:
                used[hit[0]] = hit[1]
        with open(os.path.join(_out, "%d.json" % os.getpid()), "w") as f:
            json.dump({"argv": sys.argv, "distributions": used}, f)
    except Exception as err:  # never break the traced program
        sys.stderr.write("[wheelhouse trace] %s: %s\n" % (type(err).__name__, err))


atexit.register(_wheelhouse_trace_dump)
_real_exit = os._exit


def _exit(code):
    _wheelhouse_trace_dump()
    _real_exit(code)


os._exit = _exit

# Run the sitecustomize this one shadows, if there is one.
def _chain():
    import importlib.machinery, importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_chain()
""".replace("@TRACE_ENV@", TRACE_ENV)


def trace(out: Path, command: list[str], add: bool) -> dict:
    """Runs ``command`` with every Python process it starts recording what it used; writes ``out``.

    ``out`` holds the union over processes of the distributions (name: version) that own an
    imported module's file or a mapped shared library, and per process its argv and its own set.
    With ``add`` the new trace is merged into an existing ``out`` (several workloads, one file).
    """
    if not command:
        raise WheelhouseError("no command to trace; valid: trace OUT.json -- COMMAND [ARGS...]")
    previous = None
    if out.exists():
        if not add:
            raise WheelhouseError(f"{out} already exists; valid: a new path, or --add to merge into it")
        try:
            previous = json.loads(out.read_text())
        except (OSError, ValueError) as err:
            raise WheelhouseError(f"{out} is not a trace written by 'trace' ({err})") from err
        if not (
            isinstance(previous, dict)
            and isinstance(previous.get("distributions"), dict)
            and isinstance(previous.get("runs"), list)
        ):
            raise WheelhouseError(f"{out} is not a trace written by 'trace'; valid: a new path, or a trace")
    elif not out.parent.is_dir():
        raise WheelhouseError(f"{out.parent} is not a folder; valid: OUT inside an existing folder")
    with tempfile.TemporaryDirectory(prefix="wheelhouse-trace-") as tmp_name:
        tmp = Path(tmp_name)
        hook, records = tmp / "hook", tmp / "records"
        hook.mkdir()
        records.mkdir()
        (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH", "")) if p)
        env[TRACE_ENV] = str(records)
        log(f"tracing: {' '.join(command)}")
        start = dt.datetime.now(dt.timezone.utc)
        try:
            code = subprocess.run(command, env=env).returncode
        except OSError as err:
            raise WheelhouseError(f"cannot run {command[0]!r}: {err.strerror}") from err
        if code != 0:
            raise WheelhouseError(f"the traced command exited with {code}; nothing written to {out}")
        processes = [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]
    if not processes:
        raise WheelhouseError(
            f"no Python process of {command[0]!r} was traced; valid: a command that runs Python "
            "(PYTHONPATH must reach it)"
        )
    here = os.getcwd() + os.sep

    def shown(arg: str) -> str:
        return arg[len(here) :] if arg.startswith(here) else arg

    used: dict[str, str] = {}
    for process in processes:
        for name, version in process["distributions"].items():
            used[normalize(name)] = version
    run = {
        "command": [shown(a) for a in command],
        "started": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round((dt.datetime.now(dt.timezone.utc) - start).total_seconds(), 1),
        "processes": [
            {
                "argv": [shown(a) for a in p["argv"]],
                "distributions": sorted(map(normalize, p["distributions"])),
            }
            for p in processes
        ],
    }
    runs = [*(previous["runs"] if previous else []), run]
    merged = dict(previous["distributions"]) if previous else {}
    merged.update(used)
    result = {"format": FORMAT, "distributions": dict(sorted(merged.items())), "runs": runs}
    out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"{len(processes)} Python process(es) used {len(used)} distribution(s); {len(merged)} in {out}")
    return result


# ----------------------------------------------------------------------------------------------
# build: resolve, download and pack the project's dependencies for the target
# ----------------------------------------------------------------------------------------------


def platform_tags(max_glibc_minor: int = MAX_GLIBC_MINOR) -> list[str]:
    """pip ``--platform`` values for manylinux x86-64 up to glibc 2.``max_glibc_minor``, and ``any``.

    pip does not expand ``manylinux_2_28`` to older glibc versions itself, so every one is named.
    """
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(max_glibc_minor, 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "any"]


def project_requirements(isaaclab: bool) -> dict[str, list[str]]:
    """``core``: meow's dependencies; ``isaaclab``: what ``exts/meow_isaac`` adds (without videos)."""
    import tomllib

    meow = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = [r for r in meow["dependencies"] if requirement_name(r) != "torch"]
    groups = {"core": core}
    if isaaclab:
        ext = tomllib.loads((ROOT / "exts" / "meow_isaac" / "pyproject.toml").read_text())["project"]
        extra: list[str] = []
        for requirement in ext["dependencies"]:
            name = requirement_name(requirement)
            if name == "meow":
                # meow[extra,...]: meow itself is the checkout; its extras' requirements are carried.
                extras = re.search(r"\[([^\]]*)\]", requirement)
                for key in extras.group(1).split(",") if extras else []:
                    extra += meow["optional-dependencies"][key.strip()]
            elif name not in VIDEO_ONLY:
                extra.append(requirement)
        groups["isaaclab"] = extra
    return groups


def _pip(python: str, args: list[str], what: str) -> None:
    """Runs pip quietly; on failure raises with pip's own error line."""
    result = subprocess.run(
        [python, "-m", "pip", *args, "--disable-pip-version-check"], capture_output=True, text=True
    )
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:] or ["(no output)"]
        raise WheelhouseError(f"{what} failed: {errors[0]}")


def resolve(python: str, requirements: list[str], constraints: list[str], work: Path) -> list[dict]:
    """pip's resolution of ``requirements`` as for an empty Python: ``[{name, version, url}]``."""
    report, cfile = work / "report.json", work / "constraints.txt"
    cfile.write_text("".join(f"{c}\n" for c in constraints))
    args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
    _pip(python, [*args, "-c", str(cfile), *requirements], "resolving the dependencies")
    items = json.loads(report.read_text())["install"]
    return [
        {
            "name": normalize(item["metadata"]["name"]),
            "version": item["metadata"]["version"],
            "url": item["download_info"]["url"],
        }
        for item in items
    ]


def carried(name: str, have: frozenset[str]) -> bool:
    """Whether a resolved package travels: not PyTorch, not NVIDIA's, not already on the target."""
    return not (name == "torch" or name.startswith("nvidia-") or name in have)


def download(python: str, items: list[dict], dest: Path, max_glibc_minor: int) -> None:
    """Wheels of ``items`` for CPython 3.12 manylinux x86-64; sdist-only pure-Python ones built here."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = [i for i in items if i["url"].endswith(".whl")]
    sdists = [i for i in items if not i["url"].endswith(".whl")]
    if wheels:
        log(f"downloading {len(wheels)} wheel(s) into {dest.name}/")
        args = ["download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(dest)]
        args += ["--python-version", "3.12", "--implementation", "cp"]
        for tag in platform_tags(max_glibc_minor):
            args += ["--platform", tag]
        _pip(python, [*args, *(f"{i['name']}=={i['version']}" for i in wheels)], "pip download")
    for item in sdists:
        spec = f"{item['name']}=={item['version']}"
        log(f"{spec} is published as an sdist only: building its wheel")
        before = set(dest.iterdir())
        _pip(python, ["wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), spec], f"building {spec}")
        built = [p for p in set(dest.iterdir()) - before if p.name.endswith(".whl")]
        if len(built) != 1 or not built[0].name.endswith("-none-any.whl"):
            raise WheelhouseError(
                f"{spec} has no wheel for the target and its sdist does not build a pure-Python "
                f"wheel ({', '.join(p.name for p in built) or 'none'})"
            )


def _read_names(path: Path) -> frozenset[str]:
    """Names from a file of one name a line (``pip freeze``/``pip list`` lines work too)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise WheelhouseError(f"--have {path}: {err.strerror}") from err
    names = set()
    for line in lines:
        line = line.strip()
        if line and not line.startswith(("#", "Package", "-")):  # comments, headers, -e and options
            names.add(requirement_name(line))
    return frozenset(names)


def group_members(
    travel: list[dict], core_names: set[str], runtime: frozenset[str] | None
) -> dict[str, list[dict]]:
    """The carried packages per group: ``core`` (what meow needs); with a ``runtime`` set (Isaac
    Lab), ``isaaclab`` (the others that the traced runs used) and ``isaaclab-rest`` (the rest)."""
    members = {"core": [i for i in travel if i["name"] in core_names]}
    if runtime is not None:
        rest = [i for i in travel if i["name"] not in core_names]
        members["isaaclab"] = [i for i in rest if i["name"] in runtime]
        members["isaaclab-rest"] = [i for i in rest if i["name"] not in runtime]
    return members


def read_runtime(path: Path) -> tuple[frozenset[str], list[list[str]]]:
    """The distribution names of a trace written by ``trace``, and the commands it traced."""
    try:
        data = json.loads(path.read_text())
        names = frozenset(normalize(n) for n in data["distributions"])
        commands = [run["command"] for run in data["runs"]]
    except OSError as err:
        raise WheelhouseError(f"--runtime {path}: {err.strerror}; valid: a file written by 'trace'") from err
    except (ValueError, KeyError, TypeError) as err:
        raise WheelhouseError(f"--runtime {path} is not a trace written by 'trace' ({err!r})") from err
    if not names:
        raise WheelhouseError(f"--runtime {path} names no distribution; valid: a file written by 'trace'")
    return names, commands


def build(args: argparse.Namespace) -> int:
    """The ``build`` command: resolve, download, split into part folders."""
    out = Path(args.dir).resolve()
    part_size = parse_size(args.part_size)
    if out.exists():
        raise WheelhouseError(f"{args.dir} already exists; valid: a path that does not exist yet")
    if not out.parent.is_dir():
        raise WheelhouseError(f"{out.parent} is not a folder; valid: DIR inside an existing folder")
    probe = subprocess.run(
        [
            args.python,
            "-c",
            "import sys, platform; print(sys.version_info[:2] == (3, 12), platform.machine())",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0 or probe.stdout.split() != ["True", "x86_64"]:
        raise WheelhouseError(
            f"--python {args.python} is not CPython 3.12 on x86-64; valid: a python3.12 like the target's, "
            "since pip resolves for the interpreter it runs in"
        )
    have = frozenset() if args.have is None else _read_names(Path(args.have))
    have = frozenset(have - {normalize(n) for n in args.keep})
    groups = project_requirements(args.isaaclab)
    runtime: frozenset[str] | None = None
    runtime_source, runtime_commands = "", []
    if args.isaaclab:
        runtime, runtime_commands = read_runtime(Path(args.runtime))
        runtime_source = os.path.relpath(Path(args.runtime).resolve(), ROOT)
    constraints = [f"torch=={args.torch}"] + ([ISAACLAB_SPEC] if args.isaaclab else [])
    with tempfile.TemporaryDirectory(prefix=".wheelhouse-", dir=out.parent) as tmp_name:
        tmp = Path(tmp_name)
        # torch is resolved too (and left out), so every other version is one that the target's
        # torch accepts (e.g. torch 2.11.0 wants setuptools<82).
        torch = f"torch=={args.torch}"
        everything = [torch, *(r for reqs in groups.values() for r in reqs)]
        log(f"resolving {len(everything)} requirement(s) with {args.python} (a few minutes)")
        full = resolve(args.python, everything, constraints, tmp)
        pins = [f"{i['name']}=={i['version']}" for i in full]
        if args.isaaclab:
            # The core group alone, held to the versions of the whole resolution.
            core_names = {
                i["name"] for i in resolve(args.python, [torch, *groups["core"]], constraints + pins, tmp)
            }
        else:
            core_names = {i["name"] for i in full}
        travel = [i for i in full if carried(i["name"], have)]
        # Per group, the resolved packages left to the target, for 'install' to look for.
        on_target = {
            group: {
                i["name"]: i["version"]
                for i in full
                if not carried(i["name"], have) and (i["name"] in core_names) == (group == "core")
            }
            for group in groups
        }
        members = group_members(travel, core_names, runtime)
        if args.isaaclab:
            on_target["isaaclab-rest"] = {}
        wheel_groups: dict[str, list[Path]] = {}
        for group, items in members.items():
            if items:
                download(args.python, items, tmp / group, args.max_glibc)
                wheel_groups[group] = sorted((tmp / group).glob("*.whl"))
        meta = {
            "python": "3.12",
            "platforms": platform_tags(args.max_glibc),
            "requirements": groups,
            "constraints": constraints,
            "versions": {i["name"]: i["version"] for i in travel},
            "on_target": on_target,
        }
        if args.isaaclab:
            meta["runtime"] = {"trace": runtime_source, "commands": runtime_commands}
        log("one folder per group" if part_size is None else f"splitting into folders of {human(part_size)}")
        manifest = pack(wheel_groups, out, part_size, meta)
    print_summary(manifest)
    return 0


def print_summary(manifest: dict) -> None:
    """Sizes per group, per folder and the largest files, on stdout."""
    files = manifest["files"]
    for group, folders in manifest["groups"].items():
        mine = [f for f in files if f["group"] == group]
        size = sum(f["size"] for f in mine)
        glibc = max((wheel_glibc_minor(f["name"]) for f in mine), default=0)
        where = f"folders {folders[0]}..{folders[-1]}" if len(folders) > 1 else f"folder {folders[0]}"
        print(f"group {group}: {len(mine)} file(s), {human(size)} in {where}, needs glibc >= 2.{glibc}")
    print(f"total: {len(files)} file(s), {human(sum(f['size'] for f in files))}")
    for f in sorted(files, key=lambda f: -f["size"])[:10]:
        print(f"  {human(f['size']):>10}  {f['name']}")


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------


PART_SIZE_HELP = (
    "cut files and folders to at most this size, e.g. 500M (default: no split, a folder per group)"
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="resolve, download and split the dependencies into DIR/part-NN/")
    b.add_argument("dir", metavar="DIR", help="output folder (must not exist yet)")
    b.add_argument("--isaaclab", action="store_true", help="also Isaac Lab 3.0 and meow_isaac's needs")
    b.add_argument("--part-size", help=PART_SIZE_HELP)
    b.add_argument("--python", default=sys.executable, help="CPython 3.12 that resolves (default: this one)")
    b.add_argument("--torch", default=DEFAULT_TORCH, help="the target's torch version (default 2.11.0)")
    b.add_argument(
        "--have", help="file of package names the target already has, e.g. its pip freeze (default: none)"
    )
    b.add_argument("--keep", action="append", default=[], metavar="NAME", help="carry NAME even if present")
    b.add_argument(
        "--runtime",
        default=str(RUNTIME_TRACE),
        metavar="FILE",
        help="trace whose packages form the isaaclab group, the others isaaclab-rest "
        "(default tools/isaaclab_runtime.json)",
    )
    b.add_argument(
        "--max-glibc",
        type=int,
        default=MAX_GLIBC_MINOR,
        metavar="N",
        help="newest manylinux_2_N accepted",
    )
    p = commands.add_parser("pack", help="split existing files (one group per folder) into OUT/part-NN/")
    p.add_argument("sources", nargs="+", metavar="SRC", help="folders of files; each is a group")
    p.add_argument("--out", required=True, help="output folder (must not exist yet)")
    p.add_argument("--part-size", help=PART_SIZE_HELP)
    a = commands.add_parser("assemble", help="join part folders into whole files, checking sha256")
    a.add_argument("sources", nargs="+", metavar="SRC", help="part folders (part-01 ...)")
    a.add_argument("--out", required=True, help="folder for the whole files")
    i = commands.add_parser("install", help="pip install --no-index the wheels of an assembled folder")
    i.add_argument("dir", metavar="DIR", help="the --out folder of assemble")
    i.add_argument("--target", help="install into this folder instead of the running Python")
    t = commands.add_parser(
        "trace", help="run a command and record the installed distributions its Python processes use"
    )
    t.add_argument("out", metavar="OUT", help="JSON file to write")
    t.add_argument("--add", action="store_true", help="merge into an existing OUT")
    t.epilog = "usage: trace OUT.json [--add] -- COMMAND [ARGS...]"
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the traced command, options included.
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.cmd = argv[split + 1 :]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "build":
            return build(args)
        if args.command == "pack":
            groups: dict[str, list[Path]] = {}
            for src in map(Path, args.sources):
                if not src.is_dir():
                    raise WheelhouseError(f"{src} is not a folder; valid: folders of files to split")
                if src.name in groups:
                    raise WheelhouseError(f"two sources are named {src.name!r}; valid: distinct folder names")
                groups[src.name] = sorted(p for p in src.iterdir() if p.is_file())
                if not groups[src.name]:
                    raise WheelhouseError(f"{src} holds no files; valid: folders of files to split")
            print_summary(pack(groups, Path(args.out).resolve(), parse_size(args.part_size)))
            return 0
        if args.command == "trace":
            trace(Path(args.out), args.cmd, args.add)
            return 0
        if args.command == "assemble":
            assemble([Path(s) for s in args.sources], Path(args.out))
            return 0
        return install(Path(args.dir), Path(args.target) if args.target else None)
    except WheelhouseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
