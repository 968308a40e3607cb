"""tools/experiments.py runs a grid of real training processes, across stops and sessions.

The grid is experiments/smoke.yaml (MEow and SB3 SAC on InvertedPendulum, two seeds) with its
runs moved into a temporary folder; every run is a real ``scripts/train.py`` process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from script_loader import load_script

from meow_compare.curves import read_run

ROOT = Path(__file__).resolve().parents[2]
experiments = load_script("experiments")
SCRIPT = [sys.executable, str(ROOT / "tools" / "experiments.py")]


def _grid(tmp_path: Path, name: str = "smoke", **changes) -> Path:
    data = yaml.safe_load((ROOT / "experiments" / "smoke.yaml").read_text())
    data.update(name=name, out=str(tmp_path / "runs"), **changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'source'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [*SCRIPT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def _run_dirs(tmp_path: Path, name: str) -> list[Path]:
    return sorted((tmp_path / "runs" / name).glob("*/*/seed*"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke grid, run to completion with 2 jobs (the scheduler in this process, the runs real
    ``train.py`` processes); its console output."""
    tmp = tmp_path_factory.mktemp("grid")
    grid = _grid(tmp)
    with pytest.MonkeyPatch.context() as mp:
        import io

        out = io.StringIO()
        mp.setattr(sys, "stdout", out)
        status = experiments.main(["run", str(grid), "--wait", "--jobs", "2"])
    assert status == 0, out.getvalue()[-3000:]
    return tmp, grid, out.getvalue()


def test_the_smoke_grid_runs_to_completion_and_a_second_run_skips_it(smoke, capsys):
    tmp, grid, out = smoke
    runs = _run_dirs(tmp, "smoke")
    assert [str(r.relative_to(tmp / "runs" / "smoke")) for r in runs] == [
        f"InvertedPendulum-v5/{m}/seed{s}" for m in ("meow", "sac") for s in (1, 2)
    ]
    assert out.count("started ") == 4 and "all 4 run(s) done" in out
    for run in runs:
        assert json.loads((run / "done.json").read_text())["steps"] == 1000
        assert (run / "model_1000.pt").is_file() and not (run / "run.pid").exists()
        curves = read_run(run)
        assert curves["eval/return_mean"].steps == [500.0, 1000.0]
        assert curves["charts/SPS"].steps == [250.0, 500.0, 750.0, 1000.0]
        log = (run / "train.log").read_text()
        assert "torch threads 1" in log or "sac" in run.parts[-2]
    sac = read_run(runs[2])
    assert sac["eval/stochastic_return_mean"].steps == [500.0, 1000.0]
    # the second `run` finds every run done: no process started, nothing rewritten
    before = {p: p.stat().st_mtime_ns for run in runs for p in run.iterdir()}
    capsys.readouterr()
    assert experiments.main(["run", str(grid), "--wait"]) == 0
    again = capsys.readouterr().out
    assert "4 runs (4 done, 0 to resume, 0 to start)" in again and "nothing to do" in again
    assert {p: p.stat().st_mtime_ns for run in runs for p in run.iterdir()} == before
    assert experiments.main(["status", str(grid)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(" done " in line for line in lines[:4])
    assert lines[-1].startswith("total: 4 runs: 4 done; 4,000 of 4,000 env steps (100%)")


def test_report_writes_the_csv_table_and_a_png_per_task_and_tag(smoke):
    tmp, grid, _ = smoke
    out = tmp / "report"
    assert experiments.main(["report", str(grid), "--out", str(out), "--steps", "500,1000"]) == 0
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["task", "method", "seed", "env_step", "tag", "value", "seconds"]
    evals = {(r["method"], r["seed"], r["env_step"]) for r in rows if r["tag"] == "eval/return_mean"}
    assert evals == {(m, s, e) for m in ("meow", "sac") for s in ("1", "2") for e in ("500", "1000")}
    # the table's cells are the mean and std of exactly those CSV values
    at_1k = [float(r["value"]) for r in rows if r["tag"] == "eval/return_mean" and r["method"] == "sac"]
    at_1k = at_1k[1::2]  # seed 1 then seed 2, steps 500 then 1000
    import numpy as np

    table = (out / "returns.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| InvertedPendulum-v5 | sac |"))
    assert f"{np.mean(at_1k):.1f} ± {np.std(at_1k, ddof=1):.1f} (seeds 1,2)" in row.split("|")[4]
    assert "## `eval/stochastic_return_mean`" in table
    for tag in ("eval_return_mean", "eval_stochastic_return_mean", "value_calibration"):
        png = out / f"InvertedPendulum-v5_{tag}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # value calibration: MEow's V(s0) less its soft return, from the CSV; SAC logs none
    section = table.split("## `eval/value_error`")[1]
    errors = [float(r["value"]) for r in rows if r["tag"] == "eval/value_error" and r["env_step"] == "1000"]
    assert len(errors) == 2 and not any(r["tag"] == "eval/value_error" and r["method"] == "sac" for r in rows)
    row = next(line for line in section.splitlines() if line.startswith("| InvertedPendulum-v5 | meow |"))
    assert f"{np.mean(errors):.1f} ± {np.std(errors, ddof=1):.1f} (seeds 1,2)" in row.split("|")[4]
    assert "| sac |" not in section


def test_the_health_table_reads_the_critic_from_step_30k_on():
    from meow_compare.curves import Curve

    def curve(tag, steps, values):
        return Curve(Path("run"), tag, steps, values, [0.0] * len(steps))

    steps = [20_000, 30_000, 40_000]
    data = {
        ("Walker2d-v5", "meow", 1): {
            "eval/value_error": curve("eval/value_error", steps, [900.0, 12.0, 250.0]),
            "losses/grad_norm": curve("losses/grad_norm", steps, [5e6, 40.0, 3e3]),
            "policy/entropy": curve("policy/entropy", steps, [-1.0, -20.5, -3.0]),
            "eval/stochastic_return_mean": curve("eval/stochastic_return_mean", steps, [1.0, 2.0, 310.25]),
        },
        ("Walker2d-v5", "sac", 1): {"eval/stochastic_return_mean": curve("x", steps, [1.0, 2.0, 3.0])},
    }
    rows = [line for line in experiments.health_table(data) if line.startswith("| Walker2d")]
    # the step-20k spikes are before the window; SAC logs no value calibration
    assert rows == ["| Walker2d-v5 | meow | 1 | 310.2 at 40,000 | +250.0 | 3e+03 | -20.5 |"]


def _table_rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("| InvertedPendulum")]


def test_a_report_as_archive_stands_for_runs_made_on_another_machine(smoke, tmp_path, capsys):
    """The smoke grid's report is the archive of the same grid on a machine that has none of its
    run directories: every run counts as done, `run` starts nothing, and the report read back from
    the archive (written over it) gives the same CSV and table."""
    _, grid, _ = smoke
    archive = tmp_path / "archive"
    assert experiments.main(["report", str(grid), "--out", str(archive), "--steps", "500,1000"]) == 0
    original_csv, original_rows = (archive / "curves.csv").read_text(), _table_rows(archive / "returns.md")
    moved = _grid(tmp_path, name="moved", archive=str(archive))
    capsys.readouterr()
    assert experiments.main(["status", str(moved)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert all("done (archived)" in line for line in lines[:4])
    assert lines[-1].startswith("total: 4 runs: 4 done (archived); 4,000 of 4,000 env steps (100%)")
    assert experiments.main(["run", str(moved), "--wait"]) == 0
    assert "4 runs (4 done, 4 of them in the archive, 0 to resume, 0 to start)" in capsys.readouterr().out
    assert not (tmp_path / "runs" / "moved").exists()
    assert experiments.main(["report", str(moved), "--out", str(archive), "--steps", "500,1000"]) == 0
    assert (archive / "curves.csv").read_text() == original_csv
    assert _table_rows(archive / "returns.md") == original_rows

    # An archive holding a run only to 500 of its 1000 steps: that run starts again (its checkpoint
    # stayed elsewhere), the report shows it as partial, the others stay done.
    partial = tmp_path / "partial"
    partial.mkdir()
    kept = [
        line
        for line in original_csv.splitlines()
        if not (line.startswith("InvertedPendulum-v5,meow,2,") and int(line.split(",")[3]) > 500)
    ]
    (partial / "curves.csv").write_text("\n".join(kept) + "\n")
    half = experiments.load_grid(str(_grid(tmp_path, name="half", archive=str(partial))))
    assert [r.label for r in experiments.Scheduler(half, 1, False).pending] == [
        "InvertedPendulum-v5/meow/seed2"
    ]
    assert experiments.main(["status", str(half.path)]) == 0
    status = capsys.readouterr().out
    assert "InvertedPendulum-v5/meow/seed2  not started here (archive has 500 steps)" in status
    assert "3 done (archived), 1 not started" in status
    assert experiments.main(["report", str(half.path), "--out", str(partial), "--steps", "500,1000"]) == 0
    meow_row = next(
        r for r in _table_rows(partial / "returns.md") if r.startswith("| InvertedPendulum-v5 | meow |")
    )
    assert "(seeds 1); partial: seed 2 at 500" in meow_row.split("|")[4]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist; valid: a folder `report` wrote"),
        ("step,value\n1,2\n", "is not a report's curves.csv; valid: its header is task,method,seed"),
        ("task,method,seed,env_step,tag,value,seconds\nHopper-v5,meow,one,1000,t,1,0\n", "line 2:"),
    ],
    ids=["missing", "header", "row"],
)
def test_a_bad_archive_is_a_one_line_error(tmp_path, capsys, content, expected):
    archive = tmp_path / "archive"
    if content is not None:
        archive.mkdir()
        (archive / "curves.csv").write_text(content)
    path = _grid(tmp_path, archive=str(archive))
    assert experiments.main(["status", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err


def _wait_for(paths: list[Path], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"not written within {seconds} s: {paths}"
        time.sleep(0.05)


def test_runs_stopped_with_sigterm_resume_from_their_checkpoints_with_a_continuous_step_axis(
    tmp_path, capsys
):
    # One grid per method, so that each is stopped right after its own first checkpoint; a long
    # warm-up keeps the runs cheap.
    grids, runs = {}, {}
    for method, extra in (("meow", ["runner.progress=false"]), ("sac", [])):
        overrides = {method: ["runner.warmup_steps=1300", *extra]}
        grids[method] = _grid(tmp_path, method, methods=[method], seeds=[1], steps=1500, overrides=overrides)
        runs[method] = tmp_path / "runs" / method / "InvertedPendulum-v5" / method / "seed1"
        started = _cli("run", str(grids[method]), "--jobs", "2")
        assert started.returncode == 0 and "scheduler pid" in started.stdout, started.stderr
    saved = {}
    for method, run in runs.items():
        _wait_for([run / "model_500.pt"])
        assert experiments.main(["stop", str(grids[method])]) == 0  # in this process: no start-up delay
        assert not (run / "done.json").exists()
        assert json.loads((run / "last_exit.json").read_text())["status"] == 130
        saved[method] = max(int(p.stem.split("_")[1]) for p in run.glob("model_*.pt"))
        assert 500 <= saved[method] < 1500
        capsys.readouterr()
        assert experiments.main(["status", str(grids[method])]) == 0
        status = capsys.readouterr().out
        assert f"partial at {saved[method]:,} steps" in status and "no scheduler running" in status

    for method in runs:
        assert _cli("run", str(grids[method])).returncode == 0
    _wait_for([run / "done.json" for run in runs.values()])
    for method, run in runs.items():
        log = (tmp_path / "runs" / method / "scheduler.log").read_text()
        assert f"resumed InvertedPendulum-v5/{method}/seed1 at env step {saved[method]:,}" in log
        assert "resume: " in (run / "train.log").read_text()
        assert len(list(run.glob("events.out.tfevents.*"))) == 2  # one per session
        curves = read_run(run)
        assert curves["eval/return_mean"].steps == [500.0, 1000.0, 1500.0]
        assert curves["charts/SPS"].steps == [250.0 * k for k in range(1, 7)]
        seconds = curves["charts/SPS"].seconds
        assert seconds == sorted(seconds)  # the pause between the sessions is cut, never negative
        assert json.loads((run / "done.json").read_text())["steps"] == 1500


BAD = [
    ("missing.yaml", None, "grid file {tmp}/missing.yaml does not exist"),
    ("bad.yaml", "tasks: [Hopper-v5\n", "is not valid YAML at line"),
    ("key.yaml", {"task": ["Hopper-v5"]}, "unknown key 'task' in"),
    ("task.yaml", {"tasks": ["Hoper-v5"]}, "unknown task 'Hoper-v5'; did you mean Hopper-v5"),
    ("method.yaml", {"methods": ["meow", "td3"]}, "methods: 'td3' in"),
    ("sac.yaml", {"tasks": ["MultiGoal"]}, "sac is not available for MultiGoal"),
    ("seeds.yaml", {"seeds": [1, -1]}, "seeds: -1 in"),
    ("steps.yaml", {"steps": "100k"}, "steps: '100k' in"),
    ("override.yaml", {"overrides": {"meow": ["algo.lrr=1"]}}, "unknown key 'algo.lrr'"),
    ("variant.yaml", {"variants": {"ab": {"method": "td3"}}}, "variants.ab: "),
    ("variant_key.yaml", {"variants": {"ab": {"method": "meow", "override": []}}}, "variants.ab:"),
    (
        "variant_setting.yaml",
        {
            "methods": ["meow", "ab"],
            "variants": {"ab": {"method": "meow", "overrides": ["algo.q_dropout=x"]}},
        },
        "algo.q_dropout=x is invalid",
    ),
]


def test_a_variant_runs_its_method_with_its_own_settings(tmp_path):
    """A variant is its method (``--algo``) with the method's overrides, then its own, in a
    folder of its name; the other methods are unchanged."""
    path = _grid(
        tmp_path,
        methods=["meow", "sac", "meow_release"],
        variants={"meow_release": {"method": "meow", "overrides": ["algo.coupling_bias=default"]}},
        overrides={"meow": ["algo.lr=0.002"]},
    )
    grid = experiments.load_grid(str(path))
    runs = {run.method: run for run in grid.runs() if run.seed == grid.seeds[0]}
    variant = runs["meow_release"]
    assert (variant.algo, runs["meow"].algo, runs["sac"].algo) == ("meow", "meow", "sac")
    assert variant.dir.parts[-2:] == ("meow_release", f"seed{grid.seeds[0]}")
    command = variant.command([])
    assert command[command.index("--algo") + 1] == "meow"
    assert command[-2:] == ["algo.lr=0.002", "algo.coupling_bias=default"]
    assert "algo.coupling_bias=default" not in runs["meow"].command([])


def test_a_part_of_the_grid_runs_in_the_grids_own_run_directories(tmp_path, capsys):
    """``run --methods sac --seeds 2`` in the background starts that one run, where the whole
    grid keeps it: the scheduler it starts gets the same part, and ``status`` of the whole grid
    counts it done."""
    path = _grid(tmp_path, name="part")
    assert experiments.main(["run", str(path), "--methods", "sac", "--seeds", "2", "--jobs", "2"]) == 0
    assert "grid 'part' (--methods sac --seeds 2): 1 runs (0 done, 0 to resume, 1 to start)" in (
        capsys.readouterr().out
    )
    grid = experiments.load_grid(str(path))
    deadline = time.monotonic() + 300
    while experiments.scheduler_pid(grid) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert experiments.scheduler_pid(grid) is None, "the scheduler did not end within 300 s"
    log = (tmp_path / "runs" / "part" / "scheduler.log").read_text()
    assert "0 of 1 run(s) done, 1 to run" in log and "all 1 run(s) done" in log, log[-2000:]
    runs = _run_dirs(tmp_path, "part")
    assert [r.relative_to(tmp_path / "runs" / "part").as_posix() for r in runs] == [
        "InvertedPendulum-v5/sac/seed2"
    ]
    assert json.loads((runs[0] / "done.json").read_text())["steps"] == grid.steps
    assert experiments.main(["status", str(path)]) == 0
    whole = capsys.readouterr().out.strip().splitlines()
    assert whole[-1].startswith("total: 4 runs: 3 not started, 1 done; 1,000 of 4,000 env steps"), whole[-1]
    assert experiments.main(["status", str(path), "--methods", "sac"]) == 0
    part = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in part[:2]] == [
        ["InvertedPendulum-v5/sac/seed1", "not"],
        ["InvertedPendulum-v5/sac/seed2", "done"],
    ]
    assert part[-1].startswith("total: 2 runs:") and len(part) == 3


def test_a_part_keeps_the_grids_order_and_names_itself():
    grid = experiments.load_grid(str(ROOT / "experiments" / "smoke.yaml"))
    part = experiments.select(grid, seeds="2, 1", methods=None, tasks="InvertedPendulum-v5")
    assert (part.seeds, part.methods, part.tasks) == (grid.seeds, grid.methods, grid.tasks)
    assert part.selection == ["--tasks", "InvertedPendulum-v5", "--seeds", "1,2"]  # in SELECTORS order
    assert [r.label for r in experiments.select(grid, methods="sac").runs()] == [
        f"InvertedPendulum-v5/sac/seed{s}" for s in grid.seeds
    ]
    assert experiments.select(grid) is grid and grid.selection == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--methods", "meow,ppo"], "--methods meow,ppo: 'ppo' is not in grid 'smoke'"),
        (["--seeds", "7"], "--seeds 7: '7' is not in grid 'smoke'"),
        (["--seeds", ""], "--seeds : '' is not in grid 'smoke'"),
        (["--tasks", "Hopper-v5"], "valid: comma-separated entries of InvertedPendulum-v5"),
    ],
)
@pytest.mark.parametrize("command", ["run", "status"])
def test_a_part_the_grid_does_not_hold_is_a_one_line_error_and_writes_nothing(
    tmp_path, capsys, args, expected, command
):
    path = _grid(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert experiments.main([command, str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "valid: comma-separated entries of" in err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("name", "content", "expected"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["run", "status", "report"])
def test_a_bad_grid_file_is_a_one_line_error_and_writes_nothing(
    tmp_path, capsys, name, content, expected, command
):
    if content is not None:
        base = yaml.safe_load((ROOT / "experiments" / "smoke.yaml").read_text())
        base["out"] = str(tmp_path / "runs")
        text = content if isinstance(content, str) else yaml.safe_dump({**base, **content})
        (tmp_path / name).write_text(text)
    before = sorted(tmp_path.rglob("*"))
    args = [command, str(tmp_path / name)] + (["--out", str(tmp_path / "rep")] if command == "report" else [])
    assert experiments.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert expected.format(tmp=tmp_path) in err
    assert sorted(tmp_path.rglob("*")) == before


def test_train_py_run_dir_refuses_another_runs_checkpoints(tmp_path, capsys):
    train = load_script("train")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model_500.pt").write_bytes(b"")
    assert train.main(["--task", "MultiGoal", "--run_dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"--run_dir {run} holds another run's checkpoints (model_500.pt)" in err
    assert sorted(p.name for p in run.iterdir()) == ["model_500.pt"]


def test_stop_with_nothing_running_says_so(smoke, capsys):
    _, grid, _ = smoke
    assert experiments.main(["stop", str(grid)]) == 0
    assert "nothing of grid 'smoke' is running" in capsys.readouterr().out


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_grid_loads_and_its_meow_runs_resolve_their_config(path):
    from meow.config import load_config

    grid = experiments.load_grid(str(path))
    runs = grid.runs()
    assert len(runs) == len(grid.tasks) * len(grid.methods) * len(grid.seeds) > 0
    for run in runs:
        if run.algo == "meow":
            cfg = load_config(run.task, run.overrides())
            assert cfg.seed == run.seed and cfg.runner.total_steps == grid.steps
            assert cfg.torch_threads == 1


def test_a_pid_file_naming_a_process_started_at_another_time_is_stale(tmp_path):
    """A pid reused by another process (here: this test's own) is not taken for the grid's
    scheduler or a run, even where its command line names experiments.py: `stop` must never
    signal it."""
    grid = experiments.load_grid(str(_grid(tmp_path)))
    run = grid.runs()[0]
    run.dir.mkdir(parents=True)
    me, start = os.getpid(), experiments._start_time(os.getpid())
    assert start is not None  # Linux: /proc tells it
    for path in (grid.root / "scheduler.pid", run.dir / "run.pid"):
        path.write_text(json.dumps({"pid": me, "start": str(int(start) + 1)}))
    assert experiments.scheduler_pid(grid) is None and run.pid() is None
    for path in (grid.root / "scheduler.pid", run.dir / "run.pid"):
        path.write_text(json.dumps({"pid": me, "start": start}))
    assert experiments.scheduler_pid(grid) == me and run.pid() == me


def test_a_report_names_its_folder_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert experiments._shown(tmp_path / "docs" / "results" / "x") == str(Path("docs") / "results" / "x")
    assert experiments._shown(Path("docs/results/x")) == str(Path("docs") / "results" / "x")
    elsewhere = tmp_path.parent / "elsewhere"
    assert experiments._shown(elsewhere) == str(elsewhere)
