"""Offline agents against d3rlpy (issue 14 part 5a): everlearn's `td3_bc`, `iql` and `cql`
against d3rlpy 2.8.1's TD3PlusBC, IQL and CQL on the standard Pendulum's built-in medium and
expert recipes: the same data, the same gradient-step budget, the same settings (PROFILES lists
them per library), and the same evaluation for both.

    make bench   # installs d3rlpy (and torch 2.13.0, CPU)
    .venv/bin/python benchmarks/offline_vs_d3rlpy.py --seeds 0-4 \
        --out benchmarks/results/offline_vs_d3rlpy [--notes NOTES.md]

Two parts:
- Scores, at the "small" profile: the settings of everlearn's offline learning tests
  (tests/data/test_offline_runs.py), where every agent learns within a few thousand gradient
  steps ([64, 64] or [32, 32] networks, raised learning rates). At the papers' settings IQL and
  CQL need tens of thousands of steps on this data (the tests' docstrings), hours for d3rlpy
  on this CPU. Each (library, agent, dataset) is one run: everlearn trains all seeds at once
  (vmapped), d3rlpy one seed after another with `fit`.
- Gradient steps per second, run first (they need a quiet machine, the scores do not), at both
  profiles, "small" and "paper" (the authors' network sizes and learning rates, as d3rlpy's
  defaults), on the medium data, `--rate-steps` steps: everlearn 1 seed and all seeds vmapped,
  d3rlpy 1 seed. everlearn runs two segments of half the steps: the first holds the
  compilation, the second gives the steady rate; d3rlpy's rate is steps / `fit` time.

Every finished cell is appended to OUT.cells.jsonl, so an interrupted run picks up where it
stopped (a cell is reused only with the same settings, steps, seeds and episodes; delete the
file after changing either library). Evaluation, both libraries: the greedy policy on
Gymnasium's `Pendulum-v1`, episodes reset with seeds 1000.. (`--episodes`, 10), actions × 2
(the motor range); returns normalised with the standard Pendulum's random and reference
returns (−1214, −150, as its scenarios). d3rlpy is given the dataset's rows with terminations
as terminals and truncations as timeouts; it never samples the last row of an episode that
ends by timeout (every Pendulum episode: 250 of the 50,000 rows). Writes OUT.md (its header: date, machine, versions, commit, command;
`--notes FILE` adds a file's text after it) and OUT.json.
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
from everlearn.runs.plan import make_plan
from everlearn.runs.run import make_datasets
from machine import results_header

RANDOM_RETURN, REFERENCE_RETURN = -1214.0, -150.0  # the standard Pendulum's, as its scenarios
MOTOR_RANGE = 2.0
AGENTS = ("td3_bc", "iql", "cql")
DATASETS = ("medium", "expert")

# Per profile and agent: gradient steps (scores), everlearn `--set`s, d3rlpy config arguments
# ("hidden": both encoders' hidden layers) and what the two share. What d3rlpy does not expose
# stays at each library's default; the docstrings of everlearn.agents.* list those.
PROFILES = {
    "small": {
        "td3_bc": {
            "steps": 10_000,
            "everlearn": ["td3_bc.hidden_sizes=[64,64]"],
            "d3rlpy": {"hidden": [64, 64], "observation_scaler": "standard"},
            "note": "[64, 64], otherwise the authors' defaults (Adam 3e-4, α 2.5, policy noise "
                    "0.2 clipped at 0.5, actor every 2nd step, τ 0.005, batch 256, "
                    "observations standardised)",
        },
        "iql": {
            "steps": 5_000,
            "everlearn": ["iql.hidden_sizes=[64,64]", "iql.actor_learning_rate=3e-3",
                          "iql.critic_learning_rate=3e-3", "iql.value_learning_rate=3e-3",
                          "iql.actor_lr_schedule=constant"],
            "d3rlpy": {"hidden": [64, 64], "actor_learning_rate": 3e-3,
                       "critic_learning_rate": 3e-3},  # d3rlpy's value shares the critics' Adam
            "note": "[64, 64], Adam 3e-3 for actor, critics and value (constant), expectile "
                    "0.7, β 3.0, weights clipped at 100, τ 0.005, batch 256",
        },
        "cql": {
            "steps": 3_000,
            "everlearn": ["cql.hidden_sizes=[32,32]", "cql.batch_size=128", "cql.bc_steps=0",
                          "cql.actor_learning_rate=1e-3", "cql.critic_learning_rate=1e-3"],
            "d3rlpy": {"hidden": [32, 32], "batch_size": 128, "actor_learning_rate": 1e-3,
                       "critic_learning_rate": 1e-3, "temp_learning_rate": 1e-3,
                       "alpha_learning_rate": 0.0},
            "note": "[32, 32], batch 128, Adam 1e-3 for actor, α and critics, conservative "
                    "weight 5.0 fixed (d3rlpy: `alpha_learning_rate=0`, so its α' stays 1), 10 "
                    "sampled actions of each kind, no BC warm-up; d3rlpy's target action is "
                    "the policy's mean, everlearn's a sample",
        },
    },
    "paper": {
        "td3_bc": {
            "everlearn": [],
            "d3rlpy": {"observation_scaler": "standard"},
            "note": "both libraries' defaults, the authors': [256, 256], Adam 3e-4",
        },
        "iql": {
            "everlearn": ["iql.actor_lr_schedule=constant"],
            "d3rlpy": {},
            "note": "both libraries' defaults, the authors': [256, 256], Adam 3e-4 (constant)",
        },
        "cql": {
            "everlearn": ["cql.bc_steps=0", "cql.hidden_sizes=[256,256]"],
            "d3rlpy": {"alpha_learning_rate": 0.0},
            "note": "d3rlpy's [256, 256] (the authors' have three layers), actor and α 1e-4, "
                    "critics 3e-4, batch 256, weight 5.0 fixed, no BC warm-up",
        },
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
    path = directory / f"pendulum-{dataset}-{steps}.yaml"
    path.write_text(f"name: pendulum-{dataset}\nsteps_per_task: {steps}\ntasks:\n"
                    f"  - {{name: standard, env: Pendulum-v1, dataset: {dataset}, "
                    f"random_score: {RANDOM_RETURN}, reference_score: {REFERENCE_RETURN}}}\n")
    return path


def everlearn_cell(profile: str, agent_name: str, dataset: str, seeds: list[int], steps: int,
                   episodes: int, directory: Path) -> dict:
    """Train `seeds` vmapped for `steps` gradient steps in two segments; their returns (or
    none with `episodes` 0) and rates."""
    config = build_config(None, {"scenario": str(scenario_file(directory, dataset, steps)),
                                 "agent": agent_name, "seeds": seeds},
                          ["evals_per_task=2", "diagnostics=false",
                           *PROFILES[profile][agent_name]["everlearn"]])
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
    for index in range(len(seeds) if episodes else 0):
        one = jax.tree.map(lambda x: x[index], state.agent)
        returns.append(evaluate(lambda obs: greedy(one, obs[None].astype(np.float32))[0], episodes))
    dataset_id = recipes.recipe_id(plan.scenario.tasks[0], dataset)
    data = minari_io.load_transitions(dataset_id)
    return {"returns": returns, "first_segment_s": first,
            "seed_steps_per_s": (steps // 2) * len(seeds) / second, "dataset_id": dataset_id,
            "data_normalised": float(normalised(np.mean(data.episode_returns)))}


def d3rlpy_cell(profile: str, agent_name: str, dataset_id: str, seed: int, steps: int,
                episodes: int) -> dict:
    import d3rlpy

    data = minari_io.load_transitions(dataset_id)
    mdp = d3rlpy.dataset.MDPDataset(
        data.obs.astype(np.float32), data.action.astype(np.float32),
        data.reward.astype(np.float32), data.terminated.astype(np.float32),
        timeouts=data.truncated.astype(np.float32))
    kwargs = dict(PROFILES[profile][agent_name]["d3rlpy"])
    if kwargs.pop("observation_scaler", None) == "standard":
        kwargs["observation_scaler"] = d3rlpy.preprocessing.StandardObservationScaler()
    hidden = kwargs.pop("hidden", None)
    if hidden is not None:
        encoder = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=hidden)
        kwargs.update(actor_encoder_factory=encoder, critic_encoder_factory=encoder)
        if agent_name == "iql":
            kwargs["value_encoder_factory"] = encoder
    config = {"td3_bc": d3rlpy.algos.TD3PlusBCConfig, "iql": d3rlpy.algos.IQLConfig,
              "cql": d3rlpy.algos.CQLConfig}[agent_name](**kwargs)
    d3rlpy.seed(seed)
    algo = config.create(device="cpu:0")
    algo.build_with_dataset(mdp)
    started = time.perf_counter()
    algo.fit(mdp, n_steps=steps, n_steps_per_epoch=steps, show_progress=False,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10**9)
    fit_s = time.perf_counter() - started
    returns = ([evaluate(lambda obs: algo.predict(obs[None].astype(np.float32))[0], episodes)]
               if episodes else [])
    return {"returns": returns, "fit_s": fit_s, "seed_steps_per_s": steps / fit_s}


def score_steps(args, agent: str) -> int:
    return args.steps or PROFILES["small"][agent]["steps"]


def fmt(values) -> str:
    if len(values) == 0:
        return "—"
    s = interquartile_mean_ci(np.asarray(values, dtype=np.float64))
    return f"{s['iqm']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def write_tables(cells: list[dict], args, out: Path) -> None:
    """Tables of the cells in the log that match this invocation's settings."""
    def current(cell: dict) -> bool:  # run with today's settings of its profile
        p = PROFILES.get(cell.get("profile"), {}).get(cell["agent"])
        return (p is not None and cell.get("episodes") == (args.episodes if cell["part"] ==
                                                             "scores" else 0)
                and cell["settings"] == json.loads(json.dumps([p["everlearn"], p["d3rlpy"]])))

    cells = [c for c in cells if current(c)]
    scores = {(c["agent"], c["dataset"]): c for c in cells if c["part"] == "scores"
              and c["library"] == "everlearn" and c["seeds"] == args.seeds
              and c["steps"] == score_steps(args, c["agent"])}
    lines = ["## Normalised return", "",
             "Interquartile mean over seeds with a 95% stratified-bootstrap CI (as `everlearn "
             "compare`); 0 is a random policy's return, 1 the reference return. Small profile "
             "(below).", "",
             "| agent | steps | dataset | data average | everlearn | d3rlpy | everlearn seeds | "
             "d3rlpy seeds |", "|:--|--:|:--|--:|--:|--:|--:|--:|"]
    summary: dict = {"scores": {}, "rates": {}}
    for agent in AGENTS:
        for dataset in DATASETS:
            ours = scores.get((agent, dataset))
            theirs = [c for c in cells if c["part"] == "scores" and c["library"] == "d3rlpy"
                      and (c["agent"], c["dataset"]) == (agent, dataset)
                      and c["seeds"][0] in args.d3rlpy_seeds
                      and c["steps"] == score_steps(args, agent)]
            theirs = list({c["seeds"][0]: c for c in theirs}.values())  # the latest per seed
            if ours is None:
                continue
            ours_n = normalised(ours["returns"])
            theirs_n = normalised([c["returns"][0] for c in theirs])
            lines.append(f"| `{agent}` | {ours['steps']:,} | {dataset} | "
                         f"{ours['data_normalised']:.3f} | {fmt(ours_n)} | {fmt(theirs_n)} | "
                         f"{len(ours_n)} | {len(theirs_n)} |")
            summary["scores"][f"{agent}/{dataset}"] = {
                "steps": ours["steps"], "dataset_id": ours["dataset_id"],
                "data_normalised": ours["data_normalised"],
                "everlearn": ours_n.tolist(), "d3rlpy": theirs_n.tolist()}
    rates = ["## Gradient steps per second", "",
             f"Medium data, {args.rate_steps:,} gradient steps, measured before the scores. "
             "everlearn: the second of two segments (compiled); its first segment, "
             "compilation included, in the last column. d3rlpy: steps / `fit` time.", "",
             "| profile | agent | d3rlpy, 1 seed | everlearn, 1 seed | ratio | everlearn, "
             f"{len(args.seeds)} seeds vmapped (seed-steps/s) | ratio | everlearn first "
             "segment, 1 seed (s) |", "|:--|:--|--:|--:|--:|--:|--:|--:|"]
    for profile in ("paper", "small"):
        for agent in AGENTS:
            found = {(c["library"], len(c["seeds"])): c for c in cells
                     if c["part"] == "rates" and c["profile"] == profile
                     and c["agent"] == agent and c["steps"] == args.rate_steps}
            theirs, one, many = (found.get(("d3rlpy", 1)), found.get(("everlearn", 1)),
                                 found.get(("everlearn", len(args.seeds))))
            if not (theirs and one and many):
                continue
            base = theirs["seed_steps_per_s"]
            rates.append(f"| {profile} | `{agent}` | {base:,.1f} | "
                         f"{one['seed_steps_per_s']:,.0f} | {one['seed_steps_per_s'] / base:.1f}× | "
                         f"{many['seed_steps_per_s']:,.0f} | {many['seed_steps_per_s'] / base:.1f}× | "
                         f"{one['first_segment_s']:.1f} |")
            summary["rates"][f"{profile}/{agent}"] = {
                "d3rlpy": base, "everlearn_1_seed": one["seed_steps_per_s"],
                "everlearn_vmapped": many["seed_steps_per_s"]}
    settings = ["## Settings shared by both libraries", ""]
    for profile in ("small", "paper"):
        for agent in AGENTS:
            p = PROFILES[profile][agent]
            settings.append(f"- {profile}, `{agent}`: {p['note']}. everlearn `--set`: "
                            f"{', '.join(p['everlearn']) or 'none'}; d3rlpy: "
                            f"{p['d3rlpy'] or 'its defaults'}.")
    header = results_header("Offline agents: everlearn against d3rlpy 2.8.1 (issue 14 part 5a)",
                            None)
    notes = [args.notes.read_text().rstrip()] if args.notes else []
    out.with_suffix(".md").write_text("\n".join(
        header + [""] + notes + [""] + lines + [""] + rates + [""] + settings) + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"seeds": args.seeds, "d3rlpy_seeds": args.d3rlpy_seeds, "episodes": args.episodes,
         "rate_steps": args.rate_steps, "machine": platform.platform(), **summary},
        indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-4"),
                        help="everlearn's seeds (vmapped): 0-4 or 0,1,2")
    parser.add_argument("--d3rlpy-seeds", type=parse_seeds, default=None,
                        help="d3rlpy's seeds (one fit each); default: --seeds")
    parser.add_argument("--agents", type=lambda s: s.split(","), default=list(AGENTS))
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=list(DATASETS))
    parser.add_argument("--steps", type=int, default=None,
                        help="gradient steps of every score run (default: each agent's, PROFILES)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--rate-steps", type=int, default=1000,
                        help="gradient steps of the rate runs (0: no rate runs)")
    parser.add_argument("--out", type=Path, required=True, help="OUT.md, OUT.json, OUT.cells.jsonl")
    parser.add_argument("--notes", type=Path, help="a file of notes for OUT.md, after its header")
    args = parser.parse_args()
    args.d3rlpy_seeds = args.d3rlpy_seeds or args.seeds
    for name, allowed, given in (("agent", AGENTS, args.agents), ("dataset", DATASETS, args.datasets)):
        unknown = [g for g in given if g not in allowed]
        if unknown:
            parser.error(f"unknown {name} {unknown[0]!r}; choose from {', '.join(allowed)}")
    if args.steps is not None and (args.steps < 2 or args.steps % 2):
        parser.error(f"--steps {args.steps}: give an even number (two segments of half)")
    if args.rate_steps < 0 or args.rate_steps % 2:
        parser.error(f"--rate-steps {args.rate_steps}: give an even number (two segments of half)")

    log = args.out.with_suffix(".cells.jsonl")
    cells = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def run_cell(part: str, profile: str, library: str, agent: str, dataset: str,
                 seeds: list[int], steps: int, make) -> dict:
        settings = PROFILES[profile][agent]
        key = dict(part=part, profile=profile, library=library, agent=agent, dataset=dataset,
                   seeds=seeds, steps=steps, episodes=args.episodes if part == "scores" else 0,
                   settings=[settings["everlearn"], settings["d3rlpy"]])
        for cell in cells:
            if all(cell.get(k) == json.loads(json.dumps(v)) for k, v in key.items()):
                return cell
        print(f"{part}, {profile} profile: {library} {agent} on {dataset}, seeds {seeds}, "
              f"{steps} steps ...",
              flush=True)
        cell = {**make(), **key}
        cells.append(cell)
        with log.open("a") as f:
            f.write(json.dumps(cell) + "\n")
        print(f"  normalised {np.round(normalised(cell['returns']), 3).tolist()}, "
              f"{cell['seed_steps_per_s']:.1f} seed-steps/s", flush=True)
        return cell

    with tempfile.TemporaryDirectory() as tmp:
        # Rates first: they need a quiet machine, the scores do not.
        if args.rate_steps:
            for profile in ("paper", "small"):
                for agent in args.agents:
                    for seeds in ([args.seeds[0]], args.seeds):
                        cell = run_cell("rates", profile, "everlearn", agent, "medium", seeds,
                                        args.rate_steps, lambda: everlearn_cell(
                                            profile, agent, "medium", seeds, args.rate_steps, 0,
                                            Path(tmp)))
                    run_cell("rates", profile, "d3rlpy", agent, "medium", [args.seeds[0]],
                             args.rate_steps, lambda: d3rlpy_cell(
                                 profile, agent, cell["dataset_id"], args.seeds[0],
                                 args.rate_steps, 0))
                    write_tables(cells, args, args.out)
        for dataset in args.datasets:
            for agent in args.agents:
                steps = score_steps(args, agent)
                ours = run_cell("scores", "small", "everlearn", agent, dataset, args.seeds, steps,
                                lambda: everlearn_cell("small", agent, dataset, args.seeds, steps,
                                                       args.episodes, Path(tmp)))
                for seed in args.d3rlpy_seeds:
                    run_cell("scores", "small", "d3rlpy", agent, dataset, [seed], steps,
                             lambda: d3rlpy_cell("small", agent, ours["dataset_id"], seed,
                                                 steps, args.episodes))
                write_tables(cells, args, args.out)
    print(f"wrote {args.out.with_suffix('.md')}", flush=True)


if __name__ == "__main__":
    main()
