"""Shared fixtures: a fixed seed per test and a parameter re-randomiser."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are collected everywhere and skipped, with the reason, without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none is visible); tools/gpu_check.py runs these")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _torch_globals() -> Iterator[None]:
    """Every test starts from the same process-wide torch settings, whatever ran before it.

    One intra-op thread: the tests use tiny tensors, and on a busy 2-core machine every OpenMP
    region (e.g. each LayerNorm) otherwise waits a scheduler slice (~10 ms). Training code
    under test changes these globals (a run's ``torch_threads``; rl-games' ``Runner`` sets the
    float32 matmul precision), and a different thread count or precision changes summation
    order, hence a seeded learning run's outcome."""
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.set_num_threads(1)
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.benchmark = cudnn_benchmark


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state, whatever ran before it."""
    torch.manual_seed(0)


def _randomize(module: nn.Module, std: float = 0.3) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            nn.init.normal_(p, std=std)
    return module


@pytest.fixture
def randomize() -> Callable[..., nn.Module]:
    """Redraws every parameter of a module from ``N(0, std^2)`` (default ``std=0.3``).

    Several networks are zero-initialised by design (log-sigma net, shift heads); tests
    re-randomise them so that identities are checked away from that trivial point.
    """
    return _randomize


@pytest.fixture
def multigoal_cfg() -> Callable[..., object]:
    """Builds a MultiGoal config scaled down for unit tests (no progress bar, small buffer),
    with extra ``key=value`` overrides."""
    from meow.config import load_config

    def make(*overrides: str):
        return load_config(
            "MultiGoal",
            [
                "runner.progress=false",
                "buffer.capacity=5000",
                "runner.warmup_steps=64",
                "algo.batch_size=32",
                *overrides,
            ],
        )

    return make


@pytest.fixture
def toysim(tmp_path, monkeypatch):
    """Installs the ``toysim`` kind (``tests/toysim_meow.py``) the way a package would: a
    dist-info with a ``meow.envs`` and a ``meow.baselines`` entry point on ``sys.path``; returns
    the test's tmp_path."""
    import toysim_meow

    dist = tmp_path / "site" / "toysim_meow-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toysim-meow\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[meow.envs]\ntoysim = toysim_meow:ToySimKind\n\n[meow.baselines]\ntoysim = toysim_meow:BASELINES\n"
    )
    tasks = tmp_path / "toysim_tasks"
    tasks.mkdir()
    (tasks / "toysim.yaml").write_text(toysim_meow.TASK_FILE)
    monkeypatch.setattr(toysim_meow.ToySimKind, "task_dir", tasks)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from meow.envs import registry

    monkeypatch.setattr(registry, "_loaded", {})
    return tmp_path
