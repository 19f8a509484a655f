"""What a config value may be, written from what each key means (a learning rate is positive,
a discount lies in (0, 1], a count is a whole number of at least one), not read from
everlearn's validators: fuzzing checks the validators against it
(tests/runs/test_cli_properties.py, benchmarks/reliability.py)."""

from __future__ import annotations

import math
from typing import Any

COUNTS = {"num_envs", "num_steps", "num_epochs", "num_minibatches", "batch_size", "buffer_size",
          "train_every", "gradient_steps", "target_update_every", "exploration_steps",
          "policy_delay", "evals_per_task", "eval_episodes", "checkpoint_every",
          "steps_per_task", "eval_every", "memory_per_task", "reference_batch", "states_per_task",
          "fisher_samples", "importance_samples", "capacity", "every_updates", "elephant_d"}
NON_NEGATIVE_COUNTS = {"learning_starts", "maturity_threshold", "random_steps"}
POSITIVE = {"learning_rate", "clip_eps", "max_grad_norm", "init_alpha", "utd_ratio",
            "elephant_a", "adam_eps"}
NON_NEGATIVE = {"ent_coef", "vf_coef", "exploration_noise", "target_noise", "target_noise_clip",
                "strength", "policy_coef", "value_coef", "noise", "tau", "min_q_weight"}
UNIT_INTERVAL = {"epsilon_start", "epsilon_end", "gae_lambda", "replay_fraction", "decay",
                 "shrink", "replacement_rate"}
OPEN_UNIT = {"gamma": (0.0, 1.0, False, True), "target_tau": (0.0, 1.0, False, True),
             "keep_fraction": (0.0, 1.0, False, True), "utility_decay": (0.0, 1.0, True, False)}
# Keys where null means "work it out": the scenario's budget, PackNet's equal split, SAC's
# random steps (learning_starts), evaluations per task (evals_per_task).
NONE_IS_DEFAULT = {"steps_per_task", "keep_fraction", "random_steps", "eval_every"}
# Keys where null switches something off, in these sections only: DQN's gradient clipping.
NONE_IS_OFF = {"max_grad_norm": {"dqn", "cql_dqn"}}
# Polyak steps of the continuous agents: `tau` of sac/td3/td3_bc/iql/cql is a step in
# (0, 1], of redo a threshold (>= 0); told apart by section.
POLYAK_SECTIONS = {"sac", "td3", "td3_bc", "iql", "cql"}


def _number(value: Any) -> float | None:
    """The number a value stands for. YAML 1.1 reads `3e-4` (no dot) as text, so text that
    Python reads as a number counts as that number (what `--set ppo.learning_rate=3e-4`
    means)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def allowed(key: str, value: Any) -> bool | None:
    """Whether `value` is a valid value of dotted config key `key`; None: a key this oracle
    does not judge (text choices, lists, switches), where only the validators decide."""
    section, _, name = key.rpartition(".")
    if name == "hidden_sizes":
        return (isinstance(value, list) and len(value) >= 1
                and all(_number(v) is not None and _number(v) == int(_number(v)) >= 1
                        for v in value))
    if name == "target_entropy":  # None: the agent's default; else any finite number
        return value is None or (_number(value) is not None and math.isfinite(_number(value)))
    if value is None and name in NONE_IS_DEFAULT:
        return True
    if value is None and section in NONE_IS_OFF.get(name, ()):
        return True
    judged = (COUNTS | NON_NEGATIVE_COUNTS | POSITIVE | NON_NEGATIVE | UNIT_INTERVAL
              | set(OPEN_UNIT))
    if name not in judged:
        return None
    number = _number(value)
    if number is None or not math.isfinite(number):
        return False
    if name in COUNTS:
        return number == int(number) and number >= 1
    if name in NON_NEGATIVE_COUNTS:
        return number == int(number) and number >= 0
    if name == "tau" and section in POLYAK_SECTIONS:
        return 0.0 < number <= 1.0
    if name in POSITIVE:
        return number > 0
    if name in NON_NEGATIVE:
        return number >= 0
    if name in UNIT_INTERVAL:
        return 0.0 <= number <= 1.0
    low, high, low_in, high_in = OPEN_UNIT[name]
    return (low <= number if low_in else low < number) and (
        number <= high if high_in else number < high)


def settable_keys() -> list[tuple[str, list[str]]]:
    """Every key `--set` takes (the run's, and each agent's and method's section), with the
    options a run needs for the key to be its own (`--agent NAME`, `--method NAME`)."""
    from pydantic import BaseModel

    from everlearn.agents import AGENTS
    from everlearn.runs.config import RunConfig

    keys: list[tuple[str, list[str]]] = []
    for name, value in RunConfig():
        if isinstance(value, BaseModel):
            needs = ["--agent", name] if name in AGENTS else ["--method", name]
            keys += [(f"{name}.{key}", needs) for key in type(value).model_fields]
        elif name not in ("scenario", "agent", "backend", "methods"):
            keys.append((name, []))
    return keys
