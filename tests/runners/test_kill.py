"""SIGKILL at random moments, including in the middle of checkpoint and replay-buffer writes.

Real training processes (``scripts/train.py`` on MultiGoal) are killed over and over, each one
resuming the newest checkpoint the previous ones left. After every kill every checkpoint and
buffer file on disk must load, and each resumed run must continue the step counter. The
processes are forked from a server that has imported torch once (multiprocessing's
``forkserver``), so that two dozen of them take about a minute on a small machine.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import sys
import time
from pathlib import Path

from meow.runners import read_checkpoint, safe_load
from meow.runners.checkpoint import run_checkpoints

ROOT = Path(__file__).resolve().parents[2]
KILLS = 21
SETTINGS = [
    "algo.capture=none",  # a 100M-step run would compile under auto, for longer than the test waits
    "algo.coupling_hidden=[16]",
    "algo.scale_hidden=[16]",
    "algo.shift_hidden=[16]",
    "algo.batch_size=64",
    "env.num_envs=500",
    "env.eval_envs=0",
    "buffer.capacity=1000000",
    "runner.warmup_steps=2000",
    "runner.checkpoint_interval=5000",  # every 10 vectorized steps
    "runner.keep_checkpoints=3",
    "runner.log_interval=5000",
    "runner.progress=false",
    "torch_threads=1",
]


def _train(argv: list[str], log: str) -> None:
    """The child: ``scripts/train.py`` with ``argv``, its output to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.path.insert(0, str(ROOT / "scripts"))
    import train

    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = sys.stdout
    sys.exit(train.main(argv))


def _temp_files(log_dir: Path) -> set[str]:
    """The temporary files of unfinished saves, in every run directory."""
    try:
        runs = list((log_dir / "meow" / "MultiGoal").iterdir())
        return {str(d / n) for d in runs for n in os.listdir(d) if n.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def _check_every_file_loads(log_dir: Path) -> tuple[int, Path | None]:
    """Asserts that every checkpoint and buffer file loads; returns the newest checkpoint."""
    newest: tuple[int, Path | None] = (-1, None)
    runs = log_dir / "meow" / "MultiGoal"
    for run in runs.iterdir() if runs.is_dir() else []:
        for step, path in run_checkpoints(run):
            ckpt = read_checkpoint(path)
            assert ckpt["global_step"] == step
            newest = max(newest, (step, path))
        if (run / "replay_buffer.pt").exists():
            data = safe_load(run / "replay_buffer.pt", mmap=True)
            assert data["obs"].shape[0] == data["pos"] and data["global_step"] % 500 == 0
    return newest


def test_sigkill_at_random_moments_never_leaves_a_bad_checkpoint(tmp_path):
    rng = random.Random(11)
    ctx = multiprocessing.get_context("forkserver")
    # torch._dynamo: torch's optimizers import it on their first step (seconds on a busy machine).
    ctx.set_forkserver_preload(
        ["torch", "torch._dynamo", "meow.config", "meow.runners", "meow.envs.multigoal", "tensorboard"]
    )
    warm = ctx.Process(target=time.sleep, args=(0,))  # starts the server: the imports happen once, here
    warm.start()
    warm.join()
    log_dir = tmp_path / "logs"
    base = ["--task", "MultiGoal", "runner.total_steps=100000000", f"runner.log_dir={log_dir}", *SETTINGS]
    hits = {"model write": 0, "buffer write": 0, "other": 0}
    buffer_outcomes = {"restored": 0, "refilled": 0}
    newest_step, newest = -1, None
    for k in range(KILLS):
        argv = list(base) if newest is None else ["--resume", str(newest.parent), *base[2:]]
        log = tmp_path / f"child_{k}.log"
        before = _temp_files(log_dir)  # left by earlier kills
        child = ctx.Process(target=_train, args=(argv, str(log)))
        child.start()
        mode = ("timed", ".model_", ".replay_buffer")[k % 3]
        deadline = time.monotonic() + (rng.uniform(0.0, 4.0) if mode == "timed" else 8.0)
        seen: list[str] = []
        while time.monotonic() < deadline and child.is_alive():
            seen = [Path(p).name for p in _temp_files(log_dir) - before]
            if mode != "timed" and any(n.startswith(mode) for n in seen):
                break
            time.sleep(0.0005)
        child.kill()
        child.join()
        seen = [Path(p).name for p in _temp_files(log_dir) - before]  # what the kill interrupted
        assert child.exitcode == -9, log.read_text()[-2000:]
        kind = "model write" if any(".model_" in n for n in seen) else None
        kind = kind or ("buffer write" if any(".replay_buffer" in n for n in seen) else "other")
        hits[kind] += 1

        step, path = _check_every_file_loads(log_dir)
        text = log.read_text() if log.exists() else ""  # a kill may come before the child opened it
        if newest is not None and "resumed" in text:
            m = re.search(r"resumed (\S+) at env step ([\d,]+)", text)
            assert m and int(m.group(2).replace(",", "")) == newest_step, text
            buffer_outcomes["refilled" if "refills" in text else "restored"] += 1
            if any(newest.parent == Path(p).parent for p in before):
                assert "unfinished save(s) of an interrupted run" in text
            resumed_run = Path(m.group(1)).parent
            for run in (log_dir / "meow" / "MultiGoal").iterdir():
                if run != resumed_run and any(f"logging to {run}" in line for line in text.splitlines()):
                    assert all(s > newest_step for s, _ in run_checkpoints(run))  # the counter continues
        assert step >= newest_step
        newest_step, newest = step, path

    # The chain finishes: the last resume runs to its end.
    assert newest is not None
    log = tmp_path / "final.log"
    target = newest_step + 20_000
    child = ctx.Process(
        target=_train,
        args=(["--resume", str(newest.parent), *base[2:], f"runner.total_steps={target}"], str(log)),
    )
    child.start()
    child.join(timeout=300)
    assert child.exitcode == 0, log.read_text()[-2000:]
    assert _check_every_file_loads(log_dir)[0] == target
    print(f"\nkills: {KILLS} ({hits}); resumed runs: {buffer_outcomes}; final step {target:,}")
    # (a buffer saved beside the newest checkpoint is restored: tests/runners/test_off_policy_runner.py)
    assert hits["model write"] >= 3 and hits["buffer write"] >= 3
