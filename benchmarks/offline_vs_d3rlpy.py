"""Offline agents against d3rlpy (issue 14 part 5a): everlearn's `td3_bc`, `iql` and `cql`
against d3rlpy 2.8.1's TD3PlusBC, IQL and CQL on the standard Pendulum's built-in medium and
expert recipes: the same rows, the same gradient-step budget, the same settings where the two
libraries share them (listed in SETTINGS), and the same evaluation for both.

    make bench   # installs d3rlpy (and torch 2.13.0, CPU)
    .venv/bin/python benchmarks/offline_vs_d3rlpy.py --steps 5000 --seeds 0-4 \
        --out benchmarks/results/offline_vs_d3rlpy --header HEADER.md

Each (library, agent, dataset) cell is one run: everlearn trains all its seeds at once (vmapped,
two segments of `steps / 2` gradient steps: the first holds the compilation, the second gives
the steady rate); d3rlpy trains one seed after another with `fit` (its rate: steps / fit time).
Every finished cell is appended to OUT.cells.jsonl, so an interrupted run picks up where it
stopped. Evaluation, both libraries: the greedy policy on Gymnasium's `Pendulum-v1`, episodes
reset with seeds 1000.. (`--episodes`, 10), actions × 2 (the motor range); score normalised
with the recipe's random and reference returns. Writes OUT.md (the tables; `--header FILE`
puts a file's text, the command, commit and machine, at its top) and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import jax
import numpy as np

from everlearn.data import minari_io, recipes
from everlearn.evaluation.metrics import interquartile_mean_ci
from everlearn.runs.config import build_config
from everlearn.runs.run import make_datasets, make_plan

RANDOM_RETURN, REFERENCE_RETURN = -1214.0, -150.0  # the standard Pendulum's, as its scenarios
MOTOR_RANGE = 2.0
AGENTS = ("td3_bc", "iql", "cql")
DATASETS = ("medium", "expert")

# Per agent: everlearn `--set`s and d3rlpy config arguments that make the two run the same
# algorithm (the ones d3rlpy does not expose stay at each library's defaults; docstrings of
# everlearn.agents.* list them).
SETTINGS = {
    "td3_bc": {
        "everlearn": [],  # the authors' defaults, which d3rlpy's TD3PlusBC shares
        "d3rlpy": {"observation_scaler": "standard"},  # the paper normalises observations
        "note": "both at the authors' defaults: [256, 256], Adam 3e-4, α 2.5, policy noise 0.2 "
                "clipped at 0.5, actor every 2nd step, τ 0.005, observations standardised",
    },
    "iql": {
        "everlearn": ["iql.actor_lr_schedule=constant"],  # d3rlpy has no cosine decay
        "d3rlpy": {},
        "note": "[256, 256], Adam 3e-4 for all, expectile 0.7, β 3.0, weights clipped at 100, "
                "τ 0.005, constant actor learning rate (everlearn's default decays it over 1M "
                "steps; d3rlpy has no decay)",
    },
    "cql": {
        "everlearn": ["cql.bc_steps=0", "cql.hidden_sizes=[256,256]"],
        "d3rlpy": {"alpha_learning_rate": 0.0},  # a fixed conservative weight, as the paper
        "note": "[256, 256] (d3rlpy's; everlearn's default is the authors' three layers), "
                "actor and α 1e-4, critics 3e-4, conservative weight 5.0 fixed (d3rlpy: "
                "`alpha_learning_rate=0`, α' stays 1), 10 sampled actions of each kind, no BC "
                "warm-up (d3rlpy has none; everlearn's default is the authors' 40,000 steps); "
                "d3rlpy's target action is the policy's mean, everlearn's a sample",
    },
}


def normalised(returns) -> np.ndarray:
    return (np.asarray(returns, dtype=np.float64) - RANDOM_RETURN) / (REFERENCE_RETURN - RANDOM_RETURN)


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(x) for x in text.split("-"))
        return list(range(first, last + 1))
    return [int(x) for x in text.split(",")]


def evaluate(act, episodes: int) -> float:
    """Mean return of the greedy policy `act(obs[3]) -> action[1] in [-1, 1]` on Gymnasium's
    Pendulum-v1 over `episodes` episodes reset with seeds 1000, 1001, ..."""
    env = gym.make("Pendulum-v1")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=1000 + episode)
        done, total = False, 0.0
        while not done:
            action = MOTOR_RANGE * np.clip(np.asarray(act(obs), np.float32), -1.0, 1.0)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def scenario_file(directory: Path, dataset: str, steps: int) -> Path:
    path = directory / f"pendulum-{dataset}.yaml"
    path.write_text(f"name: pendulum-{dataset}\nsteps_per_task: {steps}\ntasks:\n"
                    f"  - {{name: standard, env: Pendulum-v1, dataset: {dataset}, "
                    f"random_score: {RANDOM_RETURN}, reference_score: {REFERENCE_RETURN}}}\n")
    return path


def everlearn_cell(agent_name: str, dataset: str, seeds: list[int], steps: int, episodes: int,
                   directory: Path) -> dict:
    config = build_config(None, {"scenario": str(scenario_file(directory, dataset, steps)),
                                 "agent": agent_name, "seeds": seeds},
                          ["evals_per_task=2", "diagnostics=false",
                           *SETTINGS[agent_name]["everlearn"]])
    plan = make_plan(config)
    make_datasets(plan.scenario, config, True)
    trainer = plan.trainer
    state = trainer.init(seeds)
    started = time.perf_counter()
    state, _ = trainer.train_segment(state, 0)
    jax.block_until_ready(state)
    first = time.perf_counter() - started
    started = time.perf_counter()
    state, _ = trainer.train_segment(state, 0)
    jax.block_until_ready(state)
    second = time.perf_counter() - started
    greedy = jax.jit(trainer.agent.greedy_action)
    returns = []
    for index in range(len(seeds)):
        one = jax.tree.map(lambda x: x[index], state.agent)
        returns.append(evaluate(lambda obs: greedy(one, obs[None].astype(np.float32))[0], episodes))
    half = steps // 2
    return {"returns": returns, "first_segment_s": first, "steady_s": second,
            "seed_steps_per_s": half * len(seeds) / second,
            "dataset_id": recipes.recipe_id(plan.scenario.tasks[0], dataset)}


def d3rlpy_cell(agent_name: str, dataset_id: str, seed: int, steps: int, episodes: int) -> dict:
    import d3rlpy

    data = minari_io.load_transitions(dataset_id)
    mdp = d3rlpy.dataset.MDPDataset(
        data.obs.astype(np.float32), data.action.astype(np.float32),
        data.reward.astype(np.float32), data.terminated.astype(np.float32),
        timeouts=data.truncated.astype(np.float32))
    kwargs = dict(SETTINGS[agent_name]["d3rlpy"])
    if kwargs.pop("observation_scaler", None) == "standard":
        kwargs["observation_scaler"] = d3rlpy.preprocessing.StandardObservationScaler()
    config = {"td3_bc": d3rlpy.algos.TD3PlusBCConfig, "iql": d3rlpy.algos.IQLConfig,
              "cql": d3rlpy.algos.CQLConfig}[agent_name](**kwargs)
    d3rlpy.seed(seed)
    algo = config.create(device="cpu:0")
    algo.build_with_dataset(mdp)
    started = time.perf_counter()
    algo.fit(mdp, n_steps=steps, n_steps_per_epoch=steps, show_progress=False,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10**9)
    fit_s = time.perf_counter() - started
    ret = evaluate(lambda obs: algo.predict(obs[None].astype(np.float32))[0], episodes)
    return {"returns": [ret], "fit_s": fit_s, "seed_steps_per_s": steps / fit_s}


def stats(values) -> dict:
    return interquartile_mean_ci(np.asarray(values, dtype=np.float64))


def fmt(s: dict) -> str:
    return f"{s['iqm']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def write_tables(cells: list[dict], args, out: Path) -> None:
    """The tables of every cell in the log at this budget: so runs with other agents, datasets
    or seeds (e.g. fewer seeds for the slow CQL) fill one file. The latest everlearn cell and
    the latest cell of each d3rlpy seed count."""
    cells = [c for c in cells if c["steps"] == args.steps]
    by = {(c["library"], c["agent"], c["dataset"]): c for c in cells if c["library"] == "everlearn"}
    d3 = {(c["agent"], c["dataset"], c["seed"]): c for c in cells if c["library"] == "d3rlpy"}
    lines = ["## Normalised return after %d gradient steps" % args.steps, "",
             "IQM over seeds with a 95% stratified-bootstrap CI (as `everlearn compare`); "
             "0 is a random policy, 1 the recipe's reference.", "",
             "| agent | dataset | data average | everlearn | d3rlpy | everlearn seeds | d3rlpy seeds |",
             "|:--|:--|--:|--:|--:|--:|--:|"]
    rates = ["## Gradient steps per second", "",
             "everlearn: all seeds vmapped in one program, the second segment's rate (compiled); "
             "d3rlpy: one seed per `fit`, the mean over its seeds.", "",
             "| agent | dataset | everlearn seed-steps/s | everlearn first segment (s) | "
             "d3rlpy steps/s | ratio |", "|:--|:--|--:|--:|--:|--:|"]
    summary = {}
    for agent in AGENTS:
        for dataset in DATASETS:
            ours = by.get(("everlearn", agent, dataset))
            theirs = [c for (a, d, _), c in sorted(d3.items()) if (a, d) == (agent, dataset)]
            if ours is None:
                continue
            ours_n = normalised(ours["returns"])
            theirs_n = normalised([c["returns"][0] for c in theirs])
            s_ours = stats(ours_n)
            s_theirs = stats(theirs_n) if len(theirs_n) else None
            lines.append(f"| `{agent}` | {dataset} | {ours['data_normalised']:.3f} | "
                         f"{fmt(s_ours)} | {fmt(s_theirs) if s_theirs else '—'} | "
                         f"{len(ours_n)} | {len(theirs_n)} |")
            their_rate = float(np.mean([c["seed_steps_per_s"] for c in theirs])) if theirs else None
            our_rate = ours["seed_steps_per_s"]
            rates.append(f"| `{agent}` | {dataset} | {our_rate:,.0f} | "
                         f"{ours['first_segment_s']:.1f} | "
                         + (f"{their_rate:,.1f} | {our_rate / their_rate:.1f}× |" if their_rate
                            else "— | — |"))
            summary[f"{agent}/{dataset}"] = {
                "everlearn": {"normalised": ours_n.tolist(), **s_ours,
                              "seed_steps_per_s": ours["seed_steps_per_s"]},
                "d3rlpy": {"normalised": theirs_n.tolist(), **(s_theirs or {}),
                           "steps_per_s": their_rate},
                "data_normalised": ours["data_normalised"], "dataset_id": ours["dataset_id"]}
    settings = ["## Settings shared by both libraries", ""] + [
        f"- `{agent}`: {SETTINGS[agent]['note']}; everlearn `--set`: "
        f"{', '.join(SETTINGS[agent]['everlearn']) or 'none'}; d3rlpy: "
        f"{SETTINGS[agent]['d3rlpy'] or 'its defaults'}." for agent in AGENTS]
    header = args.header.read_text().rstrip() + "\n\n" if args.header else ""
    out.with_suffix(".md").write_text(header + "\n".join(lines + [""] + rates + [""] + settings) + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"steps": args.steps, "episodes": args.episodes, "machine": platform.platform(), "cells": summary},
        indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="gradient steps per run")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-4"),
                        help="everlearn's seeds (vmapped): 0-4 or 0,1,2")
    parser.add_argument("--d3rlpy-seeds", type=parse_seeds, default=None,
                        help="d3rlpy's seeds (one fit each); default: --seeds")
    parser.add_argument("--agents", type=lambda s: s.split(","), default=list(AGENTS))
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=list(DATASETS))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--out", type=Path, required=True, help="OUT.md, OUT.json, OUT.cells.jsonl")
    parser.add_argument("--header", type=Path)
    args = parser.parse_args()
    args.d3rlpy_seeds = args.d3rlpy_seeds or args.seeds
    for name, allowed, given in (("agent", AGENTS, args.agents), ("dataset", DATASETS, args.datasets)):
        unknown = [g for g in given if g not in allowed]
        if unknown:
            parser.error(f"unknown {name} {unknown[0]!r}; choose from {', '.join(allowed)}")
    if args.steps < 2 or args.steps % 2:
        parser.error(f"--steps {args.steps}: give an even number (two segments of half)")
    if args.torch_threads:
        import torch
        torch.set_num_threads(args.torch_threads)

    log = args.out.with_suffix(".cells.jsonl")
    cells = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    # A cell is reused only if it ran at this budget (and, for everlearn, with these seeds).
    done = {(c["library"], c["agent"], c["dataset"], json.dumps(c["seed"]), c["steps"])
            for c in cells}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            for agent in args.agents:
                if ("everlearn", agent, dataset, json.dumps(args.seeds), args.steps) not in done:
                    print(f"everlearn {agent} on {dataset}, seeds {args.seeds} ...", flush=True)
                    cell = everlearn_cell(agent, dataset, args.seeds, args.steps, args.episodes,
                                          Path(tmp))
                    data = minari_io.load_transitions(cell["dataset_id"])
                    cell.update(library="everlearn", agent=agent, dataset=dataset, seed=args.seeds,
                                steps=args.steps,
                                data_normalised=float(normalised(np.mean(data.episode_returns))))
                    cells.append(cell)
                    with log.open("a") as f:
                        f.write(json.dumps(cell) + "\n")
                    print(f"  normalised {np.round(normalised(cell['returns']), 3).tolist()}, "
                          f"{cell['seed_steps_per_s']:.0f} seed-steps/s", flush=True)
                dataset_id = next(c["dataset_id"] for c in cells if c["library"] == "everlearn"
                                  and c["dataset"] == dataset)
                for seed in args.d3rlpy_seeds:
                    if ("d3rlpy", agent, dataset, json.dumps(seed), args.steps) in done:
                        continue
                    print(f"d3rlpy {agent} on {dataset}, seed {seed} ...", flush=True)
                    cell = d3rlpy_cell(agent, dataset_id, seed, args.steps, args.episodes)
                    cell.update(library="d3rlpy", agent=agent, dataset=dataset, seed=seed,
                                steps=args.steps)
                    cells.append(cell)
                    with log.open("a") as f:
                        f.write(json.dumps(cell) + "\n")
                    print(f"  normalised {normalised(cell['returns'][0]):.3f}, "
                          f"{cell['seed_steps_per_s']:.1f} steps/s", flush=True)
                write_tables(cells, args, args.out)
    print(f"wrote {args.out.with_suffix('.md')}", flush=True)


if __name__ == "__main__":
    main()
