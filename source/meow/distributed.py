"""Data-parallel training over ``torch.distributed``: one process per GPU (or CPU rank), launched by torchrun.

    torchrun --nproc_per_node 4 scripts/train.py --task Isaac-Ant-v0 --distributed --num_envs 4096

Every rank runs its own environments (``--num_envs`` per rank) and its own replay buffer, and
holds a full copy of the learner. The copies are kept identical as follows:

* **Parameters** start identical: rank 0's policy, target, normalizer and optimizer state are
  broadcast when training starts (also after a resume).
* **Gradients** are averaged every update, before the grad-norm clip (the learner's
  ``grad_sync``, :class:`OverlappedGradReduce`), and divided by the world size: on GPUs the
  learner's one flat gradient is all-reduced (NCCL) in a few buckets, each sent while backward
  still computes the others; CPU ranks that share a host sum it through shared memory
  (:mod:`meow.distributed_shm`, microseconds where gloo costs milliseconds; ``MEOW_DIST_SHM=0``
  falls back to gloo), other CPU ranks with one gloo all-reduce. Every rank then applies the
  same Adam step to the same weights, so weights and optimizer state stay identical without
  ever being sent again.
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
or its node vanishes (the shared-memory sum checks that its peers' processes still exist every
0.2 s while it waits, and keeps the same timeout).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from meow.distributed_shm import SharedMemoryAllReduce

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""The environment torchrun gives each worker, and that :func:`init_from_env` needs."""

DEFAULT_TIMEOUT_S = 600.0
LAUNCH_HINT = "torchrun --nproc_per_node N scripts/train.py --distributed ... (see README, 'Several GPUs')"


class LaunchError(ValueError):
    """``--distributed`` in a process that torchrun did not start, or a bad distributed setting."""


class DistributedError(RuntimeError):
    """This rank lost contact with the others: a peer died, exited early or hung past the timeout."""


def _boot_id() -> str:
    """This machine's boot id (two containers may share a host name, not a boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


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


def _shm_from_env() -> bool:
    raw = os.environ.get("MEOW_DIST_SHM", "1").strip().lower()
    if raw not in ("0", "1"):
        raise LaunchError(f"MEOW_DIST_SHM={raw} is invalid; valid: 1 (default) or 0")
    return raw == "1"


class _GroupOps:
    """The few object collectives that :meth:`SharedMemoryAllReduce.create` needs."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx

    def broadcast_object(self, obj):
        box = [obj]
        self.ctx._run("the shared-memory set-up", dist.broadcast_object_list, box, 0)
        return box[0]

    def all_gather_object(self, obj) -> list:
        out = [None] * self.ctx.world_size
        self.ctx._run("the shared-memory set-up", dist.all_gather_object, out, obj)
        return out

    def barrier(self) -> None:
        self.ctx.barrier("the shared-memory set-up")


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
        shm: let CPU ranks that share a host sum the gradient through shared memory
            (:mod:`meow.distributed_shm`; ``MEOW_DIST_SHM=0`` turns it off) rather than gloo.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        local_rank: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        check_every: int = 25,
        shm: bool = True,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.timeout_s = timeout_s
        self.check_every = check_every
        self.stop_requested = False
        """Set by the signal handlers of :meth:`install_signal_handlers`; acted on collectively."""
        self.stop_signal: int | None = None
        self.healthy = True
        """False once a collective failed: the group is then torn down without a goodbye."""
        self.shm = shm
        """Whether CPU ranks on one host may sum gradients through shared memory."""
        self._shm_reducer: SharedMemoryAllReduce | bool | None = None  # False: decided against

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

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT set :attr:`stop_requested` instead of interrupting: the ranks stop
        together at the next collective check, and rank 0 writes one checkpoint."""

        def request_stop(signum, frame) -> None:
            self.stop_requested = True
            self.stop_signal = signum

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

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

    def reduce_grads(self, grads: list[Tensor]) -> None:
        """Averages gradients over ranks in place: one flat all-reduce, then division by the
        world size (the learner's ``reduce_grads`` hook)."""
        if not grads or self.world_size == 1:
            return
        if len(grads) == 1:  # the learner's one flat gradient: reduced in place
            reducer = self._shared_memory_for(grads[0])
            if reducer:
                self._run("the gradient all-reduce", reducer.allreduce_, grads[0])
            else:
                self._run("the gradient all-reduce", dist.all_reduce, grads[0])
            grads[0].div_(self.world_size)
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._run("the gradient all-reduce", dist.all_reduce, flat)
        flat.div_(self.world_size)
        parts = flat.split([g.numel() for g in grads])
        torch._foreach_copy_(grads, [v.view_as(g) for v, g in zip(parts, grads, strict=True)])

    def _shared_memory_for(self, grad: Tensor) -> SharedMemoryAllReduce | None:
        """The shared-memory all-reduce for ``grad``, set up at the first call (a collective:
        every rank calls this with the same gradient), or None where gloo must carry it."""
        if self._shm_reducer is None:
            from meow import distributed_shm

            local = (
                self.shm
                and distributed_shm.supported(
                    distributed_shm.SharedMemoryAllReduce.nbytes(self.world_size, grad.numel())
                )
                and grad.device.type == "cpu"
                and grad.dtype == torch.float32
                and grad.is_contiguous()
            )
            here = (socket.gethostname(), _boot_id(), bool(local))
            views = _GroupOps(self).all_gather_object(here)
            if all(v == views[0] for v in views) and views[0][2]:
                self._shm_reducer = distributed_shm.SharedMemoryAllReduce.create(
                    self.rank, self.world_size, grad.numel(), self.timeout_s, _GroupOps(self)
                )
            else:
                self._shm_reducer = False
        reducer = self._shm_reducer
        return reducer if reducer and reducer.numel == grad.numel() else None

    @property
    def uses_shared_memory(self) -> bool:
        """Whether gradients have been summed through shared memory (after the first update)."""
        return bool(self._shm_reducer)

    def gradient_sync(
        self, bucket_numel: int | None = None, overlap: bool | None = None
    ) -> OverlappedGradReduce:
        """The learner's gradient averaging (see :class:`OverlappedGradReduce`)."""
        return OverlappedGradReduce(self, bucket_numel, overlap)

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


class OverlappedGradReduce:
    """Averages the learner's flat gradient over ranks while its backward pass still runs.

    The flat gradient is cut, at parameter boundaries, into buckets of about ``bucket_numel``
    elements. A hook on each parameter, run once its gradient is complete, marks it ready; a
    bucket whose parameters are all ready is all-reduced asynchronously, so that its
    communication overlaps the rest of the backward pass (on a GPU, NCCL's stream sends while
    backward's kernels run). Every rank launches the buckets in one fixed order, as collectives
    must be: from the end of the flat vector, whose parameters (the flow's last layers) backward
    reaches first; a bucket ready early waits for those before it. :meth:`end` launches what is
    left, waits for all and divides by the world size: the result is the same average as one
    all-reduce of the whole gradient.

    Without overlap, :meth:`end` is one synchronous all-reduce of the whole
    (:meth:`DistContext.reduce_grads`): inside a CUDA-graph capture (``begin(overlap=False)``),
    and by default on the CPU. There a collective costs mostly fixed overhead, and gloo's
    thread has no free core to send on while backward computes: four overlapped buckets were no
    faster than one whole all-reduce (docs/RESULTS.md), and CPU ranks on one host sum through
    shared memory, which costs microseconds.

    Args:
        ctx: this rank's :class:`DistContext`.
        bucket_numel: elements per bucket (default: a quarter of the gradient, at most 2^20).
        overlap: send buckets during backward (default: where the parameters are on a GPU).
    """

    def __init__(
        self, ctx: DistContext, bucket_numel: int | None = None, overlap: bool | None = None
    ) -> None:
        if bucket_numel is not None and bucket_numel < 1:
            raise ValueError(f"bucket_numel={bucket_numel} is invalid; valid: an integer >= 1")
        self.ctx = ctx
        self.bucket_numel = bucket_numel
        self.overlap = overlap
        self.buckets: list[tuple[int, int]] = []
        """(start, end) of each bucket in the flat gradient, in launch order."""
        self._flat: Tensor | None = None
        self._params: list[Tensor] = []
        self._owner: list[int] = []
        self._hooked = False
        self._sizes: list[int] = []
        self._pending: list[int] = []
        self._next = 0
        self._works: list = []
        self._armed = False
        self._error: BaseException | None = None
        self.launched_in_backward = 0
        """Buckets the last backward pass sent before it ended (the overlap; for tests)."""

    def attach(self, flat: Tensor, params: Sequence[Tensor]) -> None:
        """Cuts ``flat``'s gradient into buckets over ``params`` (views of ``flat``, in order); their
        hooks are added at the first backward pass that overlaps."""
        total = sum(p.numel() for p in params)
        size = self.bucket_numel or max(1, min(-(-total // 4), 1 << 20))
        self._flat, self.buckets = flat, []
        if self.overlap is None:
            self.overlap = flat.is_cuda
        owner: list[int] = [0] * len(params)
        end, filled = total, 0
        for i in range(len(params) - 1, -1, -1):
            owner[i] = len(self.buckets)
            filled += params[i].numel()
            if filled >= size or i == 0:
                self.buckets.append((end - filled, end))
                end, filled = end - filled, 0
        self._sizes = [0] * len(self.buckets)
        for b in owner:
            self._sizes[b] += 1
        self._params, self._owner = list(params), owner
        self._hooked = False

    def begin(self, overlap: bool = True) -> None:
        """Arms the hooks for the next backward pass (``overlap=False``: they stay idle)."""
        self._armed = overlap and bool(self.overlap) and self.ctx.world_size > 1
        if not self._armed:  # the common CPU case: nothing to reset on the hot path
            return
        self._pending = list(self._sizes)
        self._next = 0
        self._works = []
        self._error = None
        if not self._hooked:  # hooks only where they are used: each costs a call
            for p, b in zip(self._params, self._owner, strict=True):
                p.register_post_accumulate_grad_hook(lambda _p, b=b: self._ready(b))
            self._hooked = True

    def _ready(self, bucket: int) -> None:
        if not self._armed:
            return
        self._pending[bucket] -= 1
        while self._next < len(self.buckets) and self._pending[self._next] == 0:
            self._launch(self._next)

    def _launch(self, bucket: int) -> None:
        self._next = bucket + 1
        if self._error is not None:
            return
        start, end = self.buckets[bucket]
        try:  # raising inside autograd's hook would lose the message: kept for end()
            self._works.append(dist.all_reduce(self._flat.grad[start:end], async_op=True))
        except (RuntimeError, ValueError, OSError) as err:
            self._error = err

    def end(self, grad: Tensor) -> None:
        """Completes the average of ``grad`` (the flat gradient) over ranks, in place."""
        if self.ctx.world_size == 1:
            return
        if not self._armed:
            self.ctx.reduce_grads([grad])
            return
        self._armed = False
        self.launched_in_backward = self._next
        while self._next < len(self.buckets):
            self._launch(self._next)
        if self._error is not None:
            raise self.ctx._fail("the gradient all-reduce", self._error)
        works, self._works = self._works, []  # none outlives its update (see DistContext.close)
        for work in works:
            self.ctx._run("the gradient all-reduce", work.wait)
        grad.div_(self.ctx.world_size)


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
    ctx = DistContext(
        rank, world, local, timeout_s=_timeout_from_env(), check_every=check_every, shm=_shm_from_env()
    )
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
