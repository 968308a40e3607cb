"""scripts/train.py under torchrun, recording per rank what the distributed tests check.

    MEOW_TEST_RECORD=DIR torchrun --standalone --nproc_per_node 2 tests/distributed/dist_worker.py ARGS...

ARGS are train.py's. Each rank writes, into DIR (kept apart from the run's log directory, so that
the tests can tell which files training itself wrote):

* ``rank<r>.pid`` when it starts;
* ``rank<r>.pt`` when :meth:`OffPolicyRunner.learn` returns or raises: the learner's state,
  the runner's ``global_step``, the env steps this rank took and every observation batch it
  gave its normalizer.

``MEOW_TEST_NONFINITE_RANK=r``: rank ``r``'s learner flags a non-finite loss after each update,
as if that rank alone had produced one (its gradients stay finite, so the other ranks' own
flags stay clear).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from script_loader import load_script

train = load_script("train")

from meow.algorithms import MEow  # noqa: E402
from meow.modules import EmpiricalNormalization  # noqa: E402
from meow.runners import OffPolicyRunner  # noqa: E402

RECORD = Path(os.environ["MEOW_TEST_RECORD"])
RANK = int(os.environ["RANK"])
observed: list[torch.Tensor] = []
counts = {"env_steps": 0}

_learn = OffPolicyRunner.learn
_update = EmpiricalNormalization.update


def _recording_update(self, x):
    observed.append(x.detach().cpu().clone())
    _update(self, x)


def _recording_learn(self, *args, **kwargs):
    step = self.env.step

    def counting_step(actions):
        counts["env_steps"] += self.env.num_envs
        return step(actions)

    self.env.step = counting_step
    try:
        return _learn(self, *args, **kwargs)
    finally:
        self.env.step = step
        torch.save(
            {
                "learner": self.alg.state_dict(),
                "global_step": self.global_step,
                "env_steps": counts["env_steps"],
                "observed": torch.cat(observed) if observed else None,
            },
            RECORD / f"rank{RANK}.pt",
        )


OffPolicyRunner.learn = _recording_learn
EmpiricalNormalization.update = _recording_update

if os.environ.get("MEOW_TEST_NONFINITE_RANK") == str(RANK):
    _alg_update = MEow.update_from

    def _flagging_update(self, *args, **kwargs):
        out = _alg_update(self, *args, **kwargs)
        self.nonfinite.fill_(True)
        return out

    MEow.update_from = _flagging_update

if __name__ == "__main__":
    RECORD.mkdir(parents=True, exist_ok=True)
    (RECORD / f"rank{RANK}.pid").write_text(str(os.getpid()))
    sys.exit(train.main(sys.argv[1:]))
