"""The Humanoid of the local asset root on the real Isaac-Humanoid task.

A module of its own: Isaac Lab runs one simulation per process, and the Ant fixture of the
adapter tests lives until its module ends.
"""

from __future__ import annotations

import torch
from test_isaac_env_adapter import _check_step


def test_humanoid_from_the_built_asset_root_stands_on_the_ground():
    """The Humanoid built by meow_isaac.assets collides with the ground (base height stays up)."""
    from meow_isaac.env import make_isaaclab_env

    env = make_isaaclab_env("Isaac-Humanoid-v0", 2, "cpu", seed=0)
    try:
        assert (env.obs_dim, env.action_dim) == (87, 21)
        obs = env.reset(seed=0)
        heights = [obs[:, 0]]
        for _ in range(90):  # 1.5 s with zero torques: the robot collapses onto the floor, not through it
            r = env.step(torch.zeros(2, 21))
            _check_step(env, r)
            heights.append(r.next_obs[:, 0])
        heights = torch.stack(heights)
        assert heights[0].min() > 1.0  # starts standing
        assert heights.min() > 0.05, f"torso fell to {heights.min():.2f} m: feet do not touch the ground"
    finally:
        env.close()
