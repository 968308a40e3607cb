"""A pre-allocated, device-resident ring buffer shaped for many parallel environments."""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
from torch import Tensor


class TransitionBatch(NamedTuple):
    """A batch of transitions; every field has the batch size as its first dimension."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    """The true next observation: for a finished episode, its final observation (not the reset one)."""
    terminated: Tensor
    """1.0 where the episode ended in a terminal state (no bootstrap), else 0.0."""
    truncated: Tensor
    """True where the episode was cut by a time limit (still bootstrapped)."""


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device``, or None when it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _leading_rows(t: Tensor, rows: int) -> Tensor:
    """The first ``rows`` rows of contiguous ``t``, sharing its memory, over a storage of just those bytes.

    ``t[:rows]`` would share memory too, but its storage is all of ``t``'s, which ``torch.save``
    writes whole.
    """
    size = t.element_size()
    start = t.storage_offset() * size
    storage = t.untyped_storage()[start : start + rows * t.stride(0) * size]
    return torch.empty(0, dtype=t.dtype, device=t.device).set_(storage, 0, (rows, *t.shape[1:]), t.stride())


class ReplayBuffer:
    """Ring buffer of ``(capacity_per_env, num_envs)`` transitions, allocated once on ``device``.

    Each :meth:`add` writes one vectorized step (one transition per env) at the same ring
    position; the oldest step is overwritten when full. :meth:`sample` draws uniformly
    over all stored ``(step, env)`` pairs.

    Args:
        capacity: total transitions to keep (rounded up to a multiple of ``num_envs``).
        num_envs: parallel environments per :meth:`add`.
        obs_dim: observation size.
        action_dim: action size.
        device: where the storage lives.
        max_memory_fraction: refuse to allocate more than this fraction of the free memory.
        verbose: print the footprint at creation.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_dim: int,
        action_dim: int,
        device: str | torch.device = "cpu",
        max_memory_fraction: float = 0.9,
        verbose: bool = True,
    ) -> None:
        if capacity < 1 or num_envs < 1:
            raise ValueError(f"replay buffer capacity={capacity} and num_envs={num_envs} must be >= 1")
        self.device = torch.device(device)
        self.num_envs = num_envs
        self.capacity_per_env = math.ceil(capacity / num_envs)
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        n = self.capacity_per_env
        needed = self.nbytes_for(n * num_envs, obs_dim, action_dim)
        free = available_memory(self.device)
        if free is not None and needed > max_memory_fraction * free:
            raise MemoryError(
                f"replay buffer of {n * num_envs:,} transitions needs {needed / 2**30:.2f} GiB "
                f"on {self.device} but only {free / 2**30:.2f} GiB is free; lower buffer.capacity to at most "
                f"{int(max_memory_fraction * free / (needed / (n * num_envs))):,}"
            )
        shape = (n, num_envs)
        kw = {"device": self.device}
        self.obs = torch.zeros(*shape, obs_dim, dtype=torch.float32, **kw)
        self.actions = torch.zeros(*shape, action_dim, dtype=torch.float32, **kw)
        self.rewards = torch.zeros(shape, dtype=torch.float32, **kw)
        self.next_obs = torch.zeros(*shape, obs_dim, dtype=torch.float32, **kw)
        self.terminated = torch.zeros(shape, dtype=torch.float32, **kw)
        self.truncated = torch.zeros(shape, dtype=torch.bool, **kw)
        self.pos = 0
        self.full = False
        # The ring position and fill level also live on the device, so that sampling reads them
        # there: no host value enters the sampling kernels, and a captured CUDA graph sees each
        # step's values.
        self._pos_t = torch.zeros((), dtype=torch.long, **kw)
        self._steps_t = torch.zeros((), dtype=torch.long, **kw)
        if verbose:
            print(
                f"[meow] replay buffer: {n * num_envs:,} transitions ({num_envs} envs x {n:,}) "
                f"on {self.device}, {needed / 2**20:.1f} MiB"
            )

    @staticmethod
    def nbytes_for(transitions: int, obs_dim: int, action_dim: int) -> int:
        """Bytes that a buffer of ``transitions`` takes: two observations, an action,
        reward and terminated as float32, and truncated as one byte."""
        return transitions * ((2 * obs_dim + action_dim + 2) * 4 + 1)

    @property
    def nbytes(self) -> int:
        """Bytes allocated by this buffer."""
        return self.nbytes_for(self.capacity_per_env * self.num_envs, self.obs_dim, self.action_dim)

    def __len__(self) -> int:
        """Number of stored transitions."""
        return (self.capacity_per_env if self.full else self.pos) * self.num_envs

    def add(
        self,
        obs: Tensor,
        actions: Tensor,
        rewards: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
        truncated: Tensor,
    ) -> None:
        """Stores one vectorized step: every argument has ``num_envs`` as its first dimension."""
        i = self.pos
        self.obs[i] = obs
        self.actions[i] = actions
        self.rewards[i] = rewards
        self.next_obs[i] = next_obs
        self.terminated[i] = terminated
        self.truncated[i] = truncated
        self._advance((i + 1) % self.capacity_per_env, self.full or i + 1 == self.capacity_per_env)

    def _advance(self, pos: int, full: bool) -> None:
        self.pos, self.full = pos, full
        self._pos_t.fill_(pos)
        self._steps_t.fill_(self.capacity_per_env if full else pos)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TransitionBatch:
        """Draws ``batch_size`` transitions uniformly, with replacement (fields ``(B, ...)``)."""
        return TransitionBatch(*(x.squeeze(1) for x in self.sample_windows(batch_size, 1, generator)))

    def sample_windows(
        self, batch_size: int, n: int, generator: torch.Generator | None = None
    ) -> TransitionBatch:
        """Draws ``batch_size`` windows of ``n`` consecutive steps of one env (fields ``(B, n, ...)``).

        The first step of each window is uniform over all stored ``(step, env)`` pairs, with
        replacement. A window continues through the ring's wrap-around; where it reaches past
        the newest stored step, that step is marked ``truncated`` (the window ends there and
        bootstraps from its stored next observation) and the steps after it are left for the
        learner to mask. A pure tensor program over device tensors: it can run inside a
        captured CUDA graph, and it never synchronises with the host.
        """
        # Checked outside compiled code only: traced, the ring position would become a guard
        # and every new position a recompilation.
        if not torch.compiler.is_compiling() and not self.full and self.pos == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        cap = self.capacity_per_env
        steps = self._steps_t
        # float64 keeps every one of up to 2^53 stored steps reachable, unlike float32's 2^24
        u = torch.rand(batch_size, dtype=torch.float64, device=self.device, generator=generator)
        k = (u * steps).long()  # age rank from the oldest stored step, in [0, steps)
        env = torch.randint(self.num_envs, (batch_size,), device=self.device, generator=generator)
        offsets = torch.arange(n, device=self.device)
        oldest = torch.remainder(self._pos_t - steps, cap)
        step = torch.remainder(oldest + k, cap)[:, None] + offsets
        step = torch.remainder(step, cap)
        env2 = env[:, None].expand(-1, n)
        truncated = self.truncated[step, env2]
        if n > 1:
            truncated = truncated | ((steps - 1 - k)[:, None] == offsets)  # the newest stored step
        return TransitionBatch(
            self.obs[step, env2],
            self.actions[step, env2],
            self.rewards[step, env2],
            self.next_obs[step, env2],
            self.terminated[step, env2],
            truncated,
        )

    @property
    def filled_nbytes(self) -> int:
        """Bytes of the stored transitions: what :meth:`state_dict` holds and a saved file takes."""
        return self.nbytes_for(len(self), self.obs_dim, self.action_dim)

    def state_dict(self) -> dict:
        """The filled steps of every field, as views of the buffer's own memory, and the ring position.

        Saving must not need a second buffer's worth of device memory, so nothing is copied:
        each field is a tensor over a slice of the storage that holds just the filled steps, so
        ``torch.save`` writes only those (copying them to the host as it goes). Do not modify
        the returned tensors.
        """
        steps = self.capacity_per_env if self.full else self.pos
        return {
            "pos": self.pos,
            "full": self.full,
            "capacity_per_env": self.capacity_per_env,
            "num_envs": self.num_envs,
            **{k: _leading_rows(getattr(self, k), steps) for k in self._fields},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict` (or an older one holding only the filled steps) into a
        buffer of the same shape, one field at a time; raises ValueError for a state that does not fit."""
        if (state["capacity_per_env"], state["num_envs"]) != (self.capacity_per_env, self.num_envs):
            raise ValueError(
                f"replay buffer state is {state['num_envs']} envs x {state['capacity_per_env']:,} but this "
                f"buffer is {self.num_envs} envs x {self.capacity_per_env:,}"
            )
        pos, full = int(state["pos"]), bool(state["full"])
        steps = self.capacity_per_env if full else pos
        for k in self._fields:
            src, dst = state[k], getattr(self, k)
            if (
                not isinstance(src, Tensor)
                or not steps <= src.shape[0] <= self.capacity_per_env
                or src.shape[1:] != dst.shape[1:]
            ):
                shape = tuple(src.shape) if isinstance(src, Tensor) else type(src).__name__
                raise ValueError(f"replay buffer field '{k}' is {shape}, expected {tuple(dst.shape)}")
        for k in self._fields:
            src = state[k]
            getattr(self, k)[: src.shape[0]].copy_(src)
        self._advance(pos, full)

    def clear(self) -> None:
        """Forgets every stored transition (the storage stays allocated)."""
        self._advance(0, False)

    _fields = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")
