"""Running observation normalization: exact pooled statistics, normalizing and clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meow.modules import EmpiricalNormalization


@pytest.mark.parametrize("shape", [(3,), (2, 3)])
def test_statistics_equal_numpy_over_all_batches(shape: tuple[int, ...]) -> None:
    """After batches of different sizes, mean/var equal numpy's over all data concatenated."""
    norm = EmpiricalNormalization(shape).double()
    batches = [
        torch.randn(size, *shape, dtype=torch.float64) * scale + offset
        for size, scale, offset in [(1, 1.0, 5.0), (7, 3.0, -2.0), (64, 0.5, 0.0), (300, 2.0, 10.0)]
    ]
    for batch in batches:
        norm.update(batch)
    data = torch.cat(batches).numpy()
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=0.0, atol=1e-12)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-12, atol=0.0)
    assert norm.count.item() == data.shape[0]


def test_float32_statistics_match_numpy() -> None:
    """The default float32 buffers stay accurate over many updates."""
    norm = EmpiricalNormalization(4)
    batches = [torch.randn(size, 4) * 2.0 + 3.0 for size in (5, 17, 128, 1, 250) * 4]
    for batch in batches:
        norm.update(batch)
    data = torch.cat(batches).double().numpy()
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-4)


def test_forward_normalizes_and_does_not_update() -> None:
    """``forward(x) = (x - mean) / sqrt(var + eps)``; calling it leaves the statistics alone."""
    norm = EmpiricalNormalization(3).double()
    data = torch.randn(1000, 3, dtype=torch.float64) * torch.tensor([1.0, 4.0, 0.1]) + 2.0
    norm.update(data)
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    out = norm(data)
    expected = (data.numpy() - data.numpy().mean(0)) / np.sqrt(data.numpy().var(0) + norm.eps)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0.0, atol=1e-10)
    np.testing.assert_allclose(out.numpy().std(0), 1.0, atol=1e-6)
    for key, value in norm.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_forward_clips_at_clip() -> None:
    """Normalized values are clipped to ``[-clip, clip]`` and untouched inside."""
    norm = EmpiricalNormalization(2, clip=3.0).double()
    norm.update(torch.tensor([[0.0, 0.0], [2.0, 2.0]], dtype=torch.float64))  # mean 1, std 1
    x = torch.tensor([[100.0, -100.0], [3.5, -1.5], [4.5, -3.0]], dtype=torch.float64)
    expected = torch.tensor([[3.0, -3.0], [2.5, -2.5], [3.0, -3.0]], dtype=torch.float64)
    torch.testing.assert_close(norm(x), expected, rtol=0.0, atol=1e-7)
