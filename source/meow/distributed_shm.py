"""The gradient all-reduce of CPU ranks on one host, through shared memory.

gloo's all-reduce costs about a millisecond of fixed overhead per call on a small VM, however
few the bytes (1.0 ms for one element, 2.5 ms for 160,000, two ranks, benchmarks/benchmark_distributed.py
and docs/RESULTS.md), while a round trip through shared memory costs about a microsecond. Ranks on
one host therefore exchange the learner's flat gradient through a shared file in ``/dev/shm``:

* the file holds, for each rank, a counter on its own cache line and two gradient slots
  (alternated between iterations, so that a rank may write the next gradient while a slower one
  still reads the last);
* at iteration ``k`` a rank copies its gradient into its slot, then sets its counter to ``k``,
  then waits until every counter reaches ``k``, then sums the slots **in rank order**: every rank
  adds the same numbers in the same order, so the sums are bitwise identical everywhere;
* a slot of parity ``k`` is written again at ``k + 2``, only after its owner saw every counter
  reach ``k + 1``, which a rank sets only after it has read the slots of ``k``.

Ordering: on x86-64 stores become visible in program order; the copy may use non-temporal
stores, which a locked instruction (a lock's acquire and release) orders before the counter's
store. Weaker memory models (ARM) would need real fences, so other machines use gloo.

Waiting spins for a short while, then yields the CPU (more ranks than cores must not starve the
rank they wait for). It gives up with :class:`meow.distributed.DistributedError` when a peer
process no longer exists or after the process group's timeout.
"""

from __future__ import annotations

import os
import platform
import threading
import time
import uuid
from pathlib import Path

import torch
from torch import Tensor

SHM_DIR = Path("/dev/shm")
LINE = 64
"""Bytes per counter (one cache line each: no false sharing between ranks' counters)."""


def supported(nbytes: int = 0) -> bool:
    """Whether this machine can use the shared-memory all-reduce: x86-64 Linux with a writable
    /dev/shm that has room for ``nbytes`` twice over (a container's is often only 64 MB, and a
    write past its end would kill the process)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if not (x86 and SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)):
        return False
    stat = os.statvfs(SHM_DIR)
    return stat.f_bavail * stat.f_frsize >= 2 * nbytes


class SharedMemoryAllReduce:
    """Sums one float32 CPU tensor of fixed size over the ranks of one host.

    Created collectively (every rank at the same point) through :meth:`create`, which uses the
    process group only to agree on the file's name and to exchange process ids.

    Args:
        path: the shared file (already created by rank 0 at the right size).
        rank: this rank.
        world_size: number of ranks.
        numel: elements of the tensor to sum.
        peer_pids: every rank's process id (to notice a dead peer while waiting).
        timeout_s: seconds to wait for the slowest rank before giving up.
    """

    def __init__(
        self, path: Path, rank: int, world_size: int, numel: int, peer_pids: list[int], timeout_s: float
    ) -> None:
        self.rank, self.world_size, self.numel = rank, world_size, numel
        self.peer_pids = peer_pids
        self.timeout_s = timeout_s
        header = LINE * world_size
        size = self.nbytes(world_size, numel)
        raw = torch.from_file(str(path), shared=True, size=size, dtype=torch.uint8)
        self._counters = raw[:header].view(torch.int64)[:: LINE // 8]
        self._slots = raw[header:].view(torch.float32).view(2, world_size, numel)
        self._iteration = 0
        self._fence = threading.Lock()

    @staticmethod
    def nbytes(world_size: int, numel: int) -> int:
        """The size of the shared file."""
        return LINE * world_size + 2 * world_size * numel * 4

    def allreduce_(self, tensor: Tensor) -> Tensor:
        """Overwrites ``tensor`` (float32, CPU, ``numel`` elements) with its sum over ranks.

        Raises:
            TimeoutError: a peer did not arrive within the timeout.
            ProcessLookupError: a peer process died while this rank waited.
        """
        self._iteration += 1
        k = self._iteration
        slots = self._slots[k & 1]
        slots[self.rank].copy_(tensor.reshape(-1))
        with self._fence:  # a locked instruction: the slot's stores land before the counter's
            pass
        self._counters[self.rank].fill_(k)
        self._wait(k)
        flat = tensor.view(-1)
        flat.copy_(slots[0])
        for r in range(1, self.world_size):
            flat.add_(slots[r])
        return tensor

    def _wait(self, k: int) -> None:
        counters = self._counters
        if bool((counters >= k).all()):
            return
        start = time.monotonic()
        spins = 0
        next_check = start + 0.2
        while not bool((counters >= k).all()):
            spins += 1
            if spins > 2000:  # past a few hundred microseconds: let other processes run
                time.sleep(0 if spins < 20000 else 50e-6)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 0.2
                self._check_peers(k)
                if now - start > self.timeout_s:
                    late = [r for r in range(self.world_size) if int(counters[r]) < k]
                    raise TimeoutError(
                        f"timed out after {self.timeout_s:g} s waiting for rank(s) {late} at the gradient sum"
                    )

    def _check_peers(self, k: int) -> None:
        for r, pid in enumerate(self.peer_pids):
            if r == self.rank or int(self._counters[r]) >= k:
                continue
            try:
                os.kill(pid, 0)
                stat = Path(f"/proc/{pid}/stat").read_text()
            except (ProcessLookupError, FileNotFoundError):
                raise ProcessLookupError(f"rank {r} (process {pid}) exited") from None
            except PermissionError:
                continue
            if stat.rsplit(") ", 1)[-1].startswith(("Z", "X")):
                raise ProcessLookupError(f"rank {r} (process {pid}) exited")

    @classmethod
    def create(
        cls, rank: int, world_size: int, numel: int, timeout_s: float, group_ops
    ) -> SharedMemoryAllReduce:
        """Sets up the shared file collectively; ``group_ops`` gives ``broadcast_object(obj)`` (rank
        0's value on every rank), ``all_gather_object(obj)`` and ``barrier()`` over the group."""
        name = group_ops.broadcast_object(f"meow-grad-{uuid.uuid4().hex}" if rank == 0 else None)
        path = SHM_DIR / name
        if rank == 0:
            with open(path, "wb") as f:
                f.truncate(cls.nbytes(world_size, numel))
        group_ops.barrier()
        try:
            reducer = cls(path, rank, world_size, numel, group_ops.all_gather_object(os.getpid()), timeout_s)
        finally:
            group_ops.barrier()  # every rank has mapped it: the name is no longer needed
            if rank == 0:
                path.unlink(missing_ok=True)
        return reducer
