"""The batch, update and replay sizes of the Isaac tasks for any env count, and the resolvers
through which their task files use them.

The task files (``meow_isaac/task_configs/*.yaml``) write, e.g.,
``batch_size: ${meow.isaac_batch:${env.num_envs}}``; :func:`register_resolvers` (run when
``meow_isaac`` is imported, which loading its env kind does before any of its task files is read)
makes those names known to omegaconf. The names keep their ``meow.`` prefix so that the
``config.yaml`` of runs written before the rule moved here still resolves.
"""

from __future__ import annotations

PAPER_MAX_ENVS = 512
"""The largest env count the paper published Isaac settings for (Allegro; the others used 128)."""
LARGE_ENV_SAMPLES_PER_ENV_STEP = 8
"""Samples drawn per env step above :data:`PAPER_MAX_ENVS`: the paper's replay ratio at 128 envs."""
LARGE_ENV_MAX_BATCH = 16384
"""Largest update batch above :data:`PAPER_MAX_ENVS`; more samples per step become more updates."""
LARGE_ENV_REPLAY_BYTES = 8 * 2**30
"""Replay memory above :data:`PAPER_MAX_ENVS`: fits a 24 GB GPU beside the simulation."""


def isaac_learner_settings(num_envs: int, obs_dim: int, action_dim: int, split: int = 1) -> dict[str, int]:
    """``batch_size``, ``updates_per_step`` and replay ``capacity`` of the Isaac tasks for an env count.

    Up to :data:`PAPER_MAX_ENVS` envs, the paper's rule: batch ``131072 / num_envs`` (capped at
    4096 for small env counts, which the paper did not use), one update per vectorized step,
    15000 transitions per env; ``split`` > 1 draws the same samples in ``split`` updates of
    ``1 / split`` the batch (more gradient steps at about the same cost on a CPU, where an update's
    cost grows with its batch; docs/RESULTS.md, Isaac Lab). Above it that rule starves the learner
    (batch 32 at 4096 envs: 0.008 samples per env step), so the learner draws
    :data:`LARGE_ENV_SAMPLES_PER_ENV_STEP` samples per env step (the paper's ratio at 128 envs), in
    updates of at most :data:`LARGE_ENV_MAX_BATCH`, from a replay of at most 15000 transitions per env and
    :data:`LARGE_ENV_REPLAY_BYTES` in all (``split`` does not apply there: on a GPU an update's
    cost grows far less than its batch). docs/ISAACLAB.md compares these with other methods.
    """
    from meow.storage import ReplayBuffer

    n = max(1, int(num_envs))
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise ValueError(f"the Isaac batch split must be a whole number of updates >= 1, got {split!r}")
    if n <= PAPER_MAX_ENVS:
        batch = max(1, min(131072 // n, 4096) // split)
        return {"batch_size": batch, "updates_per_step": split, "capacity": 15000 * n}
    samples = LARGE_ENV_SAMPLES_PER_ENV_STEP * n
    updates = -(-samples // LARGE_ENV_MAX_BATCH)
    # an undeclared observation size (0) is budgeted as a large one
    per_transition = ReplayBuffer.nbytes_for(1, int(obs_dim) or 256, int(action_dim) or 32)
    capacity = min(15000 * n, LARGE_ENV_REPLAY_BYTES // per_transition)
    return {"batch_size": samples // updates, "updates_per_step": updates, "capacity": capacity}


def register_resolvers() -> None:
    """Makes ``meow.isaac_batch``, ``meow.isaac_updates`` and ``meow.isaac_capacity`` usable in task files."""
    from meow.config import register_resolver

    # an optional second argument is the split: ``${meow.isaac_batch:${env.num_envs},2}``
    register_resolver("meow.isaac_batch", lambda n, s=1: isaac_learner_settings(n, 0, 0, s)["batch_size"])
    register_resolver(
        "meow.isaac_updates", lambda n, s=1: isaac_learner_settings(n, 0, 0, s)["updates_per_step"]
    )
    register_resolver("meow.isaac_capacity", lambda n, o, a: isaac_learner_settings(n, o, a)["capacity"])
