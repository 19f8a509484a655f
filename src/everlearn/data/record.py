"""`everlearn run --record NAMESPACE`: every transition a run's envs make while it trains,
kept as Minari datasets, one per online task and seed: `NAMESPACE/task<k>-<task name>-seed<S>-v0`
(k counts tasks from 1, so a scenario that repeats a task keeps both).

What is recorded is what the agent met, as `everlearn collect` records it: the task's own
observations (after its context; the scenario's padding, task id and action mask dropped), the
agent's actions (in [-1, 1] for continuous actions), the rewards after the task's reward scale
and shift. A training segment resets its envs, so an episode still running when a segment ends
is kept with its last step marked truncated (that is what happened to it); every transition
of the run is in the datasets, in each env's order.

A segment's transitions go to `<run dir>/record/` as a numpy file once the segment is trained;
a task's datasets are written once a checkpoint holds the task's end, and its files are then
removed. A resumed run first drops the files of segments its checkpoint does not hold (that work
is redone), so a killed and resumed run records exactly what the uninterrupted run records.
Tasks learnt from a dataset (no env steps) get no dataset.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from everlearn.core.files import atomic_write
from everlearn.data import minari_io
from everlearn.data.collect import agent_spaces
from everlearn.data.datasets import task_observations
from everlearn.data.minari_io import Episode
from everlearn.envs.layout import Layout
from everlearn.envs.sources import EnvSpaces
from everlearn.scenarios.task import Scenario

RECORD_DIR = "record"  # in the run directory: segments trained since the last task's datasets


def recorded_dataset_id(namespace: str, task_index: int, task_name: str, seed: int) -> str:
    """The dataset of seed `seed` on task `task_index` (0-based) of a run recorded under
    `namespace`; characters a Minari id cannot hold in the task's name become '_'."""
    name = re.sub(r"[^-\w]", "_", task_name)
    return f"{namespace}/task{task_index + 1}-{name}-seed{seed}-v0"


def segment_episodes(columns: dict[str, np.ndarray], seed_row: int, spaces: EnvSpaces,
                     layout: Layout) -> list[Episode]:
    """One seed's transitions of a segment (`record_segment`'s columns, [seeds, steps per
    env, envs, ...]) cut into episodes: each env's in its order, envs one after another; an
    episode the segment's end cut off ends truncated."""
    steps, num_envs = columns["obs"].shape[1:3]

    def own(name: str) -> np.ndarray:  # [steps, envs, the task's own observation]
        seen = columns[name][seed_row].reshape(steps * num_envs, -1)
        return task_observations(seen, spaces, layout).reshape(steps, num_envs, -1)

    obs, next_obs = own("obs"), own("next_obs")
    action = columns["action"][seed_row]
    if spaces.continuous:  # the scenario's widest action: this task's dimensions come first
        action = action[..., :spaces.num_actions].astype(np.float32)
    else:
        action = action.astype(np.int64)
    reward = columns["reward"][seed_row].astype(np.float64)
    terminated = columns["terminated"][seed_row].astype(bool)
    truncated = columns["truncated"][seed_row].astype(bool)
    episodes = []
    for env in range(num_envs):
        ends = terminated[:, env] | truncated[:, env]
        ends[-1] = True  # the segment's end
        start = 0
        for end in np.flatnonzero(ends):
            rows = slice(start, end + 1)
            cut = truncated[rows, env].copy()
            cut[-1] = not terminated[end, env]
            episodes.append(Episode(
                observations=np.concatenate([obs[rows, env], next_obs[end:end + 1, env]]),
                actions=action[rows, env], rewards=reward[rows, env],
                terminations=terminated[rows, env].copy(), truncations=cut))
            start = end + 1
    return episodes


class RunRecorder:
    """The datasets of one recording run (module docstring)."""

    def __init__(self, run_dir: Path, namespace: str, scenario: Scenario, seeds: list[int],
                 spaces: list[EnvSpaces], layout: Layout, evals_per_task: int, about: dict):
        """`spaces`: each task's own spaces; `about`: the run, for the datasets' metadata."""
        self.dir = Path(run_dir) / RECORD_DIR
        self.namespace, self.scenario, self.seeds = namespace, scenario, seeds
        self.spaces, self.layout, self.evals_per_task = spaces, layout, evals_per_task
        self.about = about

    def dataset_ids(self) -> list[str]:
        """Every dataset the run will write: each online task's, for each seed."""
        return [recorded_dataset_id(self.namespace, k, task.name, seed)
                for k, task in enumerate(self.scenario.tasks) if task.dataset is None
                for seed in self.seeds]

    def check_new(self) -> None:
        """Refuse, in one line, a namespace that cannot hold the datasets or already holds one
        of them (a new run never writes over another's data)."""
        ids = self.dataset_ids()
        if not ids:
            raise ValueError(f"--record: scenario '{self.scenario.name}' learns every task from "
                             "a dataset, so the run makes no transitions to record")
        minari_io.check_dataset_id(ids[0])
        taken = sorted(set(ids) & set(minari_io.list_local()))
        if taken:
            raise ValueError(f"--record {self.namespace}: dataset '{taken[0]}' exists "
                             f"({len(taken)} of this run's {len(ids)} do); record under "
                             "another namespace")

    def add(self, segment: int, task_index: int, columns: dict[str, np.ndarray] | None) -> None:
        """Keep segment `segment`'s transitions (of task `task_index`) until its task ends."""
        if columns is None:  # learnt from a dataset
            return
        self.dir.mkdir(exist_ok=True)
        data = io.BytesIO()
        np.savez(data, **columns)
        atomic_write(self.dir / f"task{task_index:04d}-segment{segment:07d}.npz",
                           data.getvalue())

    def _files(self) -> list[tuple[int, int, Path]]:
        """(task, segment, file) of every kept segment, in segment order."""
        if not self.dir.is_dir():
            return []
        found = []
        for path in self.dir.glob("task*-segment*.npz"):
            task, segment = re.fullmatch(r"task(\d+)-segment(\d+)\.npz", path.name).groups()
            found.append((int(task), int(segment), path))
        return sorted(found, key=lambda item: item[1])

    def rollback(self, checkpoint_segment: int | None) -> None:
        """Drop the segments after the checkpoint a resumed run starts from (redone)."""
        for _, segment, path in self._files():
            if checkpoint_segment is None or segment > checkpoint_segment:
                path.unlink()

    def flush(self, checkpoint_segment: int) -> list[str]:
        """Write the datasets of every task whose end the checkpoint holds and whose segments
        are kept, then drop those segments; the ids written."""
        by_task: dict[int, list[Path]] = {}
        for task, segment, path in self._files():
            by_task.setdefault(task, []).append(path)
        written = []
        for task, paths in sorted(by_task.items()):
            if (task + 1) * self.evals_per_task > checkpoint_segment:
                continue  # the task is still running
            written += self._write_task(task, paths)
            for path in paths:
                path.unlink()
        if self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()
        return written

    def _write_task(self, task_index: int, paths: list[Path]) -> list[str]:
        task, spaces = self.scenario.tasks[task_index], self.spaces[task_index]
        per_seed: list[list[Episode]] = [[] for _ in self.seeds]
        for path in paths:
            with np.load(path) as columns:
                columns = dict(columns)
            for row in range(len(self.seeds)):
                per_seed[row] += segment_episodes(columns, row, spaces, self.layout)
        ids = []
        for row, seed in enumerate(self.seeds):
            episodes = per_seed[row]
            dataset_id = recorded_dataset_id(self.namespace, task_index, task.name, seed)
            returns = [float(e.rewards.sum()) for e in episodes]
            metadata = {"scenario": self.scenario.name, "task": task.describe(),
                        "task_index": task_index, "seed": seed, **self.about,
                        "policy": f"{self.about['agent']} training (seed {seed})",
                        "episodes_cut_by_segments": "an episode a segment's end cut off ends "
                                                    "truncated",
                        "mean_return": float(np.mean(returns))}
            # overwrite: the run owns these ids (checked new at its start); a resumed run
            # writes again a task whose datasets a kill left unwritten or half-written.
            minari_io.write_dataset(dataset_id, episodes, **agent_spaces(spaces),
                                    metadata=metadata, overwrite=True,
                                    description=f"the transitions of run {self.about['run']} "
                                                f"on task '{task.name}', seed {seed}")
            ids.append(dataset_id)
        return ids
