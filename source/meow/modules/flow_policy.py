"""The state-conditioned energy-based normalizing flow: policy, soft Q and soft V at once."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from meow.flows import AdditiveCoupling, StateScaling, TanhSquash, Transform
from meow.nn.layers import EnsembleMLP
from meow.utils.checks import check_choice

if TYPE_CHECKING:
    from omegaconf import DictConfig

COUPLING_BIASES = ("zeros", "default")
"""``algo.coupling_bias``: the coupling networks' initial biases (zeros, or PyTorch's default uniform
as the paper's release leaves them under orthogonal weights)."""

Q_DROPOUTS = ("shared", "per_head")
"""``algo.q_dropout``: in training mode, one dropout mask for all soft-Q heads (one pass through
the couplings) or one per head (the couplings run on the batch repeated per head, as the paper's
release evaluates its two heads on a doubled batch)."""


SHIFT_SCALES = ("alpha", "reward")
"""``algo.shift_scale``: whether the reward-shifting heads are scaled by ``alpha`` with the rest of
the soft values (``alpha * b_k``, the paper's release) or are in reward units (``b_k``)."""


class FlowPolicy(nn.Module):
    """MEow's flow ``pi(a|s)`` with ``Q(s,a) - V(s) = alpha * log pi(a|s)`` exactly.

    Sampling direction ``u -> a``: a standard normal ``u`` is scaled by ``sigma(s)``
    (the prior ``N(0, sigma(s)^2)``, the only layer whose Jacobian is independent of
    the action), shifted by additive couplings with alternating masks (volume
    preserving) and squashed by ``tanh``. In the density direction the log-density
    splits into an energy part (the Gaussian kernel and the non-linear layers' log-det)
    and a normalizing constant (the state-only log-det and the Gaussian constant):

        Q_k(s,a) = alpha * (-|u|^2 / 2 + sum_{S_n} ladj + b_k(s))
        V_k(s)   = alpha * (d/2 log 2pi - sum_{S_l} ladj + b_k(s))

    ``b_k`` are the learnable reward-shifting heads (LRS); with two heads the target
    takes the smaller value (shifting-based clipped double Q). With ``shift_scale="reward"`` they
    stand outside the ``alpha`` factor (``Q_k = alpha * (...) + b_k``), so that a change of
    ``alpha`` rescales only the entropy part of the values (docs/ALGORITHM.md, "Automatic
    temperature"); ``Q_k - V_k = alpha * log pi`` holds either way. ``V`` is computed from
    the state-only layers and the shift heads, without running the couplings.

    Args:
        obs_dim: observation size.
        action_dim: action size ``d``.
        alpha: entropy temperature (fixed).
        log_sigma_min: lower bound of the prior's log-sigma.
        log_sigma_max: upper bound of the prior's log-sigma.
        num_couplings: number of additive coupling layers (masks alternate).
        coupling_hidden: hidden sizes of each coupling's shift network.
        scale_hidden: hidden sizes of the log-sigma network.
        shift_hidden: hidden sizes of each reward-shifting head.
        num_shift_heads: number of reward-shifting heads (2 for clipped double Q).
        reward_shifting: if False, ``b_k = 0`` (the ablation without LRS).
        dropout: dropout in the coupling networks.
        layer_norm: LayerNorm in the coupling networks.
        coupling_bias: ``zeros`` or ``default`` (see :data:`COUPLING_BIASES`).
        q_dropout: ``shared`` or ``per_head`` (see :data:`Q_DROPOUTS`).
        shift_scale: ``alpha`` or ``reward`` (see :data:`SHIFT_SCALES`).
        head_norm: ``none | layer | rms``: normalisation after each hidden linear of the
            reward-shifting heads and of the log-sigma network (none in the paper).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        alpha: float,
        log_sigma_min: float,
        log_sigma_max: float,
        num_couplings: int = 4,
        coupling_hidden: tuple[int, ...] = (64, 64),
        scale_hidden: tuple[int, ...] = (64, 64),
        shift_hidden: tuple[int, ...] = (256, 256),
        num_shift_heads: int = 2,
        reward_shifting: bool = True,
        dropout: float = 0.1,
        layer_norm: bool = True,
        coupling_bias: str = "default",
        q_dropout: str = "per_head",
        shift_scale: str = "alpha",
        head_norm: str = "none",
    ) -> None:
        super().__init__()
        check_choice("shift_scale", shift_scale, SHIFT_SCALES)
        self.shift_scale = shift_scale
        check_choice("coupling_bias", coupling_bias, COUPLING_BIASES)
        check_choice("q_dropout", q_dropout, Q_DROPOUTS)
        self.q_dropout = q_dropout
        # without dropout every head's pass through the couplings is the same: one pass serves all
        self._pass_per_head = q_dropout == "per_head" and dropout > 0.0 and num_shift_heads > 1
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.num_shift_heads = num_shift_heads
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.scaling = StateScaling(
            action_dim, obs_dim, log_sigma_min, log_sigma_max, scale_hidden, norm=head_norm
        )
        mask = torch.arange(action_dim) % 2 == 0
        self.couplings = nn.ModuleList(
            AdditiveCoupling(
                mask if k % 2 == 0 else ~mask,
                obs_dim,
                coupling_hidden,
                dropout,
                layer_norm,
                zero_bias=coupling_bias == "zeros",
            )
            for k in range(num_couplings)
        )
        self.squash = TanhSquash()
        self.shift = (
            EnsembleMLP(num_shift_heads, obs_dim, shift_hidden, 1, norm=head_norm)
            if reward_shifting
            else None
        )
        self._log_norm_const = 0.5 * action_dim * math.log(2.0 * math.pi)

    @property
    def transforms(self) -> list[Transform]:
        """The layers in the sampling direction (latent to action)."""
        return [self.scaling, *self.couplings, self.squash]

    def shift_values(self, obs: Tensor) -> Tensor:
        """Reward-shifting heads ``b_k(s)``, shaped ``(heads, B)``."""
        if self.shift is None:
            return obs.new_zeros(self.num_shift_heads, obs.shape[0])
        return self.shift(obs).squeeze(-1)

    def _to_action(self, u: Tensor, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Pushes a standard-normal latent through the flow; returns ``(a, ladj)``."""
        x, total = u, torch.zeros_like(u[..., 0])
        for transform in self.transforms:
            x, ladj = transform(x, obs)
            total = total + ladj
        return x, total

    def _to_latent(self, action: Tensor, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Inverts the flow; returns ``(u, energy ladj, state-only ladj)`` of ``du/da``."""
        x = action
        energy = torch.zeros_like(action[..., 0])
        constant = torch.zeros_like(energy)
        for transform in reversed(self.transforms):
            x, ladj = transform.inverse(x, obs)
            if transform.state_only_ladj:
                constant = constant + ladj
            else:
                energy = energy + ladj
        return x, energy, constant

    def _gaussian_log_kernel(self, u: Tensor) -> Tensor:
        return -0.5 * u.square().sum(-1)

    def sample(self, obs: Tensor, latent_scale: float = 1.0) -> tuple[Tensor, Tensor]:
        """Draws ``a ~ pi(.|s)``; returns ``(action, log pi(a|s))``.

        ``latent_scale`` < 1 draws the latent from ``N(0, latent_scale^2 I)`` instead, a diagnostic
        that narrows the policy around its mode (0: the deterministic action); the log-density
        returned is still the policy's own, ``log pi(a|s)`` of the action drawn.
        """
        u = torch.randn(obs.shape[0], self.action_dim, device=obs.device, dtype=obs.dtype)
        if latent_scale != 1.0:
            u = u * latent_scale
        action, ladj = self._to_action(u, obs)
        return action, self._gaussian_log_kernel(u) - self._log_norm_const - ladj

    def deterministic(self, obs: Tensor) -> Tensor:
        """The action of the latent ``u = 0``: ``tanh(couplings(0; s))``."""
        u = obs.new_zeros(obs.shape[0], self.action_dim)
        return self._to_action(u, obs)[0]

    def log_prob(self, obs: Tensor, action: Tensor) -> Tensor:
        """``log pi(a|s)`` for actions in ``(-1, 1)``."""
        u, energy, constant = self._to_latent(action, obs)
        return self._gaussian_log_kernel(u) - self._log_norm_const + energy + constant

    def q_values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Soft Q of every shift head, shaped ``(heads, B)``.

        With ``q_dropout="per_head"`` in training mode each head's energy comes from its own
        pass through the couplings (its own dropout masks); otherwise (and without dropout,
        where the passes would be equal) the heads share one pass.
        """
        heads = self.num_shift_heads
        if self._pass_per_head and self.training:
            u, energy, _ = self._to_latent(action.repeat(heads, 1), obs.repeat(heads, 1))
            kernel = (self._gaussian_log_kernel(u) + energy).view(heads, -1)
        else:
            u, energy, _ = self._to_latent(action, obs)
            kernel = self._gaussian_log_kernel(u) + energy
        return self._soft(kernel, obs)

    def _soft(self, log_kernel: Tensor, obs: Tensor) -> Tensor:
        """``alpha * (log_kernel + b_k)`` or, with reward-unit shifts, ``alpha * log_kernel + b_k``."""
        if self.shift_scale == "reward":
            return self.alpha * log_kernel + self.shift_values(obs)
        return self.alpha * (log_kernel + self.shift_values(obs))

    def values_and_log_prob(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """``(V_k(s), log pi(a|s))``, whose ``V_k + alpha log pi`` is the soft Q of every head:
        ``(heads, B)`` and, with a pass per head (as :meth:`q_values`), ``(heads, B)`` else ``(B,)``."""
        heads = self.num_shift_heads
        if self._pass_per_head and self.training:
            log_prob = self.log_prob(obs.repeat(heads, 1), action.repeat(heads, 1)).view(heads, -1)
        else:
            log_prob = self.log_prob(obs, action)
        return self.values(obs), log_prob

    def values(self, obs: Tensor) -> Tensor:
        """Soft V of every shift head in closed form, shaped ``(heads, B)``.

        Only the state-only layers and the shift heads run: the couplings are not needed.
        """
        constant = sum(t.inverse_ladj(obs) for t in self.transforms if t.state_only_ladj)
        return self._soft(self._log_norm_const - constant, obs)


def build_policy(cfg: DictConfig, obs_dim: int, action_dim: int) -> FlowPolicy:
    """The flow that ``cfg.algo`` describes, for observations of ``obs_dim`` and actions of
    ``action_dim`` numbers (the same architecture a checkpoint of that config holds)."""
    a = cfg.algo
    return FlowPolicy(
        obs_dim,
        action_dim,
        alpha=a.alpha,
        log_sigma_min=a.log_sigma_min,
        log_sigma_max=a.log_sigma_max,
        num_couplings=a.num_couplings,
        coupling_hidden=tuple(a.coupling_hidden),
        scale_hidden=tuple(a.scale_hidden),
        shift_hidden=tuple(a.shift_hidden),
        num_shift_heads=a.num_shift_heads,
        reward_shifting=a.reward_shifting,
        dropout=a.dropout,
        layer_norm=a.layer_norm,
        coupling_bias=a.coupling_bias,
        q_dropout=a.q_dropout,
        shift_scale=a.shift_scale,
        head_norm=a.head_norm,
    )
