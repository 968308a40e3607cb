"""Every task's resolved settings, to pin what ``algo.preset=paper`` resolves to.

``data/paper_settings.json`` holds the settings each task file resolved to at commit d47dd8f,
before any divergence remedy could become a default: the paper's settings as this project
reproduced them (docs/RESULTS.md, the MuJoCo grid), plus the settings added since with the
value that leaves the paper's behaviour, less the remedies removed after commit 195055e.
``python tests/paper_settings.py`` prints
today's (``--preset paper`` adds that override), to compare or to record again.
"""

from __future__ import annotations

import json
import sys

from omegaconf import OmegaConf

from meow.config import load_config, task_files

UNPINNED = ("device", "algo.preset")
"""Not a training setting (``device: auto`` resolves to the machine's), or the preset itself."""


def tasks() -> list[str]:
    """One id per task file (aliases name the same file)."""
    seen: dict[str, str] = {}
    for name, path in task_files().items():
        seen.setdefault(str(path), name)
    return sorted(seen.values())


def resolved(task: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """``task``'s settings with every interpolation resolved, without :data:`UNPINNED`."""
    cfg = OmegaConf.to_container(load_config(task, list(overrides)), resolve=True)
    for key in UNPINNED:
        *parents, leaf = key.split(".")
        node = cfg
        for parent in parents:
            node = node[parent]
        node.pop(leaf, None)
    return cfg


if __name__ == "__main__":
    overrides = ["algo.preset=paper"] if "--preset" in sys.argv[1:] else []
    json.dump({task: resolved(task, overrides) for task in tasks()}, sys.stdout, indent=1, sort_keys=True)
    print()
