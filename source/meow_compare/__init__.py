"""Comparing runs: return curves from TensorBoard logs, seed bands and plots
(:mod:`meow_compare.curves`), for ``scripts/compare.py`` and ``tools/experiments.py``.

A sibling of the core package that imports nothing of it (nor of :mod:`meow_baselines`): it reads
log files. Its plotting and statistics libraries (matplotlib, scipy) are the ``compare`` extra.
"""
