"""Data-parallel training with real torchrun processes on gloo (CPU): the averaged gradient, identical
replicas, rank-0-only files, summed step counters, resume across world sizes, SIGTERM, a dead or
hung rank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("dist_worker.py")
train = load_script("train")

SMALL = [
    "runner.progress=false",
    "torch_threads=1",
    "env.num_envs=2",
    "runner.warmup_steps=64",
    "algo.batch_size=32",
    "buffer.capacity=2000",
    "algo.normalize_obs=true",
    "runner.log_interval=50",
]
# Runs that signals, kills or budgets end; eager, since capture=auto compiles a run this long on
# the CPU, and a signal during the compilation (40-60 s) outlasts torchrun's 30 s grace period.
LONG = [
    *SMALL,
    "algo.capture=none",
    "env.eval_envs=0",
    "--total_steps",
    "100000000",
    "runner.checkpoint_interval=100000000",
]


def _torchrun(
    args: list[str], cwd: Path, record: Path, nproc: int = 2, worker: Path = WORKER, **env: str
) -> subprocess.Popen:
    """``torchrun --standalone`` (a free port: no clash with other jobs) on a recording worker."""
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MEOW_TEST_RECORD": str(record)}
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "source"), os.environ.get("PYTHONPATH", "")) if p
    )
    environ.update(env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.Popen(
        [*cmd, str(worker), *args],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a stray signal to the test's process group never reaches it
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s:\n{err[-3000:]}")
    return proc.returncode, out, err


def _run_dirs(work: Path) -> list[Path]:
    base = work / "logs" / "meow" / "MultiGoal"
    return sorted(base.iterdir()) if base.is_dir() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has yet to collect it. The process may also be
    # collected between the two looks: then /proc no longer has it.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return not state.startswith("Z")


def _wait_training(work: Path, record: Path, proc: subprocess.Popen, timeout: float = 240) -> list[int]:
    """Waits until rank 0 has logged (its TensorBoard file exists) and both ranks' pids are known."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"torchrun exited early ({proc.returncode}):\n{proc.stderr.read()[-3000:]}")
        runs = _run_dirs(work)
        pids = sorted(record.glob("rank*.pid"))
        if runs and list(runs[-1].glob("events.out.tfevents.*")) and len(pids) == 2:
            time.sleep(2.0)  # updates under way
            return [int(p.read_text()) for p in pids]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("training did not start within the time limit")


def _records(record: Path) -> list[dict]:
    return [torch.load(record / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def _assert_identical_learners(a: dict, b: dict) -> None:
    for part in ("policy", "target", "normalizer"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs between ranks"
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a and state_a.keys() == state_b.keys()
    for idx, slots in state_a.items():
        for name, value in slots.items():
            assert torch.equal(value, state_b[idx][name]), f"optimizer {idx}.{name} differs between ranks"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two ranks, 2 envs each, 400 env steps over both (100 vectorized steps per rank)."""
    work = tmp_path_factory.mktemp("dist_train")
    record = tmp_path_factory.mktemp("dist_train_record")
    args = ["--task", "MultiGoal", "--distributed", "--total_steps", "400", *SMALL]
    args += ["env.eval_envs=2", "runner.eval_interval=200", "runner.checkpoint_interval=200"]
    rc, out, err = _finish(_torchrun(args, work, record))
    assert rc == 0, err[-3000:]
    (run,) = _run_dirs(work)
    return work, run, record, out


def test_two_ranks_stay_identical_and_count_steps_over_ranks(trained):
    _, run, record, _ = trained
    r0, r1 = _records(record)
    # Each rank took its own 200 env steps; the shared counter is their sum.
    assert r0["env_steps"] == r1["env_steps"] == 200
    assert r0["global_step"] == r1["global_step"] == 400
    ckpt = torch.load(run / "model_400.pt", weights_only=False)
    assert ckpt["global_step"] == r0["env_steps"] + r1["env_steps"] and ckpt["world_size"] == 2
    # Different data on each rank (own seeds, own envs), yet bitwise identical learners.
    assert not torch.equal(r0["observed"], r1["observed"])
    _assert_identical_learners(r0["learner"], r1["learner"])
    for key, value in ckpt["learner"]["policy"].items():
        assert torch.equal(value, r0["learner"]["policy"][key])


def test_normalizer_statistics_are_those_of_every_rank_s_observations(trained):
    _, _, record, _ = trained
    r0, r1 = _records(record)
    both = torch.cat([r0["observed"], r1["observed"]]).double()
    norm = r0["learner"]["normalizer"]
    assert norm["count"].item() == both.shape[0] == 400
    assert torch.allclose(norm["mean"].double(), both.mean(0), atol=1e-5)
    assert torch.allclose(norm["var"].double(), both.var(0, unbiased=False), rtol=1e-4, atol=1e-6)
    # ... and not those of one rank's alone
    assert not torch.allclose(norm["mean"].double(), r0["observed"].double().mean(0), atol=1e-5)


def test_only_rank_0_writes_files_and_prints(trained):
    work, run, record, out = trained
    pid0 = int((record / "rank0.pid").read_text())
    assert sorted(p.name for p in work.iterdir()) == ["logs"]
    names = sorted(p.name for p in run.iterdir())
    (events,) = [n for n in names if n.startswith("events.out.tfevents.")]
    assert events.split(".")[-2] == str(pid0), "TensorBoard events were written by another rank"
    assert [n for n in names if n != events] == [
        "config.yaml",
        "model_200.pt",
        "model_400.pt",
        "replay_buffer.pt",
    ]
    assert out.count("[meow] task MultiGoal") == 1 and out.count("[meow] checkpoint:") == 1
    assert "final deterministic evaluation" in out  # rank 0 evaluates


def test_rank_0_checkpoint_resumes_in_one_process_and_under_two_ranks(trained, tmp_path, capsys):
    _, run, _, _ = trained
    logs = tmp_path / "logs"
    assert train.main(["--resume", str(run), "--total_steps", "500", f"runner.log_dir={logs}"]) == 0
    assert "resumed" in capsys.readouterr().out
    (single,) = sorted((logs / "meow" / "MultiGoal").iterdir())
    ckpt = torch.load(single / "model_500.pt", weights_only=False)
    assert ckpt["world_size"] == 1 and ckpt["num_updates"] > 0

    # 50 vectorized steps per rank; rank 1's replay buffer refills (16 steps) before updates resume.
    record, logs2 = tmp_path / "record", tmp_path / "logs2"
    args = ["--resume", str(run), "--distributed", "--total_steps", "600", f"runner.log_dir={logs2}"]
    rc, _, err = _finish(_torchrun(args, tmp_path, record))
    assert rc == 0, err[-3000:]
    (resumed,) = sorted((logs2 / "meow" / "MultiGoal").iterdir())
    r0, r1 = _records(record)
    assert r0["env_steps"] == r1["env_steps"] == 100 and r0["global_step"] == 600
    _assert_identical_learners(r0["learner"], r1["learner"])
    ckpt = torch.load(resumed / "model_600.pt", weights_only=False)
    assert (
        ckpt["world_size"] == 2
        and ckpt["num_updates"] > torch.load(run / "model_400.pt", weights_only=False)["num_updates"]
    )


def test_sigterm_to_torchrun_saves_one_checkpoint_stops_every_rank_and_resumes(tmp_path):
    record = tmp_path / "record"
    proc = _torchrun(["--task", "MultiGoal", "--distributed", *LONG], tmp_path, record)
    pids = _wait_training(tmp_path, record, proc)
    proc.send_signal(signal.SIGTERM)
    rc, out, err = _finish(proc, timeout=60)
    assert rc != 0  # workers that stopped on a signal exit with 130, which torchrun reports as a failure
    assert "death signal" in err  # torchrun got the signal and passed it on to its workers
    assert not any(_alive(pid) for pid in pids)
    (run,) = _run_dirs(tmp_path)
    (ckpt_path,) = run.glob("model_*.pt")
    step = torch.load(ckpt_path, weights_only=False)["global_step"]
    assert f"interrupted at env step {step:,}; saved" in out and ckpt_path.name in out
    r0, r1 = _records(record)
    # Both ranks stopped at the same iteration, the one the checkpoint holds.
    assert r0["global_step"] == r1["global_step"] == step > 0
    _assert_identical_learners(r0["learner"], r1["learner"])

    # ... and resumes (here in one process)
    logs = tmp_path / "resumed"
    assert train.main(["--resume", str(run), "--total_steps", str(step + 40), f"runner.log_dir={logs}"]) == 0
    assert list(logs.glob(f"meow/MultiGoal/*/model_{step + 40}.pt"))


def test_a_wall_clock_budget_ends_every_rank_at_the_same_iteration(tmp_path):
    """runner.max_minutes on two ranks: the budget check is collective, so both ranks end at the
    same step as at total_steps (exit 0, one final checkpoint, identical learners)."""
    record = tmp_path / "record"
    args = ["--task", "MultiGoal", "--distributed", *LONG, "--max_minutes", "0.4"]
    proc = _torchrun(args, tmp_path, record)
    rc, out, err = _finish(proc, timeout=180)
    assert rc == 0, err[-3000:]
    assert "wall-clock budget spent (runner.max_minutes=0.4)" in out
    (run,) = _run_dirs(tmp_path)
    (ckpt_path,) = run.glob("model_*.pt")
    step = torch.load(ckpt_path, weights_only=False)["global_step"]
    r0, r1 = _records(record)
    assert r0["global_step"] == r1["global_step"] == step > 0
    _assert_identical_learners(r0["learner"], r1["learner"])


def test_a_killed_rank_makes_the_other_exit_with_an_error_within_60_s(tmp_path):
    record = tmp_path / "record"
    proc = _torchrun(["--task", "MultiGoal", "--distributed", *LONG], tmp_path, record)
    pid0, pid1 = _wait_training(tmp_path, record, proc)
    os.kill(pid1, signal.SIGKILL)
    start = time.monotonic()
    while _alive(pid0) and time.monotonic() - start < 60:
        time.sleep(0.1)
    assert not _alive(pid0), "rank 0 still runs 60 s after rank 1 was killed"
    rc, _, err = _finish(proc, timeout=60)
    assert rc != 0
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines and "rank 0 of 2 lost contact with the other ranks" in lines[0]
    assert not list(_run_dirs(tmp_path)[0].glob("model_*.pt"))


def test_a_hung_rank_makes_the_other_exit_after_the_timeout(tmp_path):
    """A stopped (not dead) peer: torchrun sees nothing wrong; the collective timeout ends rank 0."""
    record = tmp_path / "record"
    proc = _torchrun(
        ["--task", "MultiGoal", "--distributed", *LONG], tmp_path, record, MEOW_DIST_TIMEOUT="10"
    )
    pid0, pid1 = _wait_training(tmp_path, record, proc)
    os.kill(pid1, signal.SIGSTOP)
    start = time.monotonic()
    try:
        while _alive(pid0) and time.monotonic() - start < 60:
            time.sleep(0.1)
        waited = time.monotonic() - start
    finally:
        os.kill(pid1, signal.SIGKILL)
    assert not _alive(pid0) and waited >= 8.0, f"rank 0 ended after {waited:.1f} s"
    rc, _, err = _finish(proc, timeout=60)
    assert rc != 0
    assert "error: rank 0 of 2 lost contact with the other ranks" in err and "timed out" in err.lower()


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    record = tmp_path / "record"
    args = ["--task", "MultiGoal", "--distributed", "--total_steps", "400", *SMALL, "env.eval_envs=0"]
    args += ["runner.log_interval=100", "runner.checkpoint_interval=100"]
    rc, _, err = _finish(_torchrun(args, tmp_path, record, MEOW_TEST_NONFINITE_RANK="1"))
    assert rc != 0
    # Rank 0's own updates were finite: it stops because rank 1 flagged one, at the same check.
    assert err.count("error: non-finite loss or gradient norm in the updates up to env step 100") == 2
    r0, r1 = _records(record)
    assert r0["global_step"] == r1["global_step"] == 100
    (run,) = _run_dirs(tmp_path)
    assert not list(run.glob("model_*.pt"))  # the check at step 100 comes before its checkpoint


def test_distributed_without_torchrun_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    argv = ["--task", "MultiGoal", "--distributed", f"runner.log_dir={tmp_path}"]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: --distributed needs")
        and "torchrun --nproc_per_node" in err
        and "\n" not in err
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runner", "rl_games"], "--runner rl_games does not support --distributed; use the core runner"),
        (["--algo", "sac"], "--algo sac does not support --distributed"),
    ],
)
def test_distributed_with_another_runner_or_algo_is_a_one_line_error(extra, message, capsys, tmp_path):
    assert train.main(["--task", "MultiGoal", "--distributed", *extra, f"runner.log_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not any(tmp_path.iterdir())


def test_single_process_checkpoint_resumes_on_two_ranks_stopped_through_run_forwarding(tmp_path):
    """A one-process checkpoint goes on under --distributed; docker/run_forwarding.sh with
    MEOW_FORWARD_TO_WORKERS=1 (the multi-node SLURM script's way) passes a stop request to the
    workers, not to torchrun, and rank 0 writes one checkpoint."""
    single = tmp_path / "single"
    assert (
        train.main(["--task", "MultiGoal", "--total_steps", "100", *SMALL, f"runner.log_dir={single}"]) == 0
    )
    (single_run,) = single.glob("meow/MultiGoal/*")
    record = tmp_path / "record"
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MEOW_TEST_RECORD": str(record)}
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "source"), environ.get("PYTHONPATH", "")) if p
    )
    environ["MEOW_FORWARD_TO_WORKERS"] = "1"
    cmd = [str(ROOT / "docker" / "run_forwarding.sh"), sys.executable, "-m", "torch.distributed.run"]
    cmd += ["--standalone", "--nproc_per_node=2", str(WORKER), "--resume", str(single_run), "--distributed"]
    cmd += [*LONG, f"runner.log_dir={tmp_path / 'logs'}"]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids = _wait_training(tmp_path, record, proc)
    proc.send_signal(signal.SIGTERM)
    rc, out, err = _finish(proc, timeout=60)
    assert rc != 0 and not any(_alive(pid) for pid in pids)
    (line,) = [x for x in err.splitlines() if "sending SIGTERM to python pid(s)" in x]
    assert sorted(int(p) for p in line.split("pid(s) ")[1].split()) == sorted(pids)
    assert "death signal" not in err  # torchrun itself was not signalled
    (run,) = _run_dirs(tmp_path)
    (ckpt_path,) = run.glob("model_*.pt")
    assert "interrupted at env step" in out and ckpt_path.name in out
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert ckpt["world_size"] == 2 and ckpt["global_step"] > 100
    r0, r1 = _records(record)
    assert r0["env_steps"] + r1["env_steps"] == ckpt["global_step"] - 100
    _assert_identical_learners(r0["learner"], r1["learner"])


def test_the_gradient_all_reduce_leaves_every_rank_the_mean_of_the_ranks_gradients(tmp_path):
    """One gloo all-reduce of the flat gradient, divided by the world size: after it, every rank
    holds exactly the mean of the two ranks' own gradients, and the ranks' weights stay equal."""
    record = tmp_path / "grad_sync.pt"
    rc, _, err = _finish(_torchrun([], tmp_path, record, worker=WORKER.with_name("grad_sync_worker.py")))
    assert rc == 0, err[-3000:]
    r = torch.load(record, weights_only=False)
    (own0, own1), (avg0, avg1) = r["before"], r["after"]
    assert not torch.equal(own0, own1)  # each rank's own batches, its own gradient
    assert torch.equal(avg0, (own0 + own1) / 2)  # two ranks: one sum and a halving, both exact
    assert torch.equal(avg0, avg1)
    p0, p1 = r["params"]
    assert torch.equal(p0, p1)
