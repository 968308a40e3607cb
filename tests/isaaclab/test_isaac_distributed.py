"""Isaac-Ant on two torchrun ranks (gloo, CPU), launched the Isaac Lab way:
``./isaaclab.sh -p -m torch.distributed.run ... scripts/train.py --distributed``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "distributed" / "dist_worker.py"


def test_isaac_ant_trains_on_two_ranks(tmp_path):
    record = tmp_path / "record"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MEOW_TEST_RECORD": str(record)}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [
            str(ROOT / "isaaclab.sh"),
            "-p",
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(WORKER),
            "--task",
            "Isaac-Ant-v0",
            "--distributed",
            "--device",
            "cpu",
            "--num_envs",
            "4",  # per rank
            "--max_iterations",
            "30",  # per rank: 30 x 4 envs x 2 ranks = 240 env steps
            "--headless",
            "env.episode_length_s=0.5",
            "runner.warmup_steps=80",
            "algo.batch_size=32",
            "runner.log_interval=80",
            "runner.progress=false",
            "torch_threads=1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "meow" / "Isaac-Ant").iterdir()
    ckpt = torch.load(run / "model_240.pt", weights_only=False)
    assert ckpt["world_size"] == 2 and ckpt["global_step"] == 240 and ckpt["num_updates"] > 0
    assert ckpt["config"]["env"]["num_envs"] == 4
    assert (run / "params" / "env.yaml").is_file() and len(list(run.glob("events.out.tfevents.*"))) == 1
    assert proc.stdout.count("[meow] task Isaac-Ant") == 1

    r0, r1 = (torch.load(record / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["env_steps"] == r1["env_steps"] == 120
    assert not torch.equal(r0["observed"], r1["observed"])  # own simulations, own seeds
    for part in ("policy", "target", "normalizer"):
        for key, value in r0["learner"][part].items():
            assert torch.equal(value, r1["learner"][part][key]), f"{part}.{key} differs between ranks"
