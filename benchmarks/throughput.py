"""Training throughput: everlearn against Stable-Baselines3, side by side.

One invocation measures, on this machine and in this order:

  PPO on CartPole-v1, SB3's default hyperparameters (n_steps 2048 x 8 envs, batch 64, 10
  epochs, lr 3e-4, gamma 0.99, GAE 0.95, clip 0.2, [64, 64] tanh):
    - Stable-Baselines3 (torch, 1 thread, 8 envs in a DummyVecEnv);
    - everlearn, Gymnasium path (`GymnasiumTrainer`, envs stepped on the host);
    - everlearn, functional path (`FunctionalTrainer`), 1 seed and 8 vmapped seeds.
  DQN on CartPole-v1, SB3's default hyperparameters (lr 1e-4, 1M buffer, batch 32, train_freq
  4, one gradient step, target update every 10k env steps, epsilon 1 -> 0.05 over 10% of the
  run, [64, 64] relu, Huber loss, 1 env), the same four rows.
  The raw env step rate: Gymnasium Pendulum-v1 (and Hopper-v5, for information) stepped with
  random actions in a plain loop, and Pendulum-v1 through everlearn's wrappers.
  SAC on Pendulum-v1, SB3's default hyperparameters (lr 3e-4, 1M buffer, batch 256, tau 0.005,
  gamma 0.99, train_freq 1, 1 gradient step, automatic entropy coefficient, [256, 256] relu;
  learning_starts 1,000 for both sides), 1 env, for one step budget:
    - Stable-Baselines3 (torch, 1 thread) and its final return;
    - everlearn, Gymnasium path, with the same settings, and with a fast configuration
      (`SAC_FAST`); each a fresh agent trained for the same budget, then its final return;
      and where the time goes per env step (act, env step, update, rest) in one more segment;
    - everlearn, functional path on `pendulum-contexts` (task 0), 1 seed and 8 vmapped seeds,
      with both configurations.
  TD3 on Pendulum-v1, SB3's defaults (lr 1e-3, batch 256, tau 0.005, policy_delay 2, target
  noise 0.2 clipped at 0.5, [400, 300] relu, train_freq 1, 1 gradient step) with Gaussian
  exploration noise 0.1 and learning_starts 1,000 on both sides, the same rows.

Rates are env steps per second of training (acting, env stepping and learning together). For
everlearn the first `train_segment` call (tracing + XLA compilation + one segment) is timed
apart from the steady-state calls; "compile" is the first call minus one steady-state call.
The SB3 DQN, SAC and TD3 rates are measured after `learning_starts` (once gradient steps
happen); everlearn's first (timed-apart) segment covers `learning_starts` too. Final returns
are the mean over 10 episodes of the deterministic policy at the end of the budget.

Run: `make bench` (or `.venv/bin/python benchmarks/throughput.py [--quick] [--only sac,td3]`).
Writes Markdown tables to benchmarks/results/throughput.md (see --out).

Split by job: this file is the entry point (the options and the order of the runs);
throughput_harness.py is what is timed and how (and the settings and result records),
load_monitor.py waits while other processes keep the machine busy, profiler.py breaks a
Gymnasium-path segment down by part, throughput_tables.py prints the tables and writes the
results file. Names other scripts import from here (`from throughput import log, ...`) are
re-exported below.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from load_monitor import QUIET, log, wait_for_others
from machine import loadavg, machine_description, versions, wait_for_quiet_machine
from throughput_harness import (
    LEARNING_STARTS,
    OFFPOLICY,
    PENDULUM,
    EnvRate,
    Row,
    dqn_agent,
    everlearn_env_rate,
    everlearn_rows,
    offpolicy_rows,
    ppo_agent,
    raw_env_rate,
    sb3_dqn,
    sb3_ppo,
)
from throughput_tables import (
    breakdown_table,
    format_text,
    offpolicy_table,
    offpolicy_targets,
    table,
    target_summary,
    write_results,
)

# Re-exported for other scripts and documented one-liners (`import throughput as t;
# t.everlearn_offpolicy_gym('TD3', 'fast', t.TD3_FAST, ...)`), as before the split.
from profiler import gym_breakdown
from throughput_harness import (
    EVAL_EPISODES,
    SAC_FAST,
    SAC_SB3,
    TD3_FAST,
    TD3_SB3,
    describe,
    everlearn_offpolicy_func,
    everlearn_offpolicy_gym,
    everlearn_row,
    offpolicy_agent,
    sb3_greedy_return,
    sb3_offpolicy,
    start_clock,
    step_randomly,
)
from throughput_tables import (
    RETURN_TOLERANCE,
    TARGET_FUNC_VS_SB3,
    TARGET_GYM_VS_SB3,
    TARGET_SAC_VS_SB3,
    TARGET_SEEDS_VS_ONE,
    fast_verdict,
    format_markdown,
    return_check,
    sb3_row,
    verdict,
)

__all__ = [
    "main", "log", "wait_for_others", "Row", "EnvRate", "gym_breakdown", "EVAL_EPISODES",
    "LEARNING_STARTS", "PENDULUM", "OFFPOLICY", "SAC_FAST", "SAC_SB3", "TD3_FAST", "TD3_SB3",
    "describe", "dqn_agent", "ppo_agent", "sb3_ppo", "sb3_dqn", "everlearn_row",
    "everlearn_rows", "raw_env_rate", "everlearn_env_rate", "step_randomly", "start_clock",
    "sb3_offpolicy", "sb3_greedy_return", "offpolicy_agent", "everlearn_offpolicy_gym",
    "everlearn_offpolicy_func", "offpolicy_rows", "RETURN_TOLERANCE", "TARGET_FUNC_VS_SB3",
    "TARGET_GYM_VS_SB3", "TARGET_SAC_VS_SB3", "TARGET_SEEDS_VS_ONE", "verdict", "table",
    "target_summary", "sb3_row", "offpolicy_table", "return_check", "fast_verdict",
    "offpolicy_targets", "breakdown_table", "format_text", "format_markdown", "write_results",
]

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "throughput.md"

ALGOS = ("ppo", "dqn", "sac", "td3")


def algo_list(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALGOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown algorithm(s) {unknown}; choose from "
                                         + ", ".join(ALGOS))
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="about a one-minute smoke version (smaller step counts)")
    p.add_argument("--only", type=algo_list, default=list(ALGOS),
                   help="comma-separated algorithms to run (default: all): "
                   + ", ".join(ALGOS))
    p.add_argument("--sb3-ppo-steps", type=int, help="SB3 PPO learn() steps (default 49152)")
    p.add_argument("--ppo-iters-gym", type=int,
                   help="everlearn PPO Gymnasium path: rollouts of 16,384 steps per segment")
    p.add_argument("--ppo-iters-func", type=int,
                   help="everlearn PPO functional path, 1 seed: rollouts per segment")
    p.add_argument("--ppo-iters-func8", type=int,
                   help="everlearn PPO functional path, 8 seeds: rollouts per segment per seed")
    p.add_argument("--sb3-dqn-steps", type=int, help="SB3 DQN learn() steps (default 30000)")
    p.add_argument("--dqn-learning-starts", type=int, help="learning_starts for both DQNs")
    p.add_argument("--dqn-iters-gym", type=int,
                   help="everlearn DQN Gymnasium path: iterations (4 env steps) per segment")
    p.add_argument("--dqn-iters-func", type=int,
                   help="everlearn DQN functional path, 1 seed: iterations (4 env steps) per "
                   "segment")
    p.add_argument("--dqn-iters-func8", type=int,
                   help="everlearn DQN functional path, 8 seeds: iterations per segment per seed")
    p.add_argument("--calls", type=int, help="steady-state train_segment calls per row")
    p.add_argument("--offpolicy-budget", type=int,
                   help="SAC/TD3: env steps of training before the final return (default "
                   "15000; a multiple of 1,000)")
    p.add_argument("--env-steps", type=int, help="steps of each raw env rate measurement")
    p.add_argument("--sac-func-settings", type=lambda s: s.split(","),
                   help="SAC functional-path rows: SB3,fast (default both; --quick: fast)")
    p.add_argument("--td3-func-settings", type=lambda s: s.split(","),
                   help="TD3 functional-path rows: SB3,fast (default fast)")
    p.add_argument("--sb3-fast", type=lambda s: s.upper().split(","),
                   help="also run SB3 with everlearn's fast settings, for these algorithms "
                   "(default SAC; --quick: none)")
    p.add_argument("--func-calls-sb3", type=int,
                   help="SAC/TD3 functional path, SB3 settings: steady-state calls of 1,000 "
                   "env steps per seed")
    p.add_argument("--func-calls-fast", type=int,
                   help="SAC/TD3 functional path, fast settings: steady-state calls")
    p.add_argument("--max-load", type=float, default=1.0,
                   help="wait while the 1-min load average is above this before starting")
    p.add_argument("--load-waits", type=int, default=2, help="how many times to wait")
    p.add_argument("--max-others", type=float, default=0.3,
                   help="before each row, wait while other processes keep more than this many "
                   "cores busy")
    p.add_argument("--others-waits", type=int, default=20,
                   help="how many times (30 s each) to wait before a row")
    p.add_argument("--load-wait-s", type=float, default=60.0, help="seconds per wait")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown results file")
    p.add_argument("--no-write", action="store_true", help="print only, write no results file")
    args = p.parse_args(argv)

    defaults = dict(  # full run: about 19 minutes on a 2-core machine (results/throughput.md)
        sb3_ppo_steps=4 * 16_384, ppo_iters_gym=2, ppo_iters_func=4, ppo_iters_func8=2,
        sb3_dqn_steps=40_000, dqn_learning_starts=1_000, dqn_iters_gym=2_500,
        dqn_iters_func=25_000, dqn_iters_func8=12_500, calls=5,
        offpolicy_budget=15_000, env_steps=20_000, sac_func_settings=["SB3", "fast"],
        td3_func_settings=["SB3", "fast"], sb3_fast=[], func_calls_sb3=2, func_calls_fast=5,
    )
    quick = dict(  # about 2 minutes
        sb3_ppo_steps=16_384, ppo_iters_gym=1, ppo_iters_func=1, ppo_iters_func8=1,
        sb3_dqn_steps=6_000, dqn_learning_starts=1_000, dqn_iters_gym=500,
        dqn_iters_func=2_500, dqn_iters_func8=2_500, calls=2,
        offpolicy_budget=2_000, env_steps=5_000, sac_func_settings=["fast"],
        td3_func_settings=["fast"], sb3_fast=[], func_calls_sb3=1, func_calls_fast=1,
    )
    for name, value in (quick if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    QUIET.update(max_cores=args.max_others, waits=args.others_waits)
    print(f"machine: {machine_description()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    before = wait_for_quiet_machine(args.max_load, args.load_waits, args.load_wait_s)
    loads = {"before": ", ".join(f"{x:.2f}" for x in before)}
    t_start = time.perf_counter()

    rows: list[Row] = []
    env_rates: list[EnvRate] = []
    if "ppo" in args.only:
        log(f"SB3 PPO: {args.sb3_ppo_steps:,} steps")
        rows.append(sb3_ppo(args.sb3_ppo_steps, args.seed))
        log(f"  {rows[-1].rate:,.0f} steps/s")
        rows += everlearn_rows("PPO", ppo_agent(), args.ppo_iters_gym, args.ppo_iters_func,
                               args.ppo_iters_func8, args.calls)
    if "dqn" in args.only:
        log(f"SB3 DQN: {args.sb3_dqn_steps:,} steps (rate after {args.dqn_learning_starts:,})")
        rows.append(sb3_dqn(args.sb3_dqn_steps, args.dqn_learning_starts, args.seed))
        log(f"  {rows[-1].rate:,.0f} steps/s")
        agent = dqn_agent(args.dqn_learning_starts, int(0.1 * args.sb3_dqn_steps))
        rows += everlearn_rows("DQN", agent, args.dqn_iters_gym, args.dqn_iters_func,
                               args.dqn_iters_func8, args.calls)
    if "sac" in args.only or "td3" in args.only:
        assert args.offpolicy_budget % LEARNING_STARTS == 0, "budget: a multiple of 1,000"
        wait_for_others()
        env_rates = [raw_env_rate(PENDULUM, args.env_steps, args.seed),
                     everlearn_env_rate("pendulum-stationary", args.env_steps, args.seed),
                     raw_env_rate("Hopper-v5", args.env_steps // 4, args.seed)]
        for e in env_rates:
            log(f"raw env rate: {e.name}: {e.rate:,.0f} steps/s ({1e6 / e.rate:.1f} µs/step)")
    for algo in ("SAC", "TD3"):
        if algo.lower() in args.only:
            rows += offpolicy_rows(algo, args)

    wall = time.perf_counter() - t_start
    loads["end"] = loadavg()[0]
    print()
    discrete = [r for r in rows if r.algo in ("PPO", "DQN")]
    continuous = [r for r in rows if r.algo in OFFPOLICY]
    if discrete:
        print(format_text(*table(discrete)))
        print("\ntargets:\n  " + "\n  ".join(target_summary(discrete)))
    if continuous:
        raw = env_rates[0] if env_rates else None
        print()
        print(format_text(*offpolicy_table(continuous, raw)))
        print("\ntargets:\n  " + "\n  ".join(offpolicy_targets(continuous)))
        print("\nper env step (Gymnasium path):")
        print(format_text(*breakdown_table(continuous)))
    print(f"\nload average (1 min) before: {loads['before']}; end: {loads['end']:.2f}; "
          f"wall {wall:.0f} s")
    if not args.no_write:
        write_results(args.out, args, rows, env_rates, loads, wall)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
