"""Training throughput: everlearn against Stable-Baselines3 on CartPole-v1, side by side.

One invocation measures, on this machine and in this order:

  PPO, SB3's default hyperparameters (n_steps 2048 x 8 envs, batch 64, 10 epochs, lr 3e-4,
  gamma 0.99, GAE 0.95, clip 0.2, [64, 64] tanh):
    - Stable-Baselines3 (torch, 1 thread, 8 envs in a DummyVecEnv);
    - everlearn, Gymnasium path (`GymnasiumTrainer`, envs stepped on the host);
    - everlearn, functional path (`FunctionalTrainer`), 1 seed and 8 vmapped seeds.
  DQN, SB3's default hyperparameters (lr 1e-4, 1M buffer, batch 32, train_freq 4, one gradient
  step, target update every 10k env steps, epsilon 1 -> 0.05 over 10% of the run, [64, 64] relu,
  Huber loss, 1 env), the same four rows.

Rates are env steps per second of training (acting, env stepping and learning together). For
everlearn the first `train_segment` call (tracing + XLA compilation + one segment) is timed
apart from the steady-state calls; "compile" is the first call minus one steady-state call.
The SB3 DQN rate is measured after `learning_starts` (once gradient steps happen); everlearn's
first (timed-apart) DQN segment covers `learning_starts` too.

Run: `make bench` (or `.venv/bin/python benchmarks/throughput.py [--quick]`). Writes a Markdown
table to benchmarks/results/throughput.md (see --out).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from machine import OtherLoad, loadavg, machine_description, nproc, versions, wait_for_quiet_machine

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "throughput.md"

# Targets (ratios); see benchmarks/README.md.
TARGET_GYM_VS_SB3 = 5.0
TARGET_FUNC_VS_SB3 = 15.0
TARGET_SEEDS_VS_ONE = 1.5



# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class Row:
    algo: str
    impl: str
    seeds: int
    steps: int  # env steps measured (all seeds)
    seconds: float  # steady-state seconds for `steps`
    compile_s: float | None = None  # first call minus one steady-state call
    first_call_s: float | None = None
    others: float = 0.0  # cores busy with other processes during the measurement
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    @property
    def rate_per_seed(self) -> float:
        return self.rate / self.seeds


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------
# Stable-Baselines3
# ----------------------------------------------------------------------------------------------
def sb3_ppo(total_steps: int, seed: int) -> Row:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed, vec_env_cls=DummyVecEnv)
    # All of SB3's defaults, spelled out so that the comparison is explicit.
    model = PPO(
        "MlpPolicy", env, n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4,
        gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5,
        max_grad_norm=0.5, policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]),
                                              activation_fn=torch.nn.Tanh),
        device="cpu", seed=seed, verbose=0,
    )
    with OtherLoad() as others:
        t0 = time.perf_counter()
        model.learn(total_timesteps=total_steps)
        seconds = time.perf_counter() - t0
    row = Row("PPO", "Stable-Baselines3 (torch, 1 thread)", 1, model.num_timesteps, seconds,
              others=others.cores)
    env.close()
    return row


def sb3_dqn(total_steps: int, learning_starts: int, seed: int) -> Row:
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    class StartClock(BaseCallback):
        """Notes the time when training starts (after `learning_starts` steps)."""

        def __init__(self):
            super().__init__()
            self.t_start: float | None = None
            self.steps_at_start = 0

        def _on_step(self) -> bool:
            if self.t_start is None and self.num_timesteps >= learning_starts:
                self.t_start, self.steps_at_start = time.perf_counter(), self.num_timesteps
            return True

    torch.set_num_threads(1)
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed, vec_env_cls=DummyVecEnv)
    model = DQN(
        "MlpPolicy", env, learning_rate=1e-4, buffer_size=1_000_000,
        learning_starts=learning_starts, batch_size=32, tau=1.0, gamma=0.99, train_freq=4,
        gradient_steps=1, target_update_interval=10_000, exploration_fraction=0.1,
        exploration_initial_eps=1.0, exploration_final_eps=0.05, max_grad_norm=10,
        policy_kwargs=dict(net_arch=[64, 64], activation_fn=torch.nn.ReLU),
        device="cpu", seed=seed, verbose=0,
    )
    clock = StartClock()
    with OtherLoad() as others:
        model.learn(total_timesteps=total_steps, callback=clock)
        t_end = time.perf_counter()
    assert clock.t_start is not None, "learning_starts must be below the step budget"
    row = Row("DQN", "Stable-Baselines3 (torch, 1 thread)", 1,
              model.num_timesteps - clock.steps_at_start, t_end - clock.t_start,
              others=others.cores)
    env.close()
    return row


# ----------------------------------------------------------------------------------------------
# everlearn
# ----------------------------------------------------------------------------------------------
def ppo_agent():
    from everlearn.agents import EnvSpec, make_agent
    from everlearn.agents.ppo import PPOConfig

    config = PPOConfig(
        num_envs=8, num_steps=2048, num_epochs=10, num_minibatches=(8 * 2048) // 64,
        learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.0,
        vf_coef=0.5, max_grad_norm=0.5, normalize_advantages=True, hidden_sizes=(64, 64),
        activation="tanh",
    )
    return make_agent("ppo", config, EnvSpec(obs_dim=4, num_actions=2))


def dqn_agent(learning_starts: int, exploration_steps: int):
    from everlearn.agents import EnvSpec, make_agent
    from everlearn.agents.dqn import DQNConfig

    config = DQNConfig(
        num_envs=1, train_every=4, gradient_steps=1, buffer_size=1_000_000, batch_size=32,
        learning_starts=learning_starts, learning_rate=1e-4, gamma=0.99,
        target_update_every=10_000 // 4, target_tau=1.0, exploration_steps=exploration_steps,
        epsilon_start=1.0, epsilon_end=0.05, max_grad_norm=10.0, double=False, loss="huber",
        hidden_sizes=(64, 64), activation="relu",
    )
    return make_agent("dqn", config, EnvSpec(obs_dim=4, num_actions=2))


def everlearn_row(algo: str, impl: str, trainer, seeds: list[int], calls: int) -> Row:
    """First `train_segment` call timed apart (compile), then `calls` steady-state calls."""
    import jax

    state = trainer.init(seeds)
    jax.block_until_ready(state)
    steps_per_call = trainer.iterations * trainer.agent.steps_per_update * len(seeds)
    t0 = time.perf_counter()
    state, _ = trainer.train_segment(state, 0)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    times = []
    with OtherLoad() as others:
        for _ in range(calls):
            t0 = time.perf_counter()
            state, _ = trainer.train_segment(state, 0)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - t0)
    seconds = sum(times)
    per_call = seconds / calls
    row = Row(algo, impl, len(seeds), steps_per_call * calls, seconds,
              compile_s=max(first - per_call, 0.0), first_call_s=first, others=others.cores)
    row.notes.append(f"{calls} x {steps_per_call:,} steps, per call "
                     f"min {min(times):.2f}s / max {max(times):.2f}s")
    return row


def everlearn_rows(algo: str, agent, iters_gym: int, iters_func: int, iters_func8: int,
                   calls: int) -> list[Row]:
    from everlearn.runs.functional import FunctionalTrainer
    from everlearn.runs.gymnasium import GymnasiumTrainer
    from everlearn.scenarios import get_scenario

    scenario = get_scenario("cartpole-stationary")
    rows = []
    log(f"everlearn {algo}: Gymnasium path, 1 seed")
    trainer = GymnasiumTrainer(scenario, agent, iters_gym, eval_episodes=10)
    rows.append(everlearn_row(algo, "everlearn Gymnasium path", trainer, [0], calls))
    log(f"  {rows[-1].rate:,.0f} steps/s")
    log(f"everlearn {algo}: functional path, 1 seed")
    trainer = FunctionalTrainer(scenario, agent, iters_func, eval_episodes=10)
    rows.append(everlearn_row(algo, "everlearn functional path", trainer, [0], calls))
    log(f"  {rows[-1].rate:,.0f} steps/s")
    log(f"everlearn {algo}: functional path, 8 vmapped seeds")
    trainer = FunctionalTrainer(scenario, agent, iters_func8, eval_episodes=10)
    rows.append(everlearn_row(algo, "everlearn functional path", trainer, list(range(8)), calls))
    log(f"  {rows[-1].rate:,.0f} steps/s total, {rows[-1].rate_per_seed:,.0f} per seed")
    return rows


# ----------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------
def verdict(value: float, target: float) -> str:
    return f"{value:.2f}x ({'met' if value >= target else 'not met'}, target >= {target:g}x)"


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["algo", "implementation", "seeds", "env steps/s (total)", "per seed",
              "compile s", "vs target", "others' CPU"]
    body = []
    for algo in ["PPO", "DQN"]:
        group = [r for r in rows if r.algo == algo]
        if not group:
            continue
        sb3 = next((r for r in group if r.impl.startswith("Stable")), None)
        one = next((r for r in group if "functional" in r.impl and r.seeds == 1), None)
        for r in group:
            if r.impl.startswith("Stable"):
                target = "baseline (1.00x)"
            elif "Gymnasium" in r.impl:
                target = verdict(r.rate / sb3.rate, TARGET_GYM_VS_SB3) + " vs SB3" if sb3 else "-"
            elif r.seeds == 1:
                target = verdict(r.rate / sb3.rate, TARGET_FUNC_VS_SB3) + " vs SB3" if sb3 else "-"
            else:
                vs_sb3 = f"; {r.rate / sb3.rate:.1f}x SB3" if sb3 else ""
                target = (verdict(r.rate / one.rate, TARGET_SEEDS_VS_ONE) + " vs 1 seed" + vs_sb3
                          if one else "-")
            body.append([
                algo, r.impl, str(r.seeds), f"{r.rate:,.0f}",
                f"{r.rate_per_seed:,.0f}" if r.seeds > 1 else "",
                f"{r.compile_s:.1f}" if r.compile_s is not None else "-",
                target, f"{r.others:.2f}",
            ])
    return header, body


def target_summary(rows: list[Row]) -> list[str]:
    out = []
    for algo in ["PPO", "DQN"]:
        group = {(("gym" if "Gymnasium" in r.impl else "sb3" if r.impl.startswith("Stable")
                   else "func"), r.seeds): r for r in rows if r.algo == algo}
        sb3, gym = group.get(("sb3", 1)), group.get(("gym", 1))
        one, eight = group.get(("func", 1)), group.get(("func", 8))
        checks = []
        if sb3 and gym:
            checks.append(("Gymnasium path", gym.rate / sb3.rate, TARGET_GYM_VS_SB3, "SB3"))
        if sb3 and one:
            checks.append(("functional 1 seed", one.rate / sb3.rate, TARGET_FUNC_VS_SB3, "SB3"))
        if one and eight:
            checks.append(("functional 8 seeds", eight.rate / one.rate, TARGET_SEEDS_VS_ONE,
                           "1 seed"))
        for name, ratio, target, ref in checks:
            out.append(f"{algo} {name} {ratio:.2f}x {ref} (>= {target:g}x: "
                       f"{'met' if ratio >= target else 'NOT met'})")
    return out


def format_text(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def format_markdown(header: list[str], body: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out)


def write_results(path: Path, args, rows: list[Row], loads: dict, wall_s: float) -> None:
    header, body = table(rows)
    v = versions()
    lines = [
        "# Training throughput: everlearn vs Stable-Baselines3 (CartPole-v1)",
        "",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine_description()}",
        f"- Load average (1 min) before start: {loads['before']} (one reading per wait for a "
        f"quiet machine); at the end: "
        f"{loads['end']:.2f} (includes this benchmark's own load); largest CPU use by other "
        f"processes during a row: {max(r.others for r in rows):.2f} cores",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Command: `{' '.join([Path(sys.executable).name, *sys.argv])}` "
        f"({'quick' if args.quick else 'full'} run, {wall_s:.0f} s wall)",
        "",
        format_markdown(header, body),
        "",
        "Targets: " + "; ".join(target_summary(rows)) + ".",
        "",
        "Env steps per second of training (acting, env stepping and learning), steady state. "
        "`compile s` = first `train_segment` call minus one steady-state call (tracing + XLA "
        "compilation); SB3 has none. `others' CPU` = cores kept busy by other processes "
        "during the row's timed part (from /proc/stat, this process's own CPU time "
        f"subtracted; the machine has {nproc()}).",
        "",
        "Settings:",
        "",
        "- PPO: SB3 defaults - 8 envs x 2048 steps per rollout (16,384), 10 epochs of "
        "minibatch 64 (256 minibatches, 2,560 gradient steps per rollout), lr 3e-4, gamma "
        "0.99, GAE lambda 0.95, clip 0.2, ent 0, vf 0.5, max grad norm 0.5, [64, 64] tanh. "
        f"SB3: `learn({args.sb3_ppo_steps})` with 8 CartPole-v1 envs in a DummyVecEnv, "
        "`torch.set_num_threads(1)`. everlearn: `PPOConfig(num_envs=8, num_steps=2048, "
        "num_epochs=10, num_minibatches=256, ...)`, scenario `cartpole-stationary`; "
        f"iterations (rollout + update) per segment: Gymnasium {args.ppo_iters_gym}, "
        f"functional 1 seed {args.ppo_iters_func}, 8 seeds {args.ppo_iters_func8}.",
        "- DQN: SB3 defaults - 1 env, lr 1e-4, buffer 1M, batch 32, train_freq 4, 1 gradient "
        "step, target update every 10,000 env steps (everlearn: 2,500 gradient steps), "
        "exploration over 10% of the SB3 run "
        f"({int(0.1 * args.sb3_dqn_steps):,} steps) to epsilon 0.05, [64, 64] relu, Huber "
        f"loss, max grad norm 10, no double Q; learning_starts {args.dqn_learning_starts:,} "
        "(SB3's default is 100) for both. SB3's rate is measured from `learning_starts` to "
        f"the end of `learn({args.sb3_dqn_steps})`; everlearn's first segment (timed apart) "
        f"covers `learning_starts`. Env steps per segment: Gymnasium {4 * args.dqn_iters_gym:,}, "
        f"functional 1 seed {4 * args.dqn_iters_func:,}, 8 seeds {4 * args.dqn_iters_func8:,} "
        "per seed.",
        f"- everlearn rows: first call + {args.calls} steady-state `train_segment` calls each; "
        "details per row:",
        "",
    ]
    for r in rows:
        if r.notes:
            lines.append(f"  - {r.algo} {r.impl}, {r.seeds} seed(s): {'; '.join(r.notes)}"
                         + (f"; first call {r.first_call_s:.2f}s" if r.first_call_s else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="about a one-minute smoke version (smaller step counts)")
    p.add_argument("--only", choices=["ppo", "dqn"], help="run one algorithm only")
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
    p.add_argument("--max-load", type=float, default=1.0,
                   help="wait while the 1-min load average is above this before starting")
    p.add_argument("--load-waits", type=int, default=2, help="how many times to wait")
    p.add_argument("--load-wait-s", type=float, default=60.0, help="seconds per wait")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown results file")
    p.add_argument("--no-write", action="store_true", help="print only, write no results file")
    args = p.parse_args(argv)

    defaults = dict(  # full run: about 4 minutes on a 2-core machine
        sb3_ppo_steps=4 * 16_384, ppo_iters_gym=2, ppo_iters_func=4, ppo_iters_func8=2,
        sb3_dqn_steps=40_000, dqn_learning_starts=1_000, dqn_iters_gym=2_500,
        dqn_iters_func=25_000, dqn_iters_func8=12_500, calls=5,
    )
    quick = dict(  # about 1 minute
        sb3_ppo_steps=16_384, ppo_iters_gym=1, ppo_iters_func=1, ppo_iters_func8=1,
        sb3_dqn_steps=6_000, dqn_learning_starts=1_000, dqn_iters_gym=500,
        dqn_iters_func=2_500, dqn_iters_func8=2_500, calls=2,
    )
    for name, value in (quick if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    print(f"machine: {machine_description()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    before = wait_for_quiet_machine(args.max_load, args.load_waits, args.load_wait_s)
    loads = {"before": ", ".join(f"{x:.2f}" for x in before)}
    t_start = time.perf_counter()

    rows: list[Row] = []
    if args.only in (None, "ppo"):
        log(f"SB3 PPO: {args.sb3_ppo_steps:,} steps")
        rows.append(sb3_ppo(args.sb3_ppo_steps, args.seed))
        log(f"  {rows[-1].rate:,.0f} steps/s")
        rows += everlearn_rows("PPO", ppo_agent(), args.ppo_iters_gym, args.ppo_iters_func,
                               args.ppo_iters_func8, args.calls)
    if args.only in (None, "dqn"):
        log(f"SB3 DQN: {args.sb3_dqn_steps:,} steps (rate after {args.dqn_learning_starts:,})")
        rows.append(sb3_dqn(args.sb3_dqn_steps, args.dqn_learning_starts, args.seed))
        log(f"  {rows[-1].rate:,.0f} steps/s")
        agent = dqn_agent(args.dqn_learning_starts, int(0.1 * args.sb3_dqn_steps))
        rows += everlearn_rows("DQN", agent, args.dqn_iters_gym, args.dqn_iters_func,
                               args.dqn_iters_func8, args.calls)

    wall = time.perf_counter() - t_start
    loads["end"] = loadavg()[0]
    header, body = table(rows)
    print()
    print(format_text(header, body))
    print("\ntargets:\n  " + "\n  ".join(target_summary(rows)))
    print(f"\nload average (1 min) before: {loads['before']}; end: {loads['end']:.2f}; "
          f"wall {wall:.0f} s")
    if not args.no_write:
        write_results(args.out, args, rows, loads, wall)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
