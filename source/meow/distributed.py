"""Data-parallel training over ``torch.distributed``: one process per GPU (or CPU rank), launched by torchrun.

    torchrun --nproc_per_node 4 scripts/train.py --task Isaac-Ant-v0 --distributed --num_envs 4096

Every rank runs its own environments (``--num_envs`` per rank) and its own replay buffer, and
holds a full copy of the learner. The copies are kept identical as follows:

* **Parameters** start identical: rank 0's policy, target, normalizer and optimizer state are
  broadcast when training starts (also after a resume).
* **Gradients** are averaged every update, before the grad-norm clip (the learner's
  ``grad_sync``, :class:`GradientAllReduce`): the learner's one flat gradient is all-reduced
  once after backward (NCCL for CUDA tensors, gloo for CPU ones) and divided by the world size,
  as rsl_rl does. Every rank then applies the same Adam step to the same weights, so weights and
  optimizer state stay identical without ever being sent again.
* **Observation normalizer**: every rank's batch moments (count, mean, variance) are gathered
  and merged in rank order on every rank before the running statistics are updated, so the
  statistics are those of all ranks' observations and identical everywhere.
* **Random numbers** differ on purpose: rank ``r`` seeds torch and its environments with
  ``seed + r * num_envs`` (every environment seed stays distinct across ranks), so ranks
  explore differently.
* **Stop decisions** are collective: a SIGTERM/SIGINT only sets a flag, and the ranks agree
  (one small all-reduce every :attr:`DistContext.check_every` iterations) to stop at the same
  iteration. A non-finite loss on any rank stops all ranks at the next log interval.

Only rank 0 writes: TensorBoard, console lines, ``config.yaml`` and checkpoints (which record the
world size). The other ranks print only errors. Env steps in logs and checkpoints are summed
over ranks. A rank that loses contact with the others raises :class:`DistributedError`, a
one-line message: at its next collective when a peer exited or died (its connections close), or
after the process-group timeout (``MEOW_DIST_TIMEOUT`` seconds, default 600) when a peer hangs
or its node vanishes.

Deliberately simple (docs/DISTRIBUTED.md): a shared-memory sum for CPU ranks on one host and an
all-reduce in buckets overlapped with backward were here once; they served a 2-rank speed-up on a
2-core CPU, which is no longer a goal, and no GPU measurement showed the overlap paying, so both went.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""The environment torchrun gives each worker, and that :func:`init_from_env` needs."""

DEFAULT_TIMEOUT_S = 600.0
LAUNCH_HINT = "torchrun --nproc_per_node N scripts/train.py --distributed ... (see README, 'Several GPUs')"


class LaunchError(ValueError):
    """``--distributed`` in a process that torchrun did not start, or a bad distributed setting."""


class DistributedError(RuntimeError):
    """This rank lost contact with the others: a peer died, exited early or hung past the timeout."""


def _timeout_from_env() -> float:
    raw = os.environ.get("MEOW_DIST_TIMEOUT", "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise LaunchError(f"MEOW_DIST_TIMEOUT={raw} is invalid; valid: a number of seconds > 0")
    return value


class DistContext:
    """This process's place in the group, and the collectives the runner and learner use.

    Every collective goes through a method here, so that a failure becomes a one-line
    :class:`DistributedError` naming this rank and what it was doing.

    Args:
        rank: global rank (0 .. world_size - 1).
        world_size: number of processes.
        local_rank: rank on this node; picks the GPU ``cuda:<local_rank>``.
        timeout_s: seconds a collective may wait for the other ranks.
        check_every: iterations between the collective stop checks (a SIGTERM on any rank
            stops every rank within this many iterations).
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        local_rank: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        check_every: int = 25,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.timeout_s = timeout_s
        self.check_every = check_every
        self.healthy = True
        """False once a collective failed: the group is then torn down without a goodbye."""

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files and prints progress."""
        return self.rank == 0

    # ------------------------------------------------------------------ setup
    def configure(self, cfg) -> None:
        """Per-rank settings of a run config: ``cuda:<local_rank>`` for a CUDA device, and the
        rank's seed ``seed + rank * env.num_envs`` (rank 0 keeps the configured seed, which is the
        one checkpoints record)."""
        dev = torch.device(cfg.device)
        if dev.type == "cuda":
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise LaunchError(
                    f"LOCAL_RANK={self.local_rank} but this node has {count} GPU(s); "
                    f"valid: --nproc_per_node at most {count}"
                )
            cfg.device = f"cuda:{self.local_rank}"
            torch.cuda.set_device(self.local_rank)
        cfg.seed = int(cfg.seed) + self.rank * int(cfg.env.num_envs)

    # ------------------------------------------------------------ collectives
    def _fail(self, what: str, err: BaseException) -> DistributedError:
        self.healthy = False
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return DistributedError(
            f"rank {self.rank} of {self.world_size} lost contact with the other ranks during {what} "
            f"({detail[:200]}); another rank stopped, died or hung (see its log)"
        )

    def _run(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DistributedError:
            raise
        except (RuntimeError, ValueError, OSError) as err:
            raise self._fail(what, err) from None

    def average_(self, grad: Tensor) -> Tensor:
        """Overwrites ``grad`` with its mean over ranks: one all-reduce, then division by the world size."""
        if self.world_size > 1:
            self._run("the gradient all-reduce", dist.all_reduce, grad)
            grad.div_(self.world_size)
        return grad

    def gradient_sync(self) -> GradientAllReduce:
        """The learner's gradient averaging (see :class:`GradientAllReduce`)."""
        return GradientAllReduce(self)

    def reduce_moments(self, count: Tensor, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Moments of the union of every rank's batch, given this rank's: gathered from all ranks
        and merged in rank order, so every rank computes bit-identical statistics."""
        if self.world_size == 1:
            return count, mean, var
        # float64 for the merge; the result is cast back to the statistics' dtypes.
        mine = torch.cat([count.reshape(1).double(), mean.reshape(-1).double(), var.reshape(-1).double()])
        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        self._run("the observation-normalizer sync", dist.all_gather, parts, mine)
        d = mean.numel()
        total = parts[0][0]
        m, v = parts[0][1 : 1 + d], parts[0][1 + d :]
        for part in parts[1:]:
            n_b, m_b, v_b = part[0], part[1 : 1 + d], part[1 + d :]
            new_total = total + n_b
            delta = m_b - m
            frac = n_b / new_total
            m = m + delta * frac
            v = v + (v_b - v) * frac + delta.square() * (frac * (1.0 - frac))
            total = new_total
        return (
            total.to(count.dtype).reshape(count.shape),
            m.to(mean.dtype).view_as(mean),
            v.to(var.dtype).view_as(var),
        )

    def broadcast_(self, tensors: Iterable[Tensor]) -> None:
        """Overwrites ``tensors`` on every rank with rank 0's values."""
        if self.world_size == 1:
            return
        for t in tensors:
            self._run("the broadcast of rank 0's parameters", dist.broadcast, t, 0)

    def sum_(self, tensor: Tensor) -> Tensor:
        """In-place sum over ranks."""
        if self.world_size > 1:
            self._run("a statistics all-reduce", dist.all_reduce, tensor)
        return tensor

    def max_(self, tensor: Tensor) -> Tensor:
        """In-place maximum over ranks (the reward scale's largest return)."""
        if self.world_size > 1:
            self._run("the reward-scale sync", dist.all_reduce, tensor, op=dist.ReduceOp.MAX)
        return tensor

    def any(self, flag: bool, what: str = "a stop check") -> bool:
        """True on every rank when ``flag`` is true on at least one.

        A CPU tensor: gloo carries it even when NCCL carries the CUDA tensors, so the check
        never waits for the GPU."""
        if self.world_size == 1:
            return bool(flag)
        t = torch.tensor([int(bool(flag))], dtype=torch.int32)
        self._run(what, dist.all_reduce, t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def min_int(self, value: int) -> int:
        """The smallest ``value`` over ranks."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        self._run("a counter all-reduce", dist.all_reduce, t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def barrier(self, what: str = "a barrier") -> None:
        """Waits for every rank (a CPU collective, like :meth:`any`)."""
        if self.world_size > 1:
            t = torch.zeros(1)
            self._run(what, dist.all_reduce, t)

    def close(self) -> None:
        """Leaves the process group (skipped after a failure, where a goodbye could hang).

        Registered with ``atexit``, so it runs before the interpreter shuts down. Garbage is
        collected first: a collective's work object that is still alive, even unreachable, keeps
        gloo's transport and its thread running after the group is destroyed, into the
        interpreter's shutdown (tests/distributed/grad_sync_worker.py checks that none is left)."""
        if dist.is_initialized() and self.healthy:
            gc.collect()
            with contextlib.suppress(RuntimeError, ValueError):
                dist.destroy_process_group()


class GradientAllReduce:
    """The learner's ``grad_sync``: after each backward pass, the flat gradient is averaged over
    ranks by :meth:`DistContext.average_` (inside a captured CUDA graph too, where NCCL's
    all-reduce is recorded with the update).

    Args:
        ctx: this rank's :class:`DistContext`.
    """

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx

    def attach(self, flat: Tensor, params: Sequence[Tensor]) -> None:
        """Nothing to prepare: the whole flat gradient is reduced at once."""

    def begin(self, overlap: bool = True) -> None:
        """Nothing to start before backward (``overlap`` is accepted and ignored: no buckets)."""

    def end(self, grad: Tensor) -> None:
        """Averages ``grad`` (the flat gradient) over ranks, in place."""
        self.ctx.average_(grad)


def init_from_env(
    environ: dict[str, str] | None = None, quiet_workers: bool = True, check_every: int = 25
) -> DistContext:
    """Joins the process group torchrun set up: gloo for CPU tensors, NCCL for CUDA tensors.

    Args:
        environ: the environment to read (default ``os.environ``).
        quiet_workers: ranks other than 0 send their standard output to /dev/null (errors,
            on standard error, still show).
        check_every: see :class:`DistContext`.

    Raises:
        LaunchError: torchrun's variables are missing or malformed (the message says how to launch).
    """
    env = os.environ if environ is None else environ
    missing = [k for k in TORCHRUN_VARS if not env.get(k)]
    if missing:
        raise LaunchError(
            f"--distributed needs the environment torchrun gives its workers ({', '.join(missing)} "
            f"not set); launch with: {LAUNCH_HINT}"
        )
    try:
        rank, world, local = (int(env[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise LaunchError(
            f"RANK={env['RANK']}, WORLD_SIZE={env['WORLD_SIZE']}, LOCAL_RANK={env['LOCAL_RANK']}: "
            f"not integers; launch with: {LAUNCH_HINT}"
        ) from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise LaunchError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} are inconsistent")
    ctx = DistContext(rank, world, local, timeout_s=_timeout_from_env(), check_every=check_every)
    if not dist.is_initialized():
        # Imported after the default group exists, torch.distributed._shard (which torch._dynamo,
        # and so torch.optim and torch.compile, import) keeps a reference to it: the group then
        # outlives destroy_process_group and its gloo threads run on into the interpreter's
        # shutdown (torch 2.11; grad_sync_worker.py checks that none is left), the likely cause
        # of a rank that aborted as it exited ("terminate called without an active exception").
        import torch._dynamo

        use_nccl = torch.cuda.is_available() and dist.is_nccl_available()
        backend = "cpu:gloo,cuda:nccl" if use_nccl else "gloo"
        try:
            dist.init_process_group(
                backend=backend,
                rank=rank,
                world_size=world,
                timeout=timedelta(seconds=ctx.timeout_s),
            )
        except (RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LaunchError(f"cannot join the process group (rank {rank} of {world}): {first}") from None
    atexit.register(ctx.close)
    if quiet_workers and rank != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    return ctx


def learner_tensors(modules: Sequence[torch.nn.Module], optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """Every parameter, buffer and optimizer-state tensor, in a fixed order (for the broadcast)."""
    out: list[Tensor] = []
    for module in modules:
        out += [p.data for p in module.parameters()]
        out += list(module.buffers())
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            out += [state[k] for k in sorted(state) if isinstance(state[k], Tensor)]
    return out
