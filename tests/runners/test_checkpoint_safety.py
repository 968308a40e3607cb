"""Checkpoints are data, saves never leave a damaged file in place of a good one, and a broken
environment or a full disk ends a run with one line and the last good checkpoint on disk."""

from __future__ import annotations

import os
import pickle
import resource
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from script_loader import load_script

from meow.config import config_from_checkpoint
from meow.envs import make_env_from_config
from meow.runners import CheckpointError, CheckpointWriteError, OffPolicyRunner, read_checkpoint, safe_load

train = load_script("train")
play = load_script("play")
TINY = ["algo.coupling_hidden=[16]", "algo.scale_hidden=[16]", "algo.shift_hidden=[16]", "env.eval_envs=0"]


class _RunsCode:
    """A pickle that runs a shell command when it is loaded with plain ``pickle``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_unread(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "model_100.pt"
    torch.save({"format": "meow-checkpoint/1", "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refused .*model_100.pt: it names the Python object .*system"):
        read_checkpoint(path)
    assert play.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refused") and err.count("\n") == 1
    assert train.main(["--resume", str(tmp_path), f"runner.log_dir={tmp_path / 'logs'}"]) == 2
    assert not marker.exists() and not (tmp_path / "logs").exists()
    # A bare pickle (newer protocol, no torch container) is refused as well.
    (tmp_path / "model_200.pt").write_bytes(pickle.dumps({"payload": _RunsCode(marker)}, protocol=5))
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*model_200.pt: UnpicklingError"):
        read_checkpoint(tmp_path / "model_200.pt")
    assert not marker.exists()
    # The same file through torch's unrestricted loader does run the command: the test would
    # notice a loader that did.
    torch.load(path, weights_only=False)
    assert marker.exists()


def _run(cfg, log_dir: Path) -> OffPolicyRunner:
    env = make_env_from_config(cfg, cfg.env.num_envs)
    return OffPolicyRunner(cfg, env, None, log_dir)


def test_a_stop_requested_during_an_evaluation_lets_it_finish_and_be_logged(multigoal_cfg, tmp_path):
    """A SIGTERM sets ``stop_requested``; the runner stops at its next iteration, so the
    evaluation under way is logged and the checkpoint written then does not skip it."""
    cfg = multigoal_cfg(*TINY[:-1], "env.eval_envs=2", "runner.warmup_steps=50", "runner.eval_interval=100")
    env = make_env_from_config(cfg, cfg.env.num_envs)
    eval_env = make_env_from_config(cfg, cfg.env.eval_envs)
    runner = OffPolicyRunner(cfg, env, eval_env, tmp_path)
    evaluate = runner.evaluate_modes

    def signalled_mid_evaluation(*args, **kwargs):
        runner.stop_requested = True  # what scripts/train.py's SIGTERM handler does
        return evaluate(*args, **kwargs)

    runner.evaluate_modes = signalled_mid_evaluation
    with pytest.raises(KeyboardInterrupt, match="stop requested"):
        runner.learn()
    assert runner.global_step == 100 and runner.num_evals == 1
    assert [e[0] for e in runner.evaluations] == [100]
    env.close()
    eval_env.close()


def test_a_checkpoint_in_the_earlier_layout_loads_as_data(multigoal_cfg, tmp_path):
    """Checkpoints written before the RNG state became tensors hold NumPy's state as an array."""
    cfg = multigoal_cfg(*TINY, "runner.total_steps=200", "runner.checkpoint_interval=1000")
    runner = _run(cfg, tmp_path)
    runner.learn()
    state = runner.state_dict()
    state["rng"]["numpy"] = np.random.get_state()  # the earlier layout
    state["config"]["env"]["isaaclab_overrides"] = state["config"]["env"].pop("sim_overrides")
    for key in ("keep_checkpoints", "save_buffer_max_gib"):
        del state["config"]["runner"][key]
    torch.save(state, tmp_path / "model_999.pt")
    # the earlier buffer layout: clones of the filled steps
    old_buffer = {k: v.clone() for k, v in runner.buffer.state_dict().items() if torch.is_tensor(v)}
    info = {k: v for k, v in runner.buffer.state_dict().items() if not torch.is_tensor(v)}
    torch.save({"global_step": 200, **info, **old_buffer}, tmp_path / "replay_buffer.pt")
    expected = np.random.get_state()[1].copy()
    np.random.seed(123)
    ckpt = read_checkpoint(tmp_path / "model_999.pt")
    resumed = _run(config_from_checkpoint(ckpt["config"]), None)
    resumed.load(ckpt)
    assert np.array_equal(np.random.get_state()[1], expected)
    assert len(resumed.buffer) == len(runner.buffer) == 200
    assert torch.equal(resumed.buffer.obs[:200], runner.buffer.obs[:200])


def test_the_buffer_is_saved_from_its_own_memory_and_only_the_filled_part(multigoal_cfg, tmp_path):
    cfg = multigoal_cfg(*TINY, "runner.total_steps=300", "buffer.capacity=100000")
    runner = _run(cfg, tmp_path)
    runner.learn()
    state = runner.buffer.state_dict()
    for key in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated"):
        assert state[key].data_ptr() == getattr(runner.buffer, key).data_ptr()  # no copy
        assert state[key].shape[0] == 300
    size = (tmp_path / "replay_buffer.pt").stat().st_size
    assert runner.buffer.filled_nbytes <= size < runner.buffer.filled_nbytes + 20_000 < runner.buffer.nbytes


def test_a_buffer_above_the_size_limit_is_skipped_with_one_notice(multigoal_cfg, tmp_path, capsys):
    cfg = multigoal_cfg(*TINY, "runner.total_steps=300", "runner.checkpoint_interval=100")
    cfg.runner.save_buffer_max_gib = 1e-6  # 1 KiB
    runner = _run(cfg, tmp_path)
    runner.learn()
    out = capsys.readouterr().out
    notices = [line for line in out.splitlines() if "replay buffer not saved" in line]
    assert len(notices) == 1 and "runner.save_buffer_max_gib=1e-06" in notices[0]
    assert not (tmp_path / "replay_buffer.pt").exists()
    assert sorted(p.name for p in tmp_path.glob("model_*.pt")) == [
        "model_100.pt",
        "model_200.pt",
        "model_300.pt",
    ]


def test_keep_checkpoints_keeps_the_newest(multigoal_cfg, tmp_path):
    cfg = multigoal_cfg(
        *TINY, "runner.total_steps=500", "runner.checkpoint_interval=100", "runner.keep_checkpoints=2"
    )
    _run(cfg, tmp_path).learn()
    assert sorted(p.name for p in tmp_path.glob("model_*.pt")) == ["model_400.pt", "model_500.pt"]


@contextmanager
def _file_size_limit(nbytes: int):
    """Writes past ``nbytes`` fail in this process (EFBIG), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(multigoal_cfg, tmp_path):
    cfg = multigoal_cfg(*TINY, "runner.total_steps=100", "runner.save_buffer=false")
    runner = _run(cfg, tmp_path)
    runner.learn()
    good = (tmp_path / "model_100.pt").read_bytes()
    runner.global_step = 200
    with _file_size_limit(4096), pytest.raises(CheckpointWriteError) as err:
        runner.save()
    msg = str(err.value)
    assert "\n" not in msg and "model_200.pt" in msg and "File too large" in msg
    assert f"the previous checkpoint {tmp_path / 'model_100.pt'} is intact" in msg
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".pt", ".tmp")) == ["model_100.pt"]
    assert (tmp_path / "model_100.pt").read_bytes() == good
    assert read_checkpoint(tmp_path)["global_step"] == 100


def test_a_full_disk_ends_training_with_one_line(tmp_path, capsys):
    args = ["--task", "MultiGoal", *TINY, "runner.total_steps=100", "runner.warmup_steps=50"]
    with _file_size_limit(4096):
        status = train.main([*args, f"runner.log_dir={tmp_path}", "runner.progress=false"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: cannot write checkpoint") and err.count("\n") == 1
    (run,) = (tmp_path / "meow" / "MultiGoal").iterdir()
    assert not list(run.glob("*.pt")) and not list(run.glob(".*.tmp"))


def test_a_damaged_buffer_file_is_reported_and_refilled(multigoal_cfg, tmp_path, capsys):
    args = ["--task", "MultiGoal", *TINY, "runner.total_steps=200", "runner.warmup_steps=50"]
    assert train.main([*args, f"runner.log_dir={tmp_path}", "runner.progress=false"]) == 0
    (run,) = (tmp_path / "meow" / "MultiGoal").iterdir()
    data = (run / "replay_buffer.pt").read_bytes()
    (run / "replay_buffer.pt").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert train.main(["--resume", str(run), "runner.total_steps=300", "runner.progress=false"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "replay_buffer.pt" in line]
    assert len(lines) == 2  # the notice, then the new run's own save
    assert "is damaged (" in lines[0] and "it refills before updates resume" in lines[0]
    (resumed,) = [p for p in (tmp_path / "meow" / "MultiGoal").iterdir() if p != run]
    assert safe_load(resumed / "replay_buffer.pt")["pos"] == 100  # refilled from empty: 100 new steps


def test_a_nan_from_the_env_stops_training_and_keeps_the_last_good_checkpoint(toysim, capsys):
    # ToySim: 4 envs, a checkpoint every 80 env steps; the 30th vectorized step (env step 120)
    # returns a NaN reward, between the checkpoints at 80 and 160.
    log_dir = toysim / "logs"
    status = train.main(["--task", "ToySim", "env.kwargs.nan_at=30", f"runner.log_dir={log_dir}"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert "ToySim returned a non-finite (NaN or inf) reward at env step 120" in err
    (run,) = (log_dir / "meow" / "ToySim").iterdir()
    assert f"the newest checkpoint, {run / 'model_80.pt'}, is the last good one" in err
    assert sorted(p.name for p in run.glob("model_*.pt")) == ["model_80.pt"]
    ckpt = read_checkpoint(run)
    assert all(torch.isfinite(t).all() for t in ckpt["learner"]["policy"].values())
