"""rl-games agent configs that train MEow on the Isaac tasks (``rl_games_meow_cfg_entry_point``)."""
