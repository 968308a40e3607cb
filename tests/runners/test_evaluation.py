"""Evaluation: runner.eval_mode, its TensorBoard tags, the value calibration's soft return, and
an evaluation that leaves training's random stream alone."""

from __future__ import annotations

import math

import pytest
import torch

from meow.config import ConfigError, config_from_checkpoint
from meow.envs.multigoal import MultiGoalEnv
from meow.envs.protocol import StepResult
from meow.runners import OffPolicyRunner
from meow.runners.evaluation import EVAL_MODES

TINY = ["algo.coupling_hidden=[16]", "algo.scale_hidden=[16]", "algo.shift_hidden=[16]"]

DETERMINISTIC_TAGS = {"eval/return_mean", "eval/return_std"}
STOCHASTIC_TAGS = {
    "eval/stochastic_return_mean",
    "eval/stochastic_return_std",
    "eval/value_v0",
    "eval/soft_return",
    "eval/value_error",
}


def test_eval_mode_takes_its_three_values_and_answers_another_in_one_line(multigoal_cfg):
    assert EVAL_MODES == ("deterministic", "stochastic", "both")
    for mode in EVAL_MODES:
        assert multigoal_cfg(f"runner.eval_mode={mode}").runner.eval_mode == mode
    assert multigoal_cfg().runner.eval_mode == "both"  # the default
    with pytest.raises(ConfigError) as info:
        multigoal_cfg("runner.eval_mode=sampled")
    assert str(info.value) == "runner.eval_mode=sampled is invalid; valid: deterministic | stochastic | both"


def test_a_checkpoint_from_before_eval_mode_keeps_evaluating_deterministically(multigoal_cfg):
    from omegaconf import OmegaConf

    saved = OmegaConf.to_container(multigoal_cfg(), resolve=True)
    del saved["runner"]["eval_mode"]
    assert config_from_checkpoint(saved).runner.eval_mode == "deterministic"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("both", DETERMINISTIC_TAGS | STOCHASTIC_TAGS),
        ("stochastic", STOCHASTIC_TAGS),
        ("deterministic", DETERMINISTIC_TAGS),
    ],
)
def test_each_eval_mode_writes_its_tags(mode, expected, multigoal_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = multigoal_cfg(
        "runner.total_steps=200", "runner.eval_interval=100", f"runner.eval_mode={mode}", *TINY
    )
    runner = OffPolicyRunner(cfg, MultiGoalEnv(1), MultiGoalEnv(3), tmp_path)
    runner.learn()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    written = {t for t in events.Tags()["scalars"] if t.startswith("eval/")}
    assert written == expected
    for tag in expected:
        assert [e.step for e in events.Scalars(tag)] == [100, 200]
    if "eval/value_error" in expected:
        values = {t: [e.value for e in events.Scalars(t)] for t in STOCHASTIC_TAGS}
        for v0, soft, err in zip(
            values["eval/value_v0"], values["eval/soft_return"], values["eval/value_error"], strict=True
        ):
            assert err == pytest.approx(v0 - soft, rel=1e-5)
    # last_eval: the deterministic evaluation when there is one, else the stochastic one
    assert len(runner.evaluations) == (2 if mode != "stochastic" else 0)
    assert len(runner.stochastic_evaluations) == (2 if mode != "deterministic" else 0)
    history = runner.evaluations or runner.stochastic_evaluations
    assert runner.last_eval == tuple(history[-1][1:3])
    assert runner.num_evals == 2  # one evaluation round each, both passes from the same start states
    shown = OffPolicyRunner._postfix({t: 1.0 for t in expected})  # the console line
    assert ("eval" in shown) == (mode != "stochastic")
    assert ("eval_stoch" in shown) == (mode != "deterministic")


class RecordingEnv:
    """A MultiGoal env that keeps every observation, action and step result it sees."""

    def __init__(self, num_envs: int, horizon: int) -> None:
        self.env = MultiGoalEnv(num_envs, horizon=horizon, goal_threshold=2.0)
        self.num_envs, self.obs_dim, self.action_dim = num_envs, 2, 2
        self.device = self.env.device
        self.obs: list[torch.Tensor] = []
        self.actions: list[torch.Tensor] = []
        self.results: list[StepResult] = []

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Half of the points start on the goal (5, 0): their first step ends the episode there;
        the others start near the origin, out of reach, and time out."""
        self.env.reset(seed)
        self.env.position[: self.num_envs // 2] = torch.tensor(MultiGoalEnv.GOALS[0])
        obs = self.env.position.clone()
        self.obs, self.actions, self.results = [obs.clone()], [], []
        return obs

    def step(self, actions: torch.Tensor) -> StepResult:
        self.actions.append(actions.clone())
        result = self.env.step(actions)
        self.results.append(result)
        self.obs.append(result.obs.clone())
        return result

    def close(self) -> None:
        pass


def test_the_soft_return_is_the_discounted_reward_minus_alpha_log_pi_with_time_outs_bootstrapped(
    multigoal_cfg, randomize
):
    """The runner's soft return and V(s0) against a sum written out here over the episodes the
    env recorded: a wrong gamma, alpha, sign, episode end or time-out bootstrap changes it."""
    gamma, alpha, horizon, n = 0.8, 0.7, 6, 8
    cfg = multigoal_cfg(
        "runner.eval_mode=stochastic", f"algo.gamma={gamma}", f"algo.alpha={alpha}", "env.eval_envs=8"
    )
    env = RecordingEnv(n, horizon)
    runner = OffPolicyRunner(cfg, MultiGoalEnv(1), env)
    policy = runner.alg.policy
    with torch.no_grad():
        randomize(policy, std=0.1)
    runner.evaluate(deterministic=False)
    record = runner.stochastic_evaluations[-1]

    policy.eval()
    norm = runner.alg.normalizer
    with torch.no_grad():
        v0 = policy.values(norm(env.obs[0])).min(0).values
        expected_soft, expected_return, endings = [], [], set()
        for i in range(n):
            soft = ret = 0.0
            for t, (obs, action, result) in enumerate(zip(env.obs, env.actions, env.results, strict=False)):
                log_pi = policy.log_prob(norm(obs[i : i + 1]), action[i : i + 1]).item()
                reward = result.rewards[i].item()
                soft += gamma**t * (reward - alpha * log_pi)
                ret += reward
                if result.terminated[i]:
                    endings.add("terminated")
                    break
                if result.truncated[i]:
                    endings.add("time-out")
                    assert t + 1 == horizon
                    v_final = policy.values(norm(result.next_obs[i : i + 1])).min(0).values.item()
                    soft += gamma ** (t + 1) * v_final
                    break
            expected_soft.append(soft)
            expected_return.append(ret)
    assert endings == {"terminated", "time-out"}  # both branches of the sum are exercised
    assert record.value_v0 == pytest.approx(v0.mean().item(), rel=1e-5)
    assert record.soft_return == pytest.approx(sum(expected_soft) / n, rel=1e-4)
    assert record.value_error == pytest.approx(record.value_v0 - record.soft_return)
    assert record.mean == pytest.approx(sum(expected_return) / n, rel=1e-5)
    # the entropy term matters at these settings: the sum without it is far off
    assert abs(record.soft_return - sum(expected_return) / n) > 0.1 * abs(record.soft_return)


def test_stochastic_evaluation_is_reproducible_and_leaves_the_deterministic_one_unchanged(multigoal_cfg):
    cfg = multigoal_cfg("runner.total_steps=100", *TINY)
    runner = OffPolicyRunner(cfg, MultiGoalEnv(1), MultiGoalEnv(4))
    runner.learn()
    runner.num_evals = 5
    both = runner.evaluate_modes()
    runner.num_evals = 5
    again = runner.evaluate_modes()
    assert both == again
    runner.num_evals = 5
    assert runner.evaluate() == (both["eval/return_mean"], both["eval/return_std"])
    runner.num_evals = 6  # another evaluation round: other start states and other samples
    assert runner.evaluate(deterministic=False)[0] != both["eval/stochastic_return_mean"]


def test_stochastic_evaluation_does_not_change_the_training_that_follows(multigoal_cfg):
    """The same run with evaluations every 50 steps and without any: the same weights and replay
    data, although each evaluation samples hundreds of actions from torch's generator."""
    overrides = ["runner.total_steps=300", "runner.eval_interval=50", "runner.eval_mode=stochastic", *TINY]
    evaluated = OffPolicyRunner(multigoal_cfg(*overrides), MultiGoalEnv(1), MultiGoalEnv(3))
    evaluated.learn()
    plain = OffPolicyRunner(multigoal_cfg(*overrides), MultiGoalEnv(1), None)
    plain.learn()
    assert len(evaluated.stochastic_evaluations) == 6 and evaluated.num_updates == plain.num_updates > 0
    assert torch.equal(evaluated.buffer.actions, plain.buffer.actions)
    for a, b in zip(evaluated.alg.policy.parameters(), plain.alg.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    # after training the evaluation stays out of the caller's stream too
    state = torch.get_rng_state()
    evaluated.evaluate(deterministic=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert not math.isnan(evaluated.stochastic_evaluations[-1].value_error)
