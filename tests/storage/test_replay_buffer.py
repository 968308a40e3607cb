"""Replay buffer: ring order, wrap-around, uniform sampling, final observations, memory guard."""

from __future__ import annotations

import pytest
import torch

from meow.storage import ReplayBuffer


def _fill(buf: ReplayBuffer, steps: int, start: int = 0) -> None:
    """Adds ``steps`` vectorized steps whose obs encode (step, env) as 1000*step + env."""
    n = buf.num_envs
    for t in range(start, start + steps):
        ids = torch.arange(n, dtype=torch.float32) + 1000.0 * t
        obs = ids[:, None].expand(n, buf.obs_dim)
        buf.add(obs, torch.zeros(n, buf.action_dim), ids, obs + 0.5, (ids % 2 == 0).float(), ids % 3 == 0)


def test_wraparound_keeps_the_newest_steps():
    """After more adds than capacity, exactly the newest steps remain, in ring order."""
    buf = ReplayBuffer(capacity=12, num_envs=3, obs_dim=2, action_dim=1, verbose=False)
    assert buf.capacity_per_env == 4
    _fill(buf, 6)
    assert len(buf) == 12 and buf.full and buf.pos == 2
    stored_steps = sorted(set((buf.rewards // 1000).int().flatten().tolist()))
    assert stored_steps == [2, 3, 4, 5]
    assert buf.rewards[0, 0] == 4000.0 and buf.rewards[1, 2] == 5002.0  # slots 0,1 overwritten by steps 4,5


def test_capacity_rounds_up_to_whole_vectorized_steps():
    """A capacity that is not a multiple of num_envs rounds up, never down."""
    buf = ReplayBuffer(capacity=10, num_envs=4, obs_dim=1, action_dim=1, verbose=False)
    assert buf.capacity_per_env == 3 and buf.nbytes == ReplayBuffer.nbytes_for(12, 1, 1)


def test_sampling_is_uniform_over_stored_transitions_and_fields_stay_aligned():
    """Every stored (step, env) is drawn about equally often; unfilled slots never are."""
    torch.manual_seed(0)
    buf = ReplayBuffer(capacity=40, num_envs=4, obs_dim=3, action_dim=2, verbose=False)
    _fill(buf, 5)  # 20 of 40 slots
    batch = buf.sample(40_000)
    ids = batch.rewards
    assert torch.equal(batch.obs[:, 0], ids) and torch.equal(batch.next_obs[:, 1], ids + 0.5)
    assert torch.equal(batch.terminated, (ids % 2 == 0).float()) and torch.equal(
        batch.truncated, ids % 3 == 0
    )
    values, counts = torch.unique(ids, return_counts=True)
    assert len(values) == 20  # all stored, none of the empty slots (which hold id 0 only once: step 0, env 0)
    expected = 40_000 / 20
    assert counts.min() > 0.85 * expected and counts.max() < 1.15 * expected


def test_final_observation_is_stored_as_next_obs():
    """What the env reports as next_obs (the true final observation) is what a sample returns."""
    buf = ReplayBuffer(capacity=8, num_envs=2, obs_dim=1, action_dim=1, verbose=False)
    final_obs = torch.tensor([[7.0], [9.0]])
    buf.add(
        torch.tensor([[6.0], [8.0]]),
        torch.zeros(2, 1),
        torch.ones(2),
        final_obs,
        torch.tensor([0.0, 1.0]),
        torch.tensor([True, False]),
    )
    batch = buf.sample(64)
    assert not torch.any(batch.next_obs == 0.0)  # the reset observation would be 0
    assert torch.equal(batch.next_obs, batch.obs + 1.0)


def test_empty_buffer_refuses_to_sample():
    buf = ReplayBuffer(capacity=8, num_envs=2, obs_dim=1, action_dim=1, verbose=False)
    with pytest.raises(RuntimeError, match="empty"):
        buf.sample(4)


def test_refuses_a_capacity_that_cannot_fit():
    """A buffer larger than free memory is refused before allocation, naming the setting to lower."""
    with pytest.raises(MemoryError, match=r"buffer\.capacity"):
        ReplayBuffer(capacity=10**15, num_envs=1, obs_dim=100, action_dim=10, verbose=False)


def test_prints_its_footprint(capsys):
    ReplayBuffer(capacity=1000, num_envs=2, obs_dim=3, action_dim=2)
    out = capsys.readouterr().out
    assert "1,000 transitions" in out and "2 envs x 500" in out and "MiB" in out


def test_state_dict_round_trip():
    """A restored buffer holds the same data, position and fill state, and samples identically."""
    src = ReplayBuffer(capacity=12, num_envs=3, obs_dim=2, action_dim=1, verbose=False)
    _fill(src, 6)
    dst = ReplayBuffer(capacity=12, num_envs=3, obs_dim=2, action_dim=1, verbose=False)
    dst.load_state_dict(src.state_dict())
    assert (dst.pos, dst.full, len(dst)) == (src.pos, src.full, len(src))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for a, b in zip(src.sample(50, g1), dst.sample(50, g2), strict=True):
        assert torch.equal(a, b)
    other = ReplayBuffer(capacity=12, num_envs=2, obs_dim=2, action_dim=1, verbose=False)
    with pytest.raises(ValueError, match="3 envs"):
        other.load_state_dict(src.state_dict())
