"""What the built-in recipes of a task hold (issue 14 part 1): for each quality, the dataset's
id, size, episodes, average return (raw and normalised by the task's scores) and the policy
that made it, with its greedy return. A recipe not in the Minari store yet is made first
(timed); one already there is read.

    .venv/bin/python benchmarks/recipes.py --scenario hopper-offline-to-online \
        --out benchmarks/results/recipes_hopper.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from everlearn.data import minari_io, recipes
from everlearn.scenarios import get_scenario
from machine import results_header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--task", help="a task of the scenario by name (default: its first)")
    parser.add_argument("--qualities", default=",".join(recipes.QUALITIES))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    scenario = get_scenario(args.scenario)
    names = [t.name for t in scenario.tasks]
    if args.task is not None and args.task not in names:
        parser.error(f"scenario '{scenario.name}' has no task '{args.task}'; its tasks: "
                     f"{', '.join(names)}")
    task = scenario.tasks[names.index(args.task) if args.task else 0]
    rows = ["| quality | dataset | transitions | episodes | average return | normalised | "
            "policy | its greedy return | made here in |",
            "|:--|:--|--:|--:|--:|--:|:--|--:|--:|"]
    for quality in args.qualities.split(","):
        stored = recipes.recipe_id(task, quality) in minari_io.list_local()
        started = time.perf_counter()
        name = recipes.make_recipe(task, quality, log=lambda line: print(line, flush=True))
        made = "read from the store" if stored else f"{time.perf_counter() - started:.0f} s"
        data = minari_io.load_transitions(name)
        about = data.metadata
        average = float(np.mean(data.episode_returns))
        greedy = about.get("greedy_return")
        rows.append(f"| {quality} | `{name}` | {len(data.reward):,} | "
                    f"{len(data.episode_returns):,} | {average:.1f} | "
                    f"{float(task.normalise(average)):.3f} | {about['policy']} | "
                    f"{'—' if greedy is None else f'{greedy:.1f}'} | {made} |")
        print(rows[-1], flush=True)
    lines = [*results_header(f"Built-in recipes of task '{task.name}' ({task.env}, scenario "
                             f"'{scenario.name}')", None), "",
             f"Normalised by the task's random ({task.random_score}) and reference "
             f"({task.reference_score}) scores. The recipe's own training and snapshot rules: "
             "`everlearn.data.recipes` (docs/offline.md, \"Built-in recipes\").", "", *rows]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
