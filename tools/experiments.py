"""Run a grid of experiments (tasks x methods x seeds) as background processes, across sessions.

    python tools/experiments.py run experiments/mujoco.yaml             # starts, returns
    python tools/experiments.py run experiments/mujoco.yaml --wait      # blocks, prints progress
    python tools/experiments.py run experiments/mujoco.yaml --methods meow --seeds 2,3   # a part
    python tools/experiments.py status experiments/mujoco.yaml
    python tools/experiments.py stop experiments/mujoco.yaml            # runs save a checkpoint
    python tools/experiments.py report experiments/mujoco.yaml --out docs/results/mujoco

Every run has a fixed directory ``<out>/<name>/<task>/<method>/seed<k>`` (TensorBoard events,
checkpoints, ``train.log``). ``run`` skips the runs that finished (``done.json``, written only
after a run completed its steps), resumes the unfinished ones from their newest checkpoint in
place (``train.py --resume DIR --run_dir DIR``) and starts the others, ``--jobs`` at a time
(default: one per core), each with one torch thread. A scheduler process stays alive while
runs remain (``<out>/<name>/scheduler.pid``, ``scheduler.log``); ``stop`` sends it SIGTERM, which
it passes to the runs: each saves a checkpoint of its current step and exits, and the next
``run`` continues from there. ``--tasks``, ``--methods`` and ``--seeds`` pick a part of the
grid (a screen's second stage, a lead's seeds ahead of the rest): the same runs in the same
directories, so a later ``run`` of the whole grid skips what the part finished. Methods: ``meow``
(MEow through scripts/train.py with the task's published settings) and ``sac``
(Stable-Baselines3 SAC, ``train.py --algo sac``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from meow.utils.cli import ArgumentParser, at_least
from meow_compare.curves import Curve, plot, read_run

ROOT = Path(__file__).resolve().parents[1]
_CHECKPOINT = re.compile(r"model_(\d+)\.pt$")

METHODS = ("meow", "sac")
"""``meow``: MEow (the core runner); ``sac``: SB3 SAC. Both through scripts/train.py."""

EVAL_TAGS = ("eval/return_mean", "eval/stochastic_return_mean")
"""Evaluation returns, deterministic and sampled policy, as MEow and SAC log them."""

VALUE_V0, SOFT_RETURN, VALUE_ERROR = "eval/value_v0", "eval/soft_return", "eval/value_error"
"""MEow's value calibration at its sampled-action evaluations (docs/ALGORITHM.md section 9): the
flow's ``V(s0)``, the soft return the episodes earned, and their difference."""

DONE, PID, LOG, EXIT = "done.json", "run.pid", "train.log", "last_exit.json"
"""Files the scheduler keeps in a run directory: the finished marker, the pid of the running
process, the run's console log, the exit status of its latest attempt."""

CSV_HEADER = ["task", "method", "seed", "env_step", "tag", "value", "seconds"]
"""The columns of a report's ``curves.csv``, which a grid's ``archive`` reads back."""

GRID_KEYS = {
    "name": "the grid's name (default: the file's stem); runs go to <out>/<name>/...",
    "out": "root folder of the runs (default logs/experiments), relative to the current folder",
    "tasks": "task ids, e.g. [Hopper-v5, Walker2d-v5]",
    "methods": f"a list of {', '.join(METHODS)} or of names from variants",
    "seeds": "a list of integers >= 0",
    "steps": "env steps per run",
    "eval_interval": "env steps between evaluations",
    "eval_episodes": "episodes per evaluation (deterministic, and sampled too)",
    "checkpoint_interval": "env steps between checkpoints",
    "log_interval": "env steps between logged training scalars (default 1000)",
    "report_steps": "env steps at which the report's table gives returns (default 25%, 50%, 100%)",
    "overrides": "{method: [key=value, ...]}: config overrides per method, after the grid's",
    "variants": "{name: {method: meow|sac, overrides: [key=value, ...]}}: a method with its own "
    "settings (after the method's overrides), listed in methods by its name",
    "archive": "a folder of an earlier report (its curves.csv), relative to the repository: a run it "
    "holds to the grid's steps counts as done, with those curves (default: none)",
}


class GridError(ValueError):
    """A grid file or argument that cannot be used; the message is the one-line answer."""


@dataclass
class Grid:
    """A validated grid file."""

    path: Path
    name: str
    out: Path
    tasks: list[str]
    methods: list[str]
    seeds: list[int]
    steps: int
    eval_interval: int
    eval_episodes: int
    checkpoint_interval: int
    log_interval: int = 1000
    report_steps: list[int] = field(default_factory=list)
    overrides: dict[str, list[str]] = field(default_factory=dict)
    variants: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    """name -> (method, overrides): e.g. an A/B of one method's settings."""
    selection: list[str] = field(default_factory=list)
    """The ``--tasks/--methods/--seeds`` arguments that narrowed the file's grid to this part (see
    :func:`select`); empty for the whole grid."""
    archive: Path | None = None
    """A committed report folder whose ``curves.csv`` holds runs made on other machines."""
    _archived: dict | None = field(default=None, init=False, repr=False)

    def archived(self) -> dict[tuple[str, str, int], dict]:
        """The archive's curves: ``(task, method, seed) -> {tag: Curve}``, read once; empty without
        an archive or before its first report."""
        if self._archived is None:
            self._archived = read_archive(self.archive / "curves.csv") if self.archive else {}
        return self._archived

    @property
    def root(self) -> Path:
        """``<out>/<name>``: the grid's runs, scheduler pid file and log."""
        return self.out / self.name

    def runs(self) -> list[Run]:
        """Every run, seeds outermost: a partial grid already holds every task and method."""
        return [
            Run(self, task, method, seed)
            for seed in self.seeds
            for task in self.tasks
            for method in self.methods
        ]


@dataclass
class Run:
    """One (task, method, seed) of a grid."""

    grid: Grid
    task: str
    method: str
    seed: int

    @property
    def dir(self) -> Path:
        return self.grid.root / self.task / self.method / f"seed{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.task}/{self.method}/seed{self.seed}"

    @property
    def algo(self) -> str:
        """The method that runs: ``method`` itself, or the method of the variant it names."""
        return self.grid.variants.get(self.method, (self.method, []))[0]

    def overrides(self) -> list[str]:
        """The grid's settings as config overrides, then the method's own, then the variant's."""
        g = self.grid
        return [
            f"seed={self.seed}",
            f"runner.total_steps={g.steps}",
            f"runner.eval_interval={g.eval_interval}",
            f"env.eval_envs={g.eval_episodes}",
            f"runner.checkpoint_interval={g.checkpoint_interval}",
            f"runner.log_interval={g.log_interval}",
            "torch_threads=1",
            *g.overrides.get(self.algo, []),
            *g.variants.get(self.method, ("", []))[1],
        ]

    def checkpoint_steps(self) -> list[int]:
        """Env steps of the checkpoints in the run directory, oldest first."""
        # The pattern of meow.runners.checkpoint, without importing torch for a status line.
        found = (_CHECKPOINT.search(p.name) for p in self.dir.glob("model_*.pt")) if self.dir.is_dir() else ()
        return sorted(int(m.group(1)) for m in found if m)

    def finished_here(self) -> bool:
        """Whether the run completed the grid's steps in its directory (its marker says so)."""
        marker = _read_json(self.dir / DONE)
        return marker is not None and marker.get("steps", -1) >= self.grid.steps

    def done(self) -> bool:
        """Whether the run completed the grid's steps, here or in the archive."""
        return self.finished_here() or self.archived_done()

    def archived_curves(self) -> dict:
        """This run's curves in the grid's archive (``{}`` when it holds none)."""
        return self.grid.archived().get((self.task, self.method, self.seed), {})

    def archived_step(self) -> int:
        """The last env step the archive holds of this run (0: none)."""
        return last_step(self.archived_curves())

    def archived_done(self) -> bool:
        """Whether the archive holds this run to the grid's steps (a run logs its last scalars, and
        its last evaluation, at the step it ends on)."""
        return self.archived_step() >= self.grid.steps

    def pid(self) -> int | None:
        """The pid of this run's training process when it is alive, else None."""
        info = _read_json(self.dir / PID)
        pid = info.get("pid") if info else None
        return pid if isinstance(pid, int) and _alive(pid, str(self.dir), info.get("start")) else None

    def command(self, eval_overrides: list[str]) -> list[str]:
        """scripts/train.py's command line: a new run in the directory, or a resume in place.

        ``eval_overrides``: :func:`eval_overrides`, for both methods."""
        train = [sys.executable, str(ROOT / "scripts" / "train.py")]
        overrides = self.overrides() + eval_overrides
        if self.checkpoint_steps():
            return [*train, "--resume", str(self.dir), "--run_dir", str(self.dir), *overrides]
        return [*train, "--task", self.task, "--algo", self.algo, "--run_dir", str(self.dir), *overrides]


def last_step(curves: dict) -> int:
    """The last env step any of a run's curves (``{tag: Curve}``) reached (0: none)."""
    return int(max((c.steps[-1] for c in curves.values()), default=0))


def read_archive(path: Path) -> dict[tuple[str, str, int], dict]:
    """A report's ``curves.csv`` as ``(task, method, seed) -> {tag: Curve}`` (``{}`` if absent).

    Raises:
        GridError: the file exists but is not a report's CSV.
    """
    import csv

    if not path.is_file():
        return {}
    rows: dict[tuple[str, str, int], dict[str, tuple[list, list, list]]] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        if next(reader, None) != CSV_HEADER:
            raise GridError(
                f"archive {path} is not a report's curves.csv; valid: its header is {','.join(CSV_HEADER)}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                task, method, seed, step, tag, value, seconds = row
                key, point = (task, method, int(seed)), (float(step), float(value), float(seconds))
            except ValueError:
                raise GridError(
                    f"archive {path}, line {line}: {','.join(row)!r} is not a curve point"
                ) from None
            for column, x in zip(rows.setdefault(key, {}).setdefault(tag, ([], [], [])), point, strict=True):
                column.append(x)
    return {
        key: {tag: Curve(path, tag, *columns) for tag, columns in tags.items()} for key, tags in rows.items()
    }


# ------------------------------------------------------------------------------------ the grid file
def load_grid(path: str) -> Grid:
    """Reads and checks a grid file; raises :class:`GridError` with a one-line message."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise GridError(
            f"grid file {path} does not exist; valid: a YAML file such as experiments/mujoco.yaml"
        )
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise GridError(f"grid file {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise GridError(f"grid file {path} must be a mapping of {', '.join(GRID_KEYS)}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], GRID_KEYS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise GridError(f"unknown key '{unknown[0]}' in {path}; {hint}valid: {', '.join(GRID_KEYS)}")
    missing = [k for k in ("tasks", "methods", "seeds", "steps", "eval_interval", "eval_episodes",
                           "checkpoint_interval") if k not in data]  # fmt: skip
    if missing:
        raise GridError(f"{path} lacks '{missing[0]}': {GRID_KEYS[missing[0]]}")

    def integer(key: str, minimum: int, value=None) -> int:
        value = data.get(key) if value is None else value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise GridError(f"{key}: {value!r} in {path} is invalid; valid: an integer >= {minimum}")
        return value

    def str_list(key: str) -> list[str]:
        value = data[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise GridError(f"{key}: {value!r} in {path} is invalid; valid: {GRID_KEYS[key]}")
        if len(set(value)) != len(value):
            raise GridError(f"{key}: {value!r} in {path} names an entry twice")
        return value

    from meow.config import ConfigError, find_task, load_config

    tasks = str_list("tasks")
    for task in tasks:
        try:
            find_task(task)
        except ConfigError as err:
            raise GridError(f"tasks: {' '.join(str(err).split())} (in {path})") from None
    variants_data = data.get("variants") or {}
    if not isinstance(variants_data, dict):
        raise GridError(f"variants: {variants_data!r} in {path} is invalid; valid: {GRID_KEYS['variants']}")
    variants: dict[str, tuple[str, list[str]]] = {}
    for name, spec in variants_data.items():
        items = spec.get("overrides", []) if isinstance(spec, dict) else None
        if (
            not isinstance(name, str)
            or name in METHODS
            or "/" in name
            or not isinstance(spec, dict)
            or set(spec) - {"method", "overrides"}
            or spec.get("method") not in METHODS
            or not isinstance(items, list)
            or not all(isinstance(i, str) for i in items)
        ):
            raise GridError(f"variants.{name}: {spec!r} in {path} is invalid; valid: {GRID_KEYS['variants']}")
        variants[name] = (spec["method"], list(items))
    methods = str_list("methods")
    for method in methods:
        if method not in METHODS and method not in variants:
            valid = ", ".join([*METHODS, *variants])
            raise GridError(f"methods: '{method}' in {path} is unknown; valid: {valid}")
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise GridError(f"seeds: {seeds!r} in {path} is invalid; valid: {GRID_KEYS['seeds']}")
    seeds = [integer("seeds", 0, s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise GridError(f"seeds: {seeds} in {path} names a seed twice")
    steps = integer("steps", 1)
    report_steps = data.get("report_steps", [steps // 4, steps // 2, steps])
    if not isinstance(report_steps, list) or not report_steps:
        raise GridError(f"report_steps: {report_steps!r} in {path} is invalid; valid: a list of env steps")
    report_steps = [integer("report_steps", 1, s) for s in report_steps]
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict) or any(m not in METHODS for m in overrides):
        raise GridError(f"overrides: {overrides!r} in {path} is invalid; valid: {GRID_KEYS['overrides']}")
    for method, items in overrides.items():
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise GridError(f"overrides.{method}: {items!r} in {path} is invalid; valid: a list of key=value")
    name = data.get("name", file.stem)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise GridError(f"name: {name!r} in {path} is invalid; valid: a folder name")
    out = data.get("out", "logs/experiments")
    if not isinstance(out, str) or not out:
        raise GridError(f"out: {out!r} in {path} is invalid; valid: a folder")
    archive = data.get("archive")
    if archive is not None and (not isinstance(archive, str) or not archive):
        raise GridError(f"archive: {archive!r} in {path} is invalid; valid: {GRID_KEYS['archive']}")
    grid = Grid(
        path=file,
        name=name,
        out=Path(out).expanduser().absolute(),  # the runs start in the repository's folder
        tasks=tasks,
        methods=methods,
        seeds=seeds,
        steps=steps,
        eval_interval=integer("eval_interval", 1),
        eval_episodes=integer("eval_episodes", 1),
        checkpoint_interval=integer("checkpoint_interval", 1),
        log_interval=integer("log_interval", 1) if "log_interval" in data else 1000,
        report_steps=report_steps,
        overrides={m: list(v) for m, v in overrides.items()},
        variants=variants,
        archive=(ROOT / archive).resolve() if archive else None,
    )
    if grid.archive is not None:
        if not grid.archive.is_dir():
            raise GridError(
                f"archive: {archive} in {path} does not exist; valid: a folder `report` wrote, "
                "relative to the repository (or no archive key)"
            )
        grid.archived()  # read now: a broken archive is an error before anything starts
    # Every run's settings go through the same checks as train.py's, before anything is started.
    for task in tasks:
        for method in methods:
            run = Run(grid, task, method, seeds[0])
            try:
                cfg = load_config(task, run.overrides())
            except ConfigError as err:
                raise GridError(f"{task}/{method}: {' '.join(str(err).split())} (in {path})") from None
            if run.algo == "sac" and cfg.env.kind != "gymnasium":
                raise GridError(
                    f"methods: sac is not available for {task} ({cfg.env.kind} task) in {path}; "
                    "valid: meow, or sac on Gymnasium tasks"
                )
    return grid


SELECTORS = ("tasks", "methods", "seeds")
"""The grid's lists that ``run`` and ``status`` can narrow (``--tasks``, ``--methods``, ``--seeds``)."""


def select(
    grid: Grid, tasks: str | None = None, methods: str | None = None, seeds: str | None = None
) -> Grid:
    """The part of ``grid`` that the arguments name, each a comma-separated list of entries of the
    grid's own list (None: all of it). Same name and folder, so the same run directories, archive
    and scheduler; the grid's order is kept.

    Raises:
        GridError: an entry the grid does not hold (an empty one included).
    """
    from dataclasses import replace

    narrowed, selection = {}, list(grid.selection)
    for key, text in zip(SELECTORS, (tasks, methods, seeds), strict=True):
        if text is None:
            continue
        names = [str(e) for e in getattr(grid, key)]
        entries = [e.strip() for e in text.split(",")]
        unknown = next((e for e in entries if e not in names), None)
        if unknown is not None:
            raise GridError(
                f"--{key} {text}: '{unknown}' is not in grid '{grid.name}' ({grid.path}); valid: "
                f"comma-separated entries of {', '.join(names)}"
            )
        narrowed[key] = [e for e, name in zip(getattr(grid, key), names, strict=True) if name in entries]
        selection += [f"--{key}", ",".join(map(str, narrowed[key]))]
    return replace(grid, **narrowed, selection=selection) if narrowed else grid


def eval_overrides(grid: Grid) -> list[str]:
    """``runner.eval_mode=both`` where the config has that setting: MEow's runner and SB3 SAC then
    evaluate the sampled policy as well as the deterministic one. Without it MEow evaluates the
    deterministic policy only and SAC both."""
    from meow.config import load_config

    cfg = load_config(grid.tasks[0])
    return ["runner.eval_mode=both"] if "eval_mode" in cfg.runner else []


# ------------------------------------------------------------------------------------ processes
def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    from meow.utils.io import atomic_write

    atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or None without it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the fields after the command name, which is in parentheses and may hold anything
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, marker: str, start: str | None = None) -> bool:
    """Whether ``pid`` is still the process that was recorded: same start time where ``start``
    was recorded and ``/proc`` tells it, else a command line that holds ``marker`` (a reused pid
    is someone else, even a process whose command line happens to name this script)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is not None and (now := _start_time(pid)) is not None:
        return now == start
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True  # no /proc (macOS): the pid alone
    try:
        return marker in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def scheduler_pid(grid: Grid) -> int | None:
    """The pid of the grid's scheduler when it is alive, else None."""
    info = _read_json(grid.root / "scheduler.pid")
    pid = info.get("pid") if info else None
    return pid if isinstance(pid, int) and _alive(pid, "experiments.py", info.get("start")) else None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Scheduler:
    """Starts a grid's unfinished runs, ``jobs`` at a time, until none remains or it is stopped."""

    def __init__(self, grid: Grid, jobs: int, verbose: bool) -> None:
        self.grid, self.jobs, self.verbose = grid, jobs, verbose
        # Unfinished runs first: results complete in the order they were started.
        self.pending = sorted(
            (r for r in grid.runs() if not r.done()), key=lambda r: not r.checkpoint_steps()
        )
        self.running: dict[str, tuple[Run, subprocess.Popen, float]] = {}
        self.stopping = False
        self.forwarded = False
        self.failed: list[str] = []
        self.eval_overrides = eval_overrides(grid)

    def say(self, text: str) -> None:
        print(f"[experiments] {datetime.now().strftime('%H:%M:%S')} {text}", flush=True)

    def _stop(self, signum, frame) -> None:
        self.stopping = True  # acted on in the loop: a handler that prints could interrupt a print

    def _forward_stop(self) -> None:
        self.forwarded = True
        self.say(f"stopping {len(self.running)} run(s); each saves a checkpoint")
        for _, proc, _ in self.running.values():
            proc.send_signal(signal.SIGTERM)

    def start(self, run: Run) -> None:
        run.dir.mkdir(parents=True, exist_ok=True)
        resume = bool(run.checkpoint_steps())
        if not resume:
            # A start that saved no checkpoint left nothing to continue: its curves would only mix in.
            for stale in run.dir.glob("events.out.tfevents.*"):
                stale.unlink()
        cmd = run.command(self.eval_overrides)
        with open(run.dir / LOG, "a") as log:
            log.write(f"\n==== {_now()} {'resume' if resume else 'start'}: {' '.join(cmd)}\n")
            log.flush()
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
                start_new_session=True,  # a Ctrl-C at the terminal reaches the scheduler, which stops runs
            )  # fmt: skip
        _write_json(run.dir / PID, {"pid": proc.pid, "started": _now(), "start": _start_time(proc.pid)})
        self.running[run.label] = (run, proc, time.monotonic())
        step = run.checkpoint_steps()[-1] if resume else 0
        self.say(f"{'resumed' if resume else 'started'} {run.label} at env step {step:,} (pid {proc.pid})")

    def finish(self, run: Run, rc: int, seconds: float) -> None:
        (run.dir / PID).unlink(missing_ok=True)
        stopped = rc == 130 or (self.stopping and rc == -signal.SIGTERM)  # the latter: while starting
        _write_json(run.dir / EXIT, {"status": rc, "stopped": stopped, "ended": _now()})
        steps = run.checkpoint_steps()
        if rc == 0 and steps and steps[-1] >= self.grid.steps:
            _write_json(
                run.dir / DONE, {"steps": steps[-1], "finished": _now(), "seconds": round(seconds, 1)}
            )
            self.say(f"done {run.label} ({seconds / 60:.1f} min)")
        elif stopped:
            self.say(f"stopped {run.label} at env step {steps[-1] if steps else 0:,}")
        else:
            self.failed.append(run.label)
            self.say(f"FAILED {run.label}: exit status {rc}; see {run.dir / LOG}")

    def loop(self) -> int:
        """Runs until every run has ended; returns 0, 1 when a run failed, 130 when stopped."""
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self._stop)
        total, last_line = len(self.grid.runs()), time.monotonic()
        self.say(
            f"{total - len(self.pending)} of {total} run(s) done, {len(self.pending)} to run, "
            f"{self.jobs} at a time"
        )
        while self.running or (self.pending and not self.stopping):
            if self.stopping and not self.forwarded:
                self._forward_stop()
            while self.pending and not self.stopping and len(self.running) < self.jobs:
                self.start(self.pending.pop(0))
            for label, (run, proc, t0) in list(self.running.items()):
                rc = proc.poll()
                if rc is not None:
                    del self.running[label]
                    self.finish(run, rc, time.monotonic() - t0)
            if self.verbose and time.monotonic() - last_line >= 30:
                last_line = time.monotonic()
                for line in status_lines(self.grid, only_running=True):
                    print(f"    {line}", flush=True)
            time.sleep(0.2)
        if self.stopping:
            self.say("stopped; `run` again continues every unfinished run from its checkpoint")
            return 130
        if self.failed:
            self.say(f"{len(self.failed)} run(s) failed: {', '.join(self.failed)}")
            return 1
        self.say(f"all {total} run(s) done")
        return 0


def schedule(grid: Grid, jobs: int, verbose: bool) -> int:
    """The scheduler's process: holds ``scheduler.pid`` while it runs."""
    pid_file = grid.root / "scheduler.pid"
    me = os.getpid()
    _write_json(pid_file, {"pid": me, "jobs": jobs, "started": _now(), "start": _start_time(me)})
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return Scheduler(grid, jobs, verbose).loop()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        info = _read_json(pid_file)
        if info and info.get("pid") == os.getpid():
            pid_file.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ status
@dataclass
class RunState:
    """What ``status`` knows of a run."""

    run: Run
    state: str
    step: int
    eval_return: float | None
    sps: float | None


def run_state(run: Run) -> RunState:
    """The run's state from its directory: marker, pid, checkpoints and logged scalars."""

    curves = read_run(run.dir) if run.dir.is_dir() else {}
    logged = last_step(curves)
    evals = curves.get("eval/return_mean")
    sps = curves.get("charts/SPS")
    last_eval = evals.values[-1] if evals else None
    saved = (run.checkpoint_steps() or [0])[-1]
    if run.finished_here():
        state, step = "done", max(saved, logged)
    elif run.archived_done():
        archived = run.archived_curves()
        state, step = "done (archived)", run.archived_step()
        evals, sps = archived.get("eval/return_mean"), None
        last_eval = evals.values[-1] if evals else None
    elif run.pid() is not None:
        state, step = "running", logged
    elif saved:
        exit_ = _read_json(run.dir / EXIT)
        failed = _failed(exit_)
        state = f"{'failed (see train.log), ' if failed else ''}partial at {saved:,} steps"
        step = saved
    else:
        exit_ = _read_json(run.dir / EXIT)
        archived = run.archived_step()
        state = "failed (see train.log)" if _failed(exit_) else "not started"
        if archived and state == "not started":  # no checkpoint of it here: it starts again
            state = f"not started here (archive has {archived:,} steps)"
        step = 0
    return RunState(run, state, step, last_eval, sps.values[-1] if sps else None)


def _failed(exit_: dict | None) -> bool:
    """Whether a run's latest attempt ended in an error (not finished, not stopped)."""
    return exit_ is not None and exit_.get("status") != 0 and not exit_.get("stopped")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def status_lines(grid: Grid, only_running: bool = False) -> list[str]:
    """One line per run (state, step, last deterministic evaluation, env-steps/s, ETA) and a total."""
    states = [run_state(r) for r in grid.runs()]
    width = max(len(s.run.label) for s in states)
    lines = []
    for s in states:
        if only_running and s.state != "running":
            continue
        ret = f"eval {s.eval_return:9.1f}" if s.eval_return is not None else "eval         -"
        running = s.state == "running"
        sps = f"{s.sps:7.0f} steps/s" if running and s.sps else " " * 15
        eta = f"ETA {_duration((grid.steps - s.step) / s.sps)}" if running and s.sps else ""
        state = f"running at {s.step:,} steps" if running else s.state
        lines.append(f"{s.run.label:<{width}}  {state:<34} {ret}  {sps}  {eta}".rstrip())
    if only_running:
        return lines
    counts: dict[str, int] = {}
    for s in states:
        key = next((k for k in ("failed", "not started") if s.state.startswith(k)), s.state.split(" at ")[0])
        counts[key] = counts.get(key, 0) + 1
    done_steps = sum(min(s.step, grid.steps) for s in states)
    all_steps = grid.steps * len(states)
    rate = sum(s.sps or 0 for s in states if s.state == "running")
    sched = scheduler_pid(grid)
    eta = f"; ETA {_duration((all_steps - done_steps) / rate)} at {rate:,.0f} steps/s" if rate else ""
    lines.append(
        f"total: {len(states)} runs: {', '.join(f'{n} {k}' for k, n in counts.items())}; "
        f"{done_steps:,} of {all_steps:,} env steps ({done_steps / all_steps:.0%}){eta}; "
        + (f"scheduler pid {sched}" if sched else "no scheduler running")
    )
    return lines


# ------------------------------------------------------------------------------------ report
def _fmt_step(step: int) -> str:
    return f"{step // 1000}k" if step % 1000 == 0 else f"{step:,}"


def plot_calibration(panels: dict[str, dict[int, dict]], out: Path, title: str) -> None:
    """One panel per method: each seed's ``V(s0)`` (solid) and soft return earned (dashed) against
    env steps, one colour per seed. Seeds are drawn apart, not averaged: a critic that diverges in
    one seed would otherwise hide the others. The y axis turns symmetric-logarithmic past 2,000."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.5, 6 * len(panels)), 4.5), squeeze=False)
    for ax, (method, seeds) in zip(axes[0], panels.items(), strict=True):
        largest = 0.0
        for i, (seed, curves) in enumerate(sorted(seeds.items())):
            color = f"C{i % 10}"
            for tag, style, what in ((VALUE_V0, "-", "V(s0)"), (SOFT_RETURN, "--", "soft return")):
                c = curves[tag]
                ax.plot(c.steps, c.values, style, color=color, label=f"seed {seed}: {what}")
                largest = max(largest, *(abs(v) for v in c.values))
        if largest > 2000:
            ax.set_yscale("symlog", linthresh=500)
        ax.set(xlabel="env steps", ylabel="soft value", title=method)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"[experiments] wrote {out}", flush=True)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (as a command line writes
    it), else as it is: a committed report names no machine's directories."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def report(grid: Grid, out: Path, steps: list[int]) -> int:
    """PNGs per task and evaluation tag, a value-calibration PNG per task (the methods that log
    it), ``curves.csv`` and ``returns.md`` under ``out``."""
    import csv

    import numpy as np

    # Each run's curves from its directory, or from the archive where that holds it further (a
    # run finished on another machine); read in full before anything is written, as ``out`` may
    # be the archive itself.
    data: dict[tuple[str, str, int], dict[str, Curve]] = {}
    finished: set[tuple[str, str, int]] = set()
    for run in grid.runs():
        key = (run.task, run.method, run.seed)
        local = read_run(run.dir) if run.dir.is_dir() else {}
        archived = run.archived_curves()
        here = run.finished_here() or (local and last_step(local) >= last_step(archived))
        curves = local if here else archived
        if curves:
            data[key] = curves
        if run.done():
            finished.add(key)
    tags = [t for t in EVAL_TAGS if any(t in c for c in data.values())]
    if not tags:
        raise GridError(
            f"no run of grid '{grid.name}' has logged an evaluation yet under {grid.root}; run it first"
        )
    out.mkdir(parents=True, exist_ok=True)
    print(f"[experiments] report of {len(data)} run(s) into {out}", flush=True)

    rows = 0
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for (task, method, seed), curves in sorted(data.items()):
            for tag in sorted(curves):
                c = curves[tag]
                for step, value, sec in zip(c.steps, c.values, c.seconds, strict=True):
                    writer.writerow([task, method, seed, int(step), tag, f"{value:.6g}", f"{sec:.1f}"])
                    rows += 1
    print(f"[experiments] wrote {out / 'curves.csv'} ({rows:,} rows)", flush=True)

    def partial_note(key) -> str:
        return "" if key in finished else f", partial at {last_step(data[key]):,}"

    for task in grid.tasks:
        for tag in tags:
            groups: dict = {}
            for method in grid.methods:
                keys = [
                    (task, method, seed) for seed in grid.seeds if tag in data.get((task, method, seed), {})
                ]
                if keys:
                    notes = "; ".join(f"seed {k[2]}{partial_note(k)}" for k in keys if partial_note(k))
                    label = method + (f" ({notes})" if notes else "")
                    groups[label] = [data[k][tag] for k in keys]
            if groups:
                png = out / f"{task}_{tag.replace('/', '_')}.png"
                plot(groups, png, title=f"{task}: {tag} ({grid.name})")
        # value calibration: V(s0) beside the soft return earned, for the methods that log both
        panels = {}
        for method in grid.methods:
            seeds = {
                seed: data[(task, method, seed)]
                for seed in grid.seeds
                if all(t in data.get((task, method, seed), {}) for t in (VALUE_V0, SOFT_RETURN))
            }
            if seeds:
                panels[method] = seeds
        if panels:
            title = f"{task} ({grid.name}): value calibration, V(s0) and the soft return earned"
            plot_calibration(panels, out / f"{task}_value_calibration.png", title)

    lines = [
        f"# {grid.name}: returns at given env steps",
        "",
        f"Generated {_now()} by `python tools/experiments.py report {grid.path} --out {_shown(out)}`.",
        f"Grid: {len(grid.seeds)} seeds ({', '.join(map(str, grid.seeds))}), "
        f"{grid.steps:,} env steps per run, "
        f"evaluation every {grid.eval_interval:,} env steps on {grid.eval_episodes} episodes.",
        "Cells: mean ± standard deviation (n-1) over the seeds that reached the step, the seeds listed; "
        "a seed short of a step is named with the step it reached and left out (never extrapolated).",
    ]
    # (tag, heading, lines under it, whether methods that do not log the tag are left out)
    sections = [
        (tag, f"{'deterministic' if tag == 'eval/return_mean' else 'sampled'} policy", [], False)
        for tag in tags
    ]
    if any(VALUE_ERROR in c for c in data.values()):
        heading = "value calibration: V(s0) less the soft return earned"
        intro = (
            "Positive: the critic overestimates the soft return of its own sampling policy. "
            "Methods that do not log it are left out."
        )
        sections.append((VALUE_ERROR, heading, [intro, ""], True))
    for tag, heading, intro, only_logging in sections:
        lines += ["", f"## `{tag}` ({heading})", "", *intro]
        lines.append("| task | method | " + " | ".join(_fmt_step(s) for s in steps) + " |")
        lines.append("|---|---|" + "---|" * len(steps))
        for task in grid.tasks:
            for method in grid.methods:
                logged = [seed for seed in grid.seeds if (task, method, seed) in data]
                has_tag = any(tag in data[(task, method, s)] for s in logged)
                if only_logging and not has_tag:
                    continue  # e.g. SAC, whose critic is not the policy's exact soft value
                if logged and not has_tag:
                    lines.append(f"| {task} | {method} | " + " | ".join(["not logged"] * len(steps)) + " |")
                    continue
                cells = []
                for step in steps:
                    values, reached, short = [], [], []
                    for seed in grid.seeds:
                        c = data.get((task, method, seed), {}).get(tag)
                        if c is not None and c.steps[-1] >= step:
                            i = int(np.searchsorted(c.steps, step, side="right")) - 1
                            values.append(c.values[i])
                            reached.append(str(seed))
                        elif c is not None:
                            short.append(f"seed {seed} at {int(c.steps[-1]):,}")
                        else:
                            short.append(f"seed {seed} not started")
                    cell = "—"
                    if values:
                        std = f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
                        cell = f"{np.mean(values):.1f}{std} (seeds {','.join(reached)})"
                    if short:
                        cell += f"; partial: {', '.join(short)}"
                    cells.append(cell)
                lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
    lines += health_table(data)
    (out / "returns.md").write_text("\n".join(lines) + "\n")
    print(f"[experiments] wrote {out / 'returns.md'}", flush=True)
    return 0


HEALTH_FROM = 30_000
"""Env step from which :func:`health_table` checks the critic (the first tens of thousands of
steps are the critic's own warm-up, where any calibration is loose)."""


def health_table(data: dict[tuple[str, str, int], dict[str, Curve]]) -> list[str]:
    """Markdown lines: per run that logs the value calibration, its sampled return at its last
    evaluation, the largest ``V(s0) - soft return`` and pre-clip gradient norm from
    :data:`HEALTH_FROM` on, and the lowest logged policy entropy."""
    rows = []
    for (task, method, seed), curves in sorted(data.items()):
        if VALUE_ERROR not in curves:
            continue

        def late(tag: str, curves: dict[str, Curve] = curves) -> list[float]:
            c = curves.get(tag)
            return [v for s, v in zip(c.steps, c.values, strict=True) if s >= HEALTH_FROM] if c else []

        sampled = curves.get("eval/stochastic_return_mean")
        ret = f"{sampled.values[-1]:.1f} at {int(sampled.steps[-1]):,}" if sampled else "—"
        error, grad = late(VALUE_ERROR), late("losses/grad_norm")
        entropy = curves.get("policy/entropy")
        rows.append(
            f"| {task} | {method} | {seed} | {ret} | "
            + (f"{max(error):+.1f}" if error else "—")
            + " | "
            + (f"{max(grad):.3g}" if grad else "—")
            + " | "
            + (f"{min(entropy.values):.1f}" if entropy else "—")
            + " |"
        )
    if not rows:
        return []
    return [
        "",
        f"## Critic health per run (from env step {HEALTH_FROM:,} on)",
        "",
        "Sampled return at the run's last evaluation; the largest `eval/value_error` (V(s0) less the soft "
        "return earned) and the largest pre-clip `losses/grad_norm` logged from that step on; the lowest "
        "`policy/entropy` (nats) logged. Methods that do not log the value calibration are left out.",
        "",
        "| task | method | seed | sampled return | max value error | max grad norm | min entropy |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


# ------------------------------------------------------------------------------------ commands
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=ArgumentParser, metavar="{run,status,stop,report}"
    )
    run = sub.add_parser("run", help="start the grid's unfinished runs in the background")
    run.add_argument("grid", help="grid file (YAML)")
    run.add_argument(
        "--jobs", type=at_least(1), default=os.cpu_count() or 1, help="runs at a time (default: cores)"
    )
    run.add_argument("--wait", action="store_true", help="block until every run has ended, printing progress")
    status = sub.add_parser("status", help="one line per run and a total")
    status.add_argument("grid")
    stop = sub.add_parser("stop", help="SIGTERM to the runs: each saves a checkpoint and exits")
    stop.add_argument("grid")
    stop.add_argument(
        "--timeout", type=at_least(1), default=600, help="seconds to wait for them (default 600)"
    )
    rep = sub.add_parser("report", help="PNGs per task, curves.csv and returns.md")
    rep.add_argument("grid")
    rep.add_argument("--out", help="folder to write (default docs/results/<grid name>)")
    rep.add_argument(
        "--steps", help="comma-separated env steps of the table (default: the grid's report_steps)"
    )
    sched = sub.add_parser("_schedule")  # the background scheduler that `run` starts; no help: internal
    sched.add_argument("grid")
    sched.add_argument("--jobs", type=at_least(1), required=True)
    for p in (run, status, sched):
        for key in SELECTORS:
            p.add_argument(
                f"--{key}", metavar="A,B", help=f"only these {key} of the grid, comma-separated (default all)"
            )
    return parser.parse_args(argv)


def _parse_steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",")]
    except ValueError:
        steps = []
    if not steps or any(s < 1 for s in steps):
        raise GridError(f"--steps {text} is invalid; valid: comma-separated env steps >= 1, e.g. 25000,50000")
    return steps


def cmd_run(grid: Grid, jobs: int, wait: bool) -> int:
    sched = scheduler_pid(grid)
    if sched is not None:
        raise GridError(
            f"grid '{grid.name}' is already running (scheduler pid {sched}); "
            "`status` shows it, `stop` stops it"
        )
    orphans = [f"{r.label} (pid {pid})" for r in grid.runs() if (pid := r.pid()) is not None]
    if orphans:
        raise GridError(f"{len(orphans)} run(s) of grid '{grid.name}' still run without a scheduler: "
                        f"{', '.join(orphans)}; wait for them or `stop` them first")  # fmt: skip
    from meow.utils.io import check_creatable_dir

    try:
        check_creatable_dir(grid.root, "out")
    except ValueError as err:
        raise GridError(str(err)) from None
    runs = grid.runs()
    done = [r for r in runs if r.done()]
    resume = [r for r in runs if not r.done() and r.checkpoint_steps()]
    archived = sum(not r.finished_here() for r in done)
    part = f" ({' '.join(grid.selection)})" if grid.selection else ""
    print(
        f"[experiments] grid '{grid.name}'{part}: {len(runs)} runs ({len(done)} done"
        + (f", {archived} of them in the archive" if archived else "")
        + f", {len(resume)} to resume, "
        f"{len(runs) - len(done) - len(resume)} to start), {jobs} at a time, in {grid.root}"
    )
    if not eval_overrides(grid) and "meow" in grid.methods:
        print(
            "[experiments] note: this MEow runner evaluates the deterministic policy only "
            "(it has no runner.eval_mode)"
        )
    if len(done) == len(runs):
        print("[experiments] nothing to do")
        return 0
    grid.root.mkdir(parents=True, exist_ok=True)
    if wait:
        return schedule(grid, jobs, verbose=True)
    with open(grid.root / "scheduler.log", "a") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_schedule", str(grid.path), "--jobs", str(jobs),
             *grid.selection],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=Path.cwd(),
            start_new_session=True,
        )  # fmt: skip
    # Written here too, so that a `status` right after this returns sees the scheduler.
    _write_json(grid.root / "scheduler.pid", {"pid": proc.pid, "jobs": jobs, "started": _now()})
    print(f"[experiments] scheduler pid {proc.pid}, log {grid.root / 'scheduler.log'}")
    print(f"[experiments] progress: python tools/experiments.py status {grid.path}")
    return 0


def cmd_stop(grid: Grid, timeout: int) -> int:
    sched = scheduler_pid(grid)
    running = [(r, pid) for r in grid.runs() if (pid := r.pid()) is not None]
    if sched is None and not running:
        print(f"[experiments] nothing of grid '{grid.name}' is running")
        return 0
    # One SIGTERM per run: the scheduler passes it on; a run whose scheduler is gone gets it directly.
    if sched is not None:
        os.kill(sched, signal.SIGTERM)
    else:
        for _, pid in running:
            os.kill(pid, signal.SIGTERM)
    print(
        f"[experiments] sent SIGTERM to {'the scheduler and ' if sched else ''}{len(running)} run(s); waiting"
    )
    deadline, last = time.monotonic() + timeout, 0.0
    while time.monotonic() < deadline:
        left = [r.label for r, _ in running if r.pid() is not None]
        if not left and scheduler_pid(grid) is None:
            print("[experiments] stopped; `run` continues from the checkpoints")
            return 0
        if time.monotonic() - last > 10:
            last = time.monotonic()
            print(f"[experiments] saving checkpoints: {', '.join(left) or 'the scheduler'}", flush=True)
        time.sleep(0.5)
    print(
        f"error: still running after {timeout} s: {', '.join(r.label for r, _ in running if r.pid())}",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        grid = load_grid(args.grid)
        if args.command in ("run", "status", "_schedule"):
            grid = select(grid, **{key: getattr(args, key) for key in SELECTORS})
        if args.command == "run":
            return cmd_run(grid, args.jobs, args.wait)
        if args.command == "_schedule":
            return schedule(grid, args.jobs, verbose=True)
        if args.command == "status":
            try:
                print("\n".join(status_lines(grid)), flush=True)
            except BrokenPipeError:  # `status | head`: the reader has what it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if args.command == "stop":
            return cmd_stop(grid, args.timeout)
        steps = _parse_steps(args.steps) if args.steps else grid.report_steps
        out = Path(args.out) if args.out else ROOT / "docs" / "results" / grid.name
        from meow.utils.io import check_creatable_dir

        try:
            check_creatable_dir(out, "--out")
        except ValueError as err:
            raise GridError(str(err)) from None
        return report(grid, out, steps)
    except GridError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
