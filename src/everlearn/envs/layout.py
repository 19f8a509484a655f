"""One input and output layout for every task of a scenario, whose tasks may be different envs.

The agent sees one observation vector per step: the task's observation zero-padded to the
largest shape of the scenario (as CORA does for Atari/MinAtar) and flattened, then the task id
one-hot where the run gives task ids, then — only where the tasks' discrete action sets differ
— a 0/1 mask of the actions this task has. Networks strip the mask from their input and push
absent actions' logits and Q-values to a large negative value, so no absent action is ever
chosen and every consumer of the outputs (the losses, the methods) sees the same masked policy.
A scenario whose tasks share one env has no padding and no mask: its programs are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from everlearn.envs.sources import EnvSpaces

# What an absent action's logit or Q-value becomes: far below any real one, and finite so that
# softmax, log-softmax and entropies stay free of NaN.
MASKED_OUTPUT = -1e9


@dataclass(frozen=True)
class Layout:
    obs_shape: tuple[int, ...]  # the largest observation shape of the scenario
    continuous: bool
    num_actions: int  # the largest action set (discrete) or the action size (continuous)
    masked: bool  # discrete tasks with different action counts: a mask follows the obs

    @property
    def obs_size(self) -> int:
        return int(np.prod(self.obs_shape))

    @property
    def image(self) -> bool:
        return len(self.obs_shape) == 3


def scenario_layout(names: list[str], spaces: list[EnvSpaces]) -> Layout:
    """The union layout of tasks `names` with these spaces; refuses what cannot be joined."""
    kinds = {s.continuous for s in spaces}
    if len(kinds) != 1:
        continuous = [n for n, s in zip(names, spaces) if s.continuous]
        raise ValueError(f"tasks {continuous} have continuous actions and the others discrete "
                         "ones; one scenario needs one kind of action")
    ranks = {len(s.obs_shape) for s in spaces}
    if len(ranks) != 1:
        shapes = {n: s.obs_shape for n, s in zip(names, spaces)}
        raise ValueError(f"tasks' observations differ in rank {shapes}; pad or flatten them "
                         "to one rank in the envs")
    continuous = kinds.pop()
    sizes = {s.num_actions for s in spaces}
    if continuous and len(sizes) != 1:
        by_task = {n: s.num_actions for n, s in zip(names, spaces)}
        raise ValueError(f"continuous action sizes differ between tasks {by_task}; they "
                         "must match")
    obs_shape = tuple(int(max(d)) for d in zip(*(s.obs_shape for s in spaces)))
    return Layout(obs_shape, continuous, max(sizes), masked=not continuous and len(sizes) > 1)


def pad_observation(obs: Any, shape: tuple[int, ...], xp: Any = np) -> Any:
    """Zero-pad `obs` at the end of each axis to `shape` (`xp`: numpy or jax.numpy)."""
    if tuple(obs.shape[-len(shape):]) == shape:
        return obs
    widths = [(0, 0)] * (obs.ndim - len(shape)) + [
        (0, target - have) for have, target in zip(obs.shape[-len(shape):], shape)]
    return xp.pad(obs, widths)


def action_mask(num_actions: int, layout: Layout) -> tuple[float, ...]:
    """The mask a task with `num_actions` actions appends (empty where nothing is masked)."""
    if not layout.masked:
        return ()
    return tuple(float(a < num_actions) for a in range(layout.num_actions))
