"""--algo sac on a Gymnasium task: Stable-Baselines3's SAC, logging MEow's metric names; the
wall-clock budget of the baselines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]
train = load_script("train")


def test_sb3_sac_logs_meows_metric_names(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["--task", "InvertedPendulum-v5", "--algo", "sac", "--total_steps", "600", "env.eval_envs=1"]
    args += ["runner.warmup_steps=300", "runner.log_interval=100", "runner.eval_interval=300"]
    assert train.main([*args, f"runner.log_dir={tmp_path}"]) == 0
    (run,) = (tmp_path / "sac" / "InvertedPendulum-v5").iterdir()
    assert (run / "model.zip").is_file()
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"charts/episodic_return", "charts/SPS", "eval/return_mean"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("eval/return_mean")] == [300, 600]


def test_a_baseline_the_task_does_not_have_is_a_one_line_error(tmp_path, capsys):
    assert train.main(["--task", "Hopper-v5", "--algo", "ppo", f"runner.log_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --algo ppo is not available for Hopper-v5 (gymnasium task); valid: ")
    assert "sac (gymnasium tasks)" in err and "\n" not in err
    with pytest.raises(SystemExit) as exit_:
        train.main(["--task", "Hopper-v5", "--algo", "td3"])
    assert (
        exit_.value.code == 2
        and "--algo td3 is not available; valid: meow, sac, ppo" in capsys.readouterr().err
    )


def test_an_installed_package_adds_a_baseline_through_its_entry_point(toysim, capsys):
    """The baseline is found by env kind in the ``meow.baselines`` group, not through the env kind;
    train.py has turned --max_iterations into runner.total_steps (iterations x env.num_envs) and
    passes the iterations on as given."""
    log_dir = toysim / "logs"
    argv = ["--task", "ToySim", "--algo", "ppo", "--max_iterations", "3", f"runner.log_dir={log_dir}"]
    assert train.main(argv) == 0
    assert (log_dir / "ppo" / "ToySim" / "called.txt").read_text() == "12 3 True"
    assert train.main(["--task", "Hopper-v5", "--algo", "ppo", f"runner.log_dir={log_dir}"]) == 2
    err = capsys.readouterr().err
    assert "valid: " in err and "ppo (toysim tasks)" in err and "sac (gymnasium tasks)" in err


SAC_SMALL = ["runner.log_interval=250", "runner.eval_interval=500", "env.eval_envs=2", "torch_threads=1"]


def test_a_sac_checkpoint_restores_the_networks_optimizers_and_replay_buffer(tmp_path, capsys):
    import torch
    from stable_baselines3 import SAC

    from meow.utils.seeding import set_rng_state
    from meow_baselines.sac import _load_sac

    run = tmp_path / "sac"
    args = ["--task", "InvertedPendulum-v5", "--algo", "sac", "--run_dir", str(run), "--total_steps", "400"]
    assert train.main([*args, "runner.warmup_steps=200", "runner.checkpoint_interval=200", *SAC_SMALL]) == 0
    assert sorted(p.name for p in run.glob("model*")) == ["model.zip", "model_200.pt", "model_400.pt"]
    ckpt = train.read_run_checkpoint(str(run))
    assert ckpt["path"] == str(run / "model_400.pt") and ckpt["global_step"] == 400

    import gymnasium as gym

    fresh = SAC("MlpPolicy", gym.make("InvertedPendulum-v5"), buffer_size=400, seed=7, device="cpu")
    _load_sac(fresh, ckpt, run / "replay_buffer.pt", set_rng_state)
    assert fresh.num_timesteps == 400 and fresh._n_updates == ckpt["n_updates"] == 200
    saved_policy, got_policy = ckpt["params"]["policy"], fresh.policy.state_dict()
    assert saved_policy.keys() == got_policy.keys()
    assert all(torch.equal(got_policy[k], v) for k, v in saved_policy.items())
    for name, optimizer in (
        ("actor.optimizer", fresh.actor.optimizer),
        ("critic.optimizer", fresh.critic.optimizer),
    ):
        state = optimizer.state_dict()["state"]
        assert state and all(
            torch.equal(state[i]["exp_avg"], s["exp_avg"]) for i, s in ckpt["params"][name]["state"].items()
        )
    assert torch.equal(fresh.log_ent_coef.detach(), ckpt["log_ent_coef"])
    # every transition of the 400 steps, in the order they were taken
    sb3 = SAC.load(run / "model.zip")
    assert fresh.replay_buffer.full and fresh.replay_buffer.pos == 0  # its 400 places, filled once
    saved_buffer = torch.load(run / "replay_buffer.pt", weights_only=True)
    assert torch.equal(torch.from_numpy(fresh.replay_buffer.observations[:400]), saved_buffer["observations"])
    assert len(set(map(tuple, fresh.replay_buffer.observations[:400, 0].round(6).tolist()))) > 350
    sb3_actor = sb3.policy.state_dict()
    assert all(torch.equal(sb3_actor[k], v) for k, v in fresh.policy.state_dict().items())


@pytest.mark.slow
def test_a_sac_run_killed_mid_way_leaves_loadable_checkpoints_and_resumes_its_curve(tmp_path, capsys):
    """SIGKILL at a random moment after a few checkpoints (saves are frequent, so often during one)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from meow.runners.checkpoint import safe_load
    from meow_baselines.sac import SAC_FORMAT
    from meow_compare.curves import read_run

    run = tmp_path / "sac"
    args = ["--task", "InvertedPendulum-v5", "--algo", "sac", "--run_dir", str(run), "--total_steps", "1500"]
    args += ["runner.warmup_steps=1300", "runner.checkpoint_interval=50", *SAC_SMALL]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "source")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args], env=env)
    deadline = time.monotonic() + 300
    while not (run / "model_750.pt").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(int(p.stem.split("_")[1]) for p in run.glob("model_*.pt"))
    assert saved[0] == 50 and 750 <= saved[-1] < 1500
    for path in [*run.glob("model_*.pt"), run / "replay_buffer.pt"]:
        data = safe_load(path)  # complete files only: a partial save is a hidden .tmp
        assert data["global_step"] in saved and data.get("format", SAC_FORMAT) == SAC_FORMAT
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp") and not p.name.startswith(".")] == []

    capsys.readouterr()
    assert train.main(["--resume", str(run), "--run_dir", str(run)]) == 0
    assert f"resumed {run / f'model_{saved[-1]}.pt'} at env step {saved[-1]:,}" in capsys.readouterr().out
    curves = read_run(run)
    assert curves["eval/return_mean"].steps == [500.0, 1000.0, 1500.0]
    assert curves["eval/stochastic_return_mean"].steps == [500.0, 1000.0, 1500.0]
    assert curves["charts/SPS"].steps == [250.0 * k for k in range(1, 7)]


def test_a_wall_clock_budget_ends_sb3_sac_as_if_it_had_reached_its_steps(tmp_path, capsys):
    """--max_minutes with --algo sac: SAC stops at the first step past the budget, writes its
    final checkpoint and model.zip, and the command exits 0."""
    import time

    args = ["--task", "InvertedPendulum-v5", "--algo", "sac", "--total_steps", "10000000"]
    args += ["--max_minutes", "0.25", "env.eval_envs=0", "runner.warmup_steps=100", "runner.log_interval=100"]
    started = time.monotonic()
    assert train.main([*args, f"runner.log_dir={tmp_path}"]) == 0
    elapsed = time.monotonic() - started
    assert "wall-clock budget spent (runner.max_minutes=0.25): SAC stopped" in capsys.readouterr().out
    assert 15.0 <= elapsed < 75.0, elapsed
    (run,) = (tmp_path / "sac" / "InvertedPendulum-v5").iterdir()
    assert (run / "model.zip").is_file()
    (ckpt,) = run.glob("model_*.pt")
    assert 100 < int(ckpt.stem.split("_")[1]) < 10_000_000


def _group_script(tmp_path: Path, on_sigint: str) -> list[str]:
    """A command whose process starts a child in its own process group; both record SIGINT in a
    file and then do ``on_sigint`` (``exit``, or ``ignore`` it)."""
    script = tmp_path / "group.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "from pathlib import Path\n"
        "name, mode = sys.argv[1], sys.argv[2]\n"
        "def on_int(signum, frame):\n"
        "    Path(sys.argv[3], name).write_text('sigint')\n"
        "    if mode == 'exit':\n"
        "        sys.exit(3)\n"
        "signal.signal(signal.SIGINT, on_int)\n"
        "if name == 'parent':\n"
        "    subprocess.Popen([sys.executable, __file__, 'child', mode, sys.argv[3]])\n"
        "Path(sys.argv[3], name + '.pid').write_text(str(__import__('os').getpid()))\n"
        "time.sleep(60)\n"
    )
    return [sys.executable, str(script), "parent", on_sigint, str(tmp_path)]


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.parametrize("on_sigint", ["exit", "ignore"])
def test_a_library_run_past_its_deadline_is_stopped_with_its_whole_process_group(tmp_path, on_sigint):
    """What ends an Isaac baseline at runner.max_minutes: SIGINT to the library's process group
    (its child processes too) at the deadline, and SIGKILL after the grace period when ignored."""
    import time

    from meow_isaac.baselines import run_within

    cmd = _group_script(tmp_path, on_sigint)
    started = time.monotonic()
    status, spent = run_within(cmd, tmp_path, deadline=started + 3.0, grace_s=2.0)
    elapsed = time.monotonic() - started
    assert spent
    assert (tmp_path / "parent").read_text() == (tmp_path / "child").read_text() == "sigint"
    if on_sigint == "exit":
        assert status == 3 and 3.0 <= elapsed < 4.9, (status, elapsed)
    else:
        assert status == -9 and 5.0 <= elapsed < 8.0, (status, elapsed)
    deadline = time.monotonic() + 5.0
    while _alive(int((tmp_path / "child.pid").read_text())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int((tmp_path / "child.pid").read_text()))


def test_a_library_run_that_ends_before_its_deadline_keeps_its_exit_status(tmp_path):
    from meow_isaac.baselines import run_within

    assert run_within([sys.executable, "-c", "raise SystemExit(4)"], tmp_path, deadline=None) == (4, False)
    assert run_within([sys.executable, "-c", "pass"], tmp_path, deadline=1e12) == (0, False)


def test_the_library_process_runs_torch_on_the_runs_thread_count(tmp_path, monkeypatch):
    """``torch_threads`` reaches the library's process, whose torch would otherwise take a thread
    per core (2 on CI's machine) and spin against a run beside it."""
    from meow_isaac.baselines import library_env, run_within

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    probe = "import pathlib, torch; pathlib.Path('threads').write_text(str(torch.get_num_threads()))"
    assert run_within([sys.executable, "-c", probe], tmp_path, None, env=library_env(1)) == (0, False)
    assert (tmp_path / "threads").read_text() == "1"


def test_a_thread_count_of_zero_leaves_the_library_process_environment_as_it_is(monkeypatch):
    from meow_isaac.baselines import library_env

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    env = library_env(0)
    assert env == dict(os.environ) and env["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in env
