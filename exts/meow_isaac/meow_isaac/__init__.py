"""MEow for Isaac Lab: the environment adapter, task registration and offline assets.

``import meow_isaac.tasks`` (done by Isaac Lab through the ``isaaclab.tasks`` entry point)
registers MEow's settings on Isaac Lab's tasks and accepts their Isaac Lab 2.x ids. Importing
any part of the package registers the resolvers its task files use
(:mod:`meow_isaac.learner_settings`).
"""

from meow_isaac.env import IsaacLabVecEnv, make_isaaclab_env
from meow_isaac.learner_settings import register_resolvers

register_resolvers()

__version__ = "0.1.0"
__all__ = ["IsaacLabVecEnv", "make_isaaclab_env"]
