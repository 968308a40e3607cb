"""A MEow learner per rank under torchrun, recording its flat gradient before and after the
gradient all-reduce of every update.

    MEOW_TEST_RECORD=FILE torchrun --standalone --nproc_per_node 2 grad_sync_worker.py

Every rank starts from the same weights and updates on its own batches. Rank 0 saves, into FILE,
every rank's gradients before and after each all-reduce and every rank's final flat parameters.
Every rank then leaves the group and exits with an error if a thread that joining started is
still running.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from meow.algorithms import MEow
from meow.distributed import init_from_env
from meow.modules import FlowPolicy
from meow.storage import TransitionBatch

OBS, ACT, BATCH, UPDATES = 5, 3, 64, 6


class RecordingSync:
    """Passes the learner's ``grad_sync`` calls on, keeping the gradient before and after ``end``."""

    def __init__(self, sync) -> None:
        self.sync = sync
        self.before: list[torch.Tensor] = []
        self.after: list[torch.Tensor] = []

    def attach(self, flat, params) -> None:
        self.sync.attach(flat, params)

    def begin(self, overlap: bool = True) -> None:
        self.sync.begin(overlap=overlap)

    def end(self, grad: torch.Tensor) -> None:
        self.before.append(grad.clone())
        self.sync.end(grad)
        self.after.append(grad.clone())


def learner(sync: RecordingSync) -> MEow:
    torch.manual_seed(0)  # the same initial weights on every rank
    policy = FlowPolicy(
        OBS,
        ACT,
        alpha=0.2,
        log_sigma_min=-5.0,
        log_sigma_max=2.0,
        num_couplings=2,
        coupling_hidden=(16, 16),
        scale_hidden=(16, 16),
        shift_hidden=(32, 32),
    )
    return MEow(policy, capture="none", grad_sync=sync)


def batch(rank: int, step: int) -> TransitionBatch:
    g = torch.Generator().manual_seed(1000 * rank + step)
    return TransitionBatch(
        obs=torch.randn(BATCH, OBS, generator=g),
        actions=torch.rand(BATCH, ACT, generator=g) * 2 - 1,
        rewards=torch.randn(BATCH, generator=g),
        next_obs=torch.randn(BATCH, OBS, generator=g),
        terminated=(torch.rand(BATCH, generator=g) < 0.1).float(),
        truncated=torch.zeros(BATCH, dtype=torch.bool),
    )


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def gather(t: torch.Tensor, world: int) -> list[torch.Tensor]:
    out = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(out, t.contiguous())
    return out


def main() -> None:
    before = threads()
    ctx = init_from_env()
    sync = RecordingSync(ctx.gradient_sync())
    alg = learner(sync)
    for step in range(UPDATES):
        alg.update(batch(ctx.rank, step))
    world = ctx.world_size
    record = {
        "before": gather(torch.stack(sync.before), world),
        "after": gather(torch.stack(sync.after), world),
        "params": gather(alg._flat.detach().clone(), world),
    }
    if ctx.rank == 0:
        torch.save(record, os.environ["MEOW_TEST_RECORD"])
    # Leaving the group ends every thread gloo started, while the interpreter still runs: no
    # work object of an update may keep gloo's transport alive.
    ctx.close()
    if threads() > before:
        sys.exit(
            f"rank {ctx.rank}: {threads()} threads after leaving the process group, {before} before joining"
        )


if __name__ == "__main__":
    main()
