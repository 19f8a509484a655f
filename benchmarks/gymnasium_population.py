"""Seeds together on the Gymnasium path (issue 11 part 7): total env steps per second of a
population of 1, 2 and 4 seeds, side by side in one process, on two workloads:

- `cw-sac`: Continual World's SAC (`--preset continual-world`: [256] × 4 with layer norm,
  batch 128, 50 gradient steps every 50 env steps) on `cw10`'s first task, Meta-World's
  hammer, learning from the start of the measured segments (`random_steps` 0,
  `learning_starts` 1,000, passed in the warm-up segment);
- `cartpole-dqn`: DQN on CartPole-v1 with one gradient step per env step ([64, 64]), where
  the per-step `act` call dominates.

Baseline: 1 seed. Before this change the Gymnasium path ran its seeds one after another, so
N seeds took N times one seed's time: a total throughput of 1.0× one seed's. Target: 4 seeds
≥ 2× the total throughput of one seed on a 2-core machine.

    python benchmarks/gymnasium_population.py [--segments 2] [--out benchmarks/results/gymnasium_population.md]

Each population: one warm-up segment (compilation, learning starts), then `--segments` timed
segments of `STEPS` env steps per seed.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import jax

from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from machine import results_header, wait_for_quiet_machine

STEPS = 2_000  # env steps per seed per segment
WORKLOADS = {
    "cw-sac": dict(scenario="cw10", agent="sac", preset="continual-world",
                   sets=["sac.random_steps=0", "sac.learning_starts=1000"]),
    "cartpole-dqn": dict(scenario="cartpole-stationary", agent="dqn", preset=None,
                         sets=["dqn.train_every=1", "dqn.gradient_steps=1",
                               "dqn.hidden_sizes=[64,64]", "dqn.learning_starts=1000"]),
}
POPULATIONS = (1, 2, 4)


def measure(workload: dict, seeds: int, segments: int, steps: int = STEPS,
            backend: str = "gymnasium") -> tuple[float, float]:
    """Total env steps per second (all seeds) over `segments` segments of `steps` env steps
    per seed after a warm-up, and the cores busy meanwhile (this process's CPU time over the
    wall time). benchmarks/field_throughput.py measures its everlearn rows with it too."""
    config = build_config(None, {"scenario": workload["scenario"], "agent": workload["agent"],
                                 "seeds": list(range(seeds)), "backend": backend},
                          [*workload["sets"], f"steps_per_task={steps * 50}",
                           "evals_per_task=50", "diagnostics=false"],
                          workload["preset"])
    trainer = make_plan(config).trainer
    state = trainer.init(config.seeds)
    state, _ = trainer.train_segment(state, 0)  # compile; learning starts
    jax.block_until_ready(state)
    start, cpu = time.perf_counter(), _cpu_seconds()
    for _ in range(segments):
        state, _ = trainer.train_segment(state, 0)
    jax.block_until_ready(state)
    wall = time.perf_counter() - start
    return steps * seeds * segments / wall, (_cpu_seconds() - cpu) / wall


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    wait_for_quiet_machine(max_load=0.5, waits=10, wait_s=30)
    rows = []
    for name, workload in WORKLOADS.items():
        base = None
        for seeds in POPULATIONS:
            rate, cores = measure(workload, seeds, args.segments)
            base = base or rate
            line = (f"| {name} | {seeds} | {rate:,.0f} | {rate / seeds:,.0f} | "
                    f"{rate / base:.2f}x | {cores:.2f} |")
            print(line, flush=True)
            rows.append(line)
    verdict = next(r.split("|")[5].strip() for r in rows if r.startswith("| cw-sac | 4 "))
    lines = [*results_header("Seeds together on the Gymnasium path (issue 11 part 7)",
                             time.perf_counter() - started),
             f"- Each population: a warm-up segment (compilation; learning starts), then "
             f"{args.segments} timed segments of {STEPS:,} env steps per seed. Baseline: 1 "
             "seed; before this change the seeds ran one after another (1.0x).", "",
             "| workload | seeds | env steps/s (all seeds) | per seed | vs 1 seed | cores busy |",
             "|:--|--:|--:|--:|--:|--:|", *rows, "",
             "Cores busy: the process's CPU time over the wall time of the timed segments "
             "(2 at most here).", "",
             f"Target: 4 seeds of cw-sac >= 2x one seed's total throughput: {verdict}.", ""]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
