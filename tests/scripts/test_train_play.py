"""The user's commands: train.py, --resume and play.py, end to end, with their error paths."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]


train, play = load_script("train"), load_script("play")
SMALL = [
    "runner.progress=false",
    "runner.warmup_steps=64",
    "algo.batch_size=32",
    "buffer.capacity=2000",
    "env.eval_envs=2",
    "runner.eval_interval=100",
    "runner.log_interval=50",
    # the long runs below would compile under algo.capture=auto (40-60 s at the first update)
    "algo.capture=none",
]


def _run_dirs(log_dir: Path) -> list[Path]:
    return sorted((log_dir / "meow" / "MultiGoal").iterdir())


def test_train_resume_play_export(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert train.main(["--task", "MultiGoal", "--total_steps", "150", f"runner.log_dir={logs}", *SMALL]) == 0
    (run,) = _run_dirs(logs)
    assert (run / "config.yaml").is_file() and (run / "model_150.pt").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    out = capsys.readouterr().out
    assert "final deterministic evaluation" in out and str(run) in out
    assert "final stochastic evaluation" in out and "value calibration: the flow's V(s0)" in out

    # --resume continues the same run's counters into a new directory; the old one is untouched
    before = sorted(p.name for p in run.iterdir())
    assert train.main(["--resume", str(run), "--total_steps", "250"]) == 0
    assert sorted(p.name for p in run.iterdir()) == before
    runs = _run_dirs(logs)
    assert len(runs) == 2 and (runs[1] / "model_250.pt").is_file()
    assert "resumed" in capsys.readouterr().out

    assert play.main([str(runs[1]), "--episodes", "3", "--export"]) == 0
    out = capsys.readouterr().out
    assert "deterministic return" in out and "over 3 episodes" in out
    assert "stochastic return" in out and "soft return earned" in out  # --eval_mode both, the default
    assert play.main([str(runs[1]), "--episodes", "2", "--eval_mode", "stochastic"]) == 0
    out = capsys.readouterr().out
    assert "stochastic return" in out and "over 2 episodes" in out and "deterministic return" not in out
    # the latent at scale 0 is the deterministic action: the same return from the same start states
    argv = [str(runs[1]), "--episodes", "2", "--seed", "5"]
    assert play.main([*argv, "--eval_mode", "deterministic"]) == 0
    deterministic = capsys.readouterr().out.split("deterministic return ")[1].split(" over")[0]
    assert play.main([*argv, "--eval_mode", "stochastic", "--latent_scale", "0"]) == 0
    out = capsys.readouterr().out
    assert f"stochastic (latent scale 0) return {deterministic} over 2 episodes" in out
    exported = torch.jit.load(str(runs[1] / "exported" / "policy.pt"))
    ckpt = torch.load(runs[1] / "model_250.pt", weights_only=False)
    from omegaconf import OmegaConf

    from meow.modules import build_policy

    policy = build_policy(OmegaConf.create(ckpt["config"]), 2, 2)
    policy.load_state_dict(ckpt["learner"]["policy"])
    policy.eval()
    obs = torch.randn(16, 2)
    assert torch.allclose(exported(obs), policy.deterministic(obs), atol=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "Hoppr-v5"], "unknown task 'Hoppr-v5'; did you mean Hopper-v5"),
        (["--task", "Hopper-v5", "algo.lr=-3"], "algo.lr=-3.0 is invalid"),
        (["--task", "Hopper-v5", "algo.batchsize=3"], "unknown key 'algo.batchsize'"),
        (["--resume", "/nonexistent/run"], "does not exist"),
    ],
)
def test_train_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_train_rejects_unknown_algorithms_and_missing_task():
    with pytest.raises(SystemExit) as info:
        train.main(["--task", "Hopper-v5", "--algo", "td3"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        train.main([])


def test_resume_with_another_task_is_refused(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert train.main(["--task", "MultiGoal", "--total_steps", "70", f"runner.log_dir={logs}", *SMALL]) == 0
    (run,) = _run_dirs(logs)
    assert train.main(["--resume", str(run), "--task", "Hopper-v5"]) == 2
    assert "is a MultiGoal run, not --task Hopper-v5" in capsys.readouterr().err


def test_scripts_run_from_any_directory(tmp_path):
    """The scripts find the package and the config files whatever the working directory."""
    import subprocess

    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "--task",
            "MultiGoal",
            "--total_steps",
            "70",
            f"runner.log_dir={tmp_path}",
            *SMALL,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.glob("meow/MultiGoal/*/model_70.pt"))


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path):
    """A cluster scheduler's SIGTERM (or Ctrl-C) ends training with a checkpoint of that step."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "--task",
            "MultiGoal",
            "--total_steps",
            "1000000",
            f"runner.log_dir={tmp_path}",
            *SMALL,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("meow/MultiGoal/*/config.yaml")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # let it take some learning steps
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (saved,) = tmp_path.glob("meow/MultiGoal/*/model_*.pt")
    step = int(saved.stem.split("_")[1])
    assert 0 < step < 1_000_000 and f"interrupted at env step {step:,}" in out
    assert torch.load(saved, weights_only=False)["global_step"] == step


def test_a_wall_clock_budget_ends_the_run_as_if_it_had_reached_its_steps(tmp_path, capsys):
    """--max_minutes: training stops at the first step past the budget (start-up included) and
    ends normally: exit 0, the final checkpoint at that step, its evaluations logged."""
    import time

    logs = tmp_path / "logs"
    started = time.monotonic()
    argv = ["--task", "MultiGoal", "--total_steps", "10000000", "--max_minutes", "0.2"]
    assert train.main([*argv, f"runner.log_dir={logs}", *SMALL]) == 0
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert "wall-clock budget spent (runner.max_minutes=0.2)" in out
    assert 12.0 <= elapsed < 60.0, elapsed
    (run,) = _run_dirs(logs)
    (ckpt,) = run.glob("model_*.pt")
    step = int(ckpt.stem.split("_")[1])
    assert 0 < step < 10_000_000
    assert torch.load(ckpt, weights_only=False)["global_step"] == step
    assert train.main(["--task", "MultiGoal", "--max_minutes", "-1"]) == 2
    assert "runner.max_minutes=-1.0 is invalid" in capsys.readouterr().err


def test_a_gpu_runs_checkpoint_plays_on_the_cpu_and_resumes_only_when_told_how(tmp_path, capsys):
    """A checkpoint as a GPU run with a captured TF32 update saves it: play.py evaluates it on the
    CPU (no update runs there), while resuming its training on the CPU asks what to change."""
    logs = tmp_path / "logs"
    assert train.main(["--task", "MultiGoal", "--total_steps", "100", f"runner.log_dir={logs}", *SMALL]) == 0
    (run,) = _run_dirs(logs)
    ckpt = torch.load(run / "model_100.pt", weights_only=False)
    ckpt["config"]["device"] = "cuda:0"
    ckpt["config"]["algo"].update(capture="cudagraph", matmul_precision="tf32")
    gpu_run = tmp_path / "gpu_run"
    gpu_run.mkdir()
    torch.save(ckpt, gpu_run / "model_100.pt")
    capsys.readouterr()

    assert play.main([str(gpu_run / "model_100.pt"), "--episodes", "2"]) == 0
    assert "over 2 episodes" in capsys.readouterr().out
    assert torch.get_float32_matmul_precision() == "highest"

    resume = ["--resume", str(gpu_run / "model_100.pt"), "--total_steps", "150", "device=cpu"]
    assert train.main(resume) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "algo.capture=cudagraph needs CUDA, but device=cpu" in err
    assert train.main([*resume, "algo.capture=auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "algo.matmul_precision=tf32 needs CUDA" in err
    assert train.main([*resume, "algo.capture=auto", "algo.matmul_precision=float32"]) == 0
