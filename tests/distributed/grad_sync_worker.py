"""Two MEow learners per rank under torchrun: one averaging gradients with the overlapped,
bucketed all-reduce, one with a single all-reduce of the whole gradient after backward.

    MEOW_TEST_RECORD=FILE torchrun --standalone --nproc_per_node 2 grad_sync_worker.py CAPTURE

Both start from the same weights and see the same rank-dependent batches and random draws, so
their parameters must stay bitwise equal. Rank 0 saves, into FILE, both learners' flat
parameters after each update, every rank's flat parameters, the buckets, how many of them
each backward pass sent before it ended, and whether the whole-gradient sum went through shared
memory (``MEOW_DIST_SHM``). Every rank then leaves the group and exits with an error if a thread
that joining started is still running.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "source"))

from meow.algorithms import MEow
from meow.distributed import init_from_env
from meow.modules import FlowPolicy
from meow.storage import TransitionBatch

OBS, ACT, BATCH, UPDATES = 5, 3, 64, 6


def learner(ctx, capture: str, overlapped: bool) -> MEow:
    torch.manual_seed(0)  # the same initial weights for both learners and on every rank
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
    if overlapped:
        sync = ctx.gradient_sync(bucket_numel=1500, overlap=True)  # several buckets for a small flow
        return MEow(policy, capture=capture, grad_sync=sync)
    return MEow(policy, capture=capture, grad_sync=ctx.gradient_sync(overlap=False))  # one whole sum


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


def main() -> None:
    capture = sys.argv[1]
    before = threads()
    ctx = init_from_env()
    overlapped, whole = learner(ctx, capture, True), learner(ctx, capture, False)
    history, early = [], []
    for step in range(UPDATES):
        for alg in (overlapped, whole):
            torch.manual_seed(step)  # the same dropout masks in both learners
            alg.update(batch(ctx.rank, step))
        early.append(overlapped.grad_sync.launched_in_backward)
        history.append((overlapped._flat.detach().clone(), whole._flat.detach().clone()))
    ranks = [torch.empty_like(overlapped._flat.detach()) for _ in range(ctx.world_size)]
    dist.all_gather(ranks, overlapped._flat.detach().clone())
    if ctx.rank == 0:
        torch.save(
            {
                "history": history,
                "ranks": ranks,
                "buckets": overlapped.grad_sync.buckets,
                "numel": overlapped._flat.numel(),
                "early": early,
                "shared_memory": ctx.uses_shared_memory,
            },
            os.environ["MEOW_TEST_RECORD"],
        )
    # Leaving the group ends every thread gloo started, while the interpreter still runs: no
    # work object of an update may keep gloo's transport alive.
    ctx.close()
    if threads() > before:
        sys.exit(
            f"rank {ctx.rank}: {threads()} threads after leaving the process group, {before} before joining"
        )


if __name__ == "__main__":
    main()
