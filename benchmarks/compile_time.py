"""XLA compile time and results under LLVM's optimisation levels (`XLA_FLAGS`).

Half of `make test`'s time was XLA compiling (summed over the suite: ~890 s of ~1,900 s of
test time on 2026-12-01). `tests/conftest.py` sets `--xla_backend_optimization_level=1` (LLVM
-O1; XLA's default is -O2) and `--xla_cpu_use_fusion_emitters=false` (XLA's previous CPU fusion
emitters). This script is the evidence for that choice: for each flag set, in a fresh
subprocess (XLA reads its flags once per process), it

  1. trains PPO and DQN (CartPole contexts, with EWC) and SAC (Pendulum) for one short segment
     each, 2 seeds, on the functional path, evaluates them, and sums XLA's backend compile
     time (`jax.monitoring`'s `backend_compile_duration` events);
  2. times TD3 on Pendulum, 8 seeds: one 1,500-step segment again after its compile (the
     compiled program's speed);
  3. saves every trained parameter, and compares them with the default flags' run: identical
     means bit for bit.

Run: `.venv/bin/python benchmarks/compile_time.py`. Writes benchmarks/results/compile_time.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import results_header

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "compile_time.md"
FLAG_SETS = {
    "default (LLVM -O2)": "",
    "LLVM -O1": "--xla_backend_optimization_level=1",
    "LLVM -O1, previous fusion emitters (what tests/conftest.py sets)": (
        "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"),
}


def child(params_out: str) -> dict:
    """Runs in the subprocess, under the flags of its environment."""
    import jax
    import numpy as np

    from everlearn.agents import AGENTS, EnvSpec, make_agent
    from everlearn.methods import METHODS, method_builders
    from everlearn.scenarios import get_scenario
    from everlearn.training.functional import FunctionalTrainer

    compile_s = [0.0]

    def listener(event, duration, **kw):
        if event.endswith("backend_compile_duration"):
            compile_s[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    params = {}
    start = time.perf_counter()
    cartpole, pendulum = EnvSpec(4, 2, 4), EnvSpec(3, 1, continuous=True)
    ewc = method_builders(["ewc"], {"ewc": METHODS["ewc"].config()})
    for name, scenario, spec, steps, methods in [
            ("ppo", "cartpole-contexts", cartpole, 2048, ewc),
            ("dqn", "cartpole-contexts", cartpole, 500, ewc),
            ("sac", "pendulum-stationary", pendulum, 500, [])]:
        agent = make_agent(name, AGENTS[name].config(), spec, methods)
        trainer = FunctionalTrainer(get_scenario(scenario), agent,
                                    max(1, steps // agent.steps_per_update), eval_episodes=2)
        state, _ = trainer.train_segment(trainer.init([0, 1]), 0)
        trainer.evaluate(state, [0, 1], 0)
        for i, leaf in enumerate(jax.tree.leaves(state.agent.params)):
            params[f"{name}_{i}"] = np.asarray(leaf)
    compile_wall = time.perf_counter() - start
    compiled = compile_s[0]
    agent = make_agent("td3", AGENTS["td3"].config(hidden_sizes=(64, 64)), pendulum)
    trainer = FunctionalTrainer(get_scenario("pendulum-stationary"), agent, 1500,
                                eval_episodes=2)
    state, _ = trainer.train_segment(trainer.init(list(range(8))), 0)
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, _ = trainer.train_segment(state, 0)
    jax.block_until_ready(state)
    td3_s = time.perf_counter() - start
    for i, leaf in enumerate(jax.tree.leaves(state.agent.params)):
        params[f"td3_{i}"] = np.asarray(leaf)
    np.savez(params_out, **params)
    return {"compile_s": compiled, "part_wall_s": compile_wall, "td3_segment_s": td3_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=2, help="runs per flag set (min taken)")
    args = parser.parse_args()
    import numpy as np

    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, flags in FLAG_SETS.items():
            runs = []
            for repeat in range(args.repeats):
                params_file = f"{tmp}/{len(rows)}.npz"
                done = subprocess.run(
                    [sys.executable, __file__, "--child", params_file],
                    env={**os.environ, "XLA_FLAGS": flags}, capture_output=True, text=True,
                    check=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(label, runs[-1], flush=True)
            params = np.load(params_file)
            rows.append((label, flags, runs, params))
        baseline = rows[0][3]
        table = []
        for label, flags, runs, params in rows:
            gap = max(float(np.abs(baseline[k] - params[k]).max()) for k in baseline)
            best = {k: min(r[k] for r in runs) for k in runs[0]}
            table.append(
                f"| {label} | `{flags or '(none)'}` | {best['compile_s']:.1f} | "
                f"{best['compile_s'] / min(r['compile_s'] for r in rows[0][2]):.2f} | "
                f"{best['td3_segment_s']:.2f} | "
                f"{best['td3_segment_s'] / min(r['td3_segment_s'] for r in rows[0][2]):.2f} | "
                f"{'identical' if gap == 0 else f'differ (max {gap:.1e})'} |")
    lines = results_header("XLA compile time and results by LLVM optimisation level",
                           time.time() - started)
    lines += ["", "Compile: XLA backend compile seconds summed over PPO + EWC and DQN + EWC "
              "(CartPole contexts, 2 seeds, one segment and an evaluation each) and SAC "
              "(Pendulum). TD3 segment: 1,500 steps of 8 seeds on Pendulum after its compile. "
              f"Best of {args.repeats} fresh processes per row. Parameters: every trained "
              "parameter compared with the default flags' run.", "",
              "| flags | XLA_FLAGS | compile s | vs default | TD3 segment s | vs default | "
              "trained parameters |", "|---|---|---|---|---|---|---|", *table, ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2])))
    else:
        main()
