"""The shared-memory gradient sum (meow.distributed_shm), in one process: two ranks as two threads
mapping one file, a dead peer, a peer that never comes, and the MEOW_DIST_SHM setting."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

from meow import distributed_shm
from meow.distributed import LaunchError, init_from_env
from meow.distributed_shm import SharedMemoryAllReduce

pytestmark = pytest.mark.skipif(not distributed_shm.supported(), reason="no shared-memory all-reduce here")

NUMEL = 1000


def _file(tmp_path, world: int):
    path = tmp_path / "grad"
    with open(path, "wb") as f:
        f.truncate(SharedMemoryAllReduce.nbytes(world, NUMEL))
    return path


def test_two_ranks_get_the_same_sum_in_rank_order_over_many_iterations(tmp_path):
    path = _file(tmp_path, 2)
    reducers = [SharedMemoryAllReduce(path, r, 2, NUMEL, [0, 0], timeout_s=30) for r in (0, 1)]
    inputs = [
        [torch.randn(NUMEL, generator=torch.Generator().manual_seed(10 * k + r)) for k in range(7)]
        for r in (0, 1)
    ]
    outputs: list[list[torch.Tensor]] = [[], []]

    def run(r: int) -> None:
        for x in inputs[r]:  # seven iterations: both slot parities, each reused
            outputs[r].append(reducers[r].allreduce_(x.clone()))

    threads = [threading.Thread(target=run, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for k in range(7):
        expected = inputs[0][k] + inputs[1][k]
        assert torch.equal(outputs[0][k], expected) and torch.equal(outputs[1][k], expected)


def test_a_dead_peer_ends_the_wait(tmp_path):
    path = _file(tmp_path, 2)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    reducer = SharedMemoryAllReduce(path, 0, 2, NUMEL, [0, gone.pid], timeout_s=30)
    with pytest.raises(ProcessLookupError, match=f"rank 1 \\(process {gone.pid}\\) exited"):
        reducer.allreduce_(torch.ones(NUMEL))


def test_a_peer_that_never_arrives_times_out(tmp_path):
    import os

    path = _file(tmp_path, 2)
    reducer = SharedMemoryAllReduce(path, 0, 2, NUMEL, [0, os.getpid()], timeout_s=0.5)
    with pytest.raises(TimeoutError, match=r"timed out after 0.5 s waiting for rank\(s\) \[1\]"):
        reducer.allreduce_(torch.ones(NUMEL))


def test_meow_dist_shm_must_be_0_or_1(monkeypatch):
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}
    monkeypatch.setenv("MEOW_DIST_SHM", "yes")
    with pytest.raises(LaunchError, match="MEOW_DIST_SHM=yes is invalid; valid: 1 \\(default\\) or 0"):
        init_from_env(env)
