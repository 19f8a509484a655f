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
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from machine import (
    COMMIT_AT_START,
    OtherLoad,
    loadavg,
    machine_description,
    nproc,
    versions,
    wait_for_quiet_machine,
)

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "throughput.md"

# Targets (ratios); see benchmarks/README.md.
TARGET_GYM_VS_SB3 = 5.0
TARGET_FUNC_VS_SB3 = 15.0
TARGET_SEEDS_VS_ONE = 1.5
TARGET_SAC_VS_SB3 = 10.0  # SAC, Gymnasium path, with a final return at least SB3's
# "At least SB3's return" allows this fraction of |SB3's return|: converged Pendulum policies
# differ by a point or two on the same ten episodes, in either direction.
RETURN_TOLERANCE = 0.05
ALGOS = ("ppo", "dqn", "sac", "td3")

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
    settings: str = ""  # SAC/TD3: "SB3" or "fast"
    final_return: float | None = None  # SAC/TD3: mean of 10 greedy episodes after the budget
    breakdown: dict[str, float] | None = None  # Gymnasium path: seconds per env step by part

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    @property
    def rate_per_seed(self) -> float:
        return self.rate / self.seeds


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# Before each row: wait (at most `waits` times) while other processes keep more than
# `max_cores` busy (sampled over one second with `OtherLoad`; this process is idle then, so the
# reading is theirs alone). Set from the command line in `main`.
QUIET = {"max_cores": 0.3, "wait_s": 30.0, "waits": 20}


def wait_for_others() -> None:
    for attempt in range(QUIET["waits"] + 1):
        with OtherLoad() as others:
            time.sleep(1.0)
        if others.cores <= QUIET["max_cores"]:
            return
        if attempt == QUIET["waits"]:
            log(f"[load] other processes use {others.cores:.2f} cores: measuring anyway")
            return
        log(f"[load] other processes use {others.cores:.2f} cores > {QUIET['max_cores']}: "
            f"waiting {QUIET['wait_s']:.0f}s ({attempt + 1}/{QUIET['waits']})")
        time.sleep(QUIET["wait_s"])


# ----------------------------------------------------------------------------------------------
# Stable-Baselines3
# ----------------------------------------------------------------------------------------------
def sb3_ppo(total_steps: int, seed: int) -> Row:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    wait_for_others()
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


def start_clock(learning_starts: int):
    """An SB3 callback that notes the time when training starts (after `learning_starts`)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class StartClock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.t_start: float | None = None
            self.steps_at_start = 0

        def _on_step(self) -> bool:
            if self.t_start is None and self.num_timesteps >= learning_starts:
                self.t_start, self.steps_at_start = time.perf_counter(), self.num_timesteps
                self.cpu_start = time.process_time()
            return True

    return StartClock()


def sb3_dqn(total_steps: int, learning_starts: int, seed: int) -> Row:
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    wait_for_others()
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed, vec_env_cls=DummyVecEnv)
    model = DQN(
        "MlpPolicy", env, learning_rate=1e-4, buffer_size=1_000_000,
        learning_starts=learning_starts, batch_size=32, tau=1.0, gamma=0.99, train_freq=4,
        gradient_steps=1, target_update_interval=10_000, exploration_fraction=0.1,
        exploration_initial_eps=1.0, exploration_final_eps=0.05, max_grad_norm=10,
        policy_kwargs=dict(net_arch=[64, 64], activation_fn=torch.nn.ReLU),
        device="cpu", seed=seed, verbose=0,
    )
    clock = start_clock(learning_starts)
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

    wait_for_others()
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
    from everlearn.scenarios import get_scenario
    from everlearn.training.functional import FunctionalTrainer
    from everlearn.training.gymnasium import GymnasiumTrainer

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
# Continuous control on Pendulum-v1: SAC and TD3
# ----------------------------------------------------------------------------------------------
PENDULUM = "Pendulum-v1"
LEARNING_STARTS = 1_000  # both sides (everlearn's default; SB3's is 100)
EVAL_EPISODES = 10

# everlearn with SB3's settings, field by field (SACConfig's and TD3Config's defaults are
# SB3's but for learning_starts, and TD3's network and exploration noise).
SAC_SB3 = dict(num_envs=1, train_every=1, utd_ratio=1.0, buffer_size=1_000_000, batch_size=256,
               learning_starts=LEARNING_STARTS, learning_rate=3e-4, gamma=0.99, tau=0.005,
               init_alpha=1.0, hidden_sizes=(256, 256), activation="relu")
TD3_SB3 = dict(num_envs=1, train_every=1, utd_ratio=1.0, buffer_size=1_000_000, batch_size=256,
               learning_starts=LEARNING_STARTS, learning_rate=1e-3, gamma=0.99, tau=0.005,
               policy_delay=2, exploration_noise=0.1, target_noise=0.2, target_noise_clip=0.5,
               hidden_sizes=(400, 300), activation="relu")
# The fast configurations: the fastest tried on pendulum-stationary whose final return at the
# same budget is at least SB3's (see benchmarks/README.md for what else was tried).
SAC_FAST = {**SAC_SB3, "hidden_sizes": (64, 64), "batch_size": 128, "num_envs": 4,
            "train_every": 2}
TD3_FAST = {**TD3_SB3, "hidden_sizes": (64, 64), "batch_size": 128, "num_envs": 4,
            "train_every": 2}
OFFPOLICY = {"SAC": (SAC_SB3, SAC_FAST), "TD3": (TD3_SB3, TD3_FAST)}


def describe(config: dict, reference: dict) -> str:
    """A fast configuration as its differences from SB3's settings."""
    diff = {k: v for k, v in config.items() if reference.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in diff.items()) or "SB3's"


@dataclass
class EnvRate:
    name: str
    steps: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.steps / self.seconds


def raw_env_rate(env_id: str, steps: int, seed: int) -> EnvRate:
    """A Gymnasium env stepped with random actions in a plain loop (reset when an episode
    ends): what acting, learning and bookkeeping are added to."""
    import gymnasium as gym

    env = gym.make(env_id)
    seconds, _ = step_randomly(env, steps, seed)
    env.close()
    return EnvRate(f"{env_id}, `gym.make`, random actions", steps, seconds)


def step_randomly(env, steps: int, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds of this process to step `env` `steps` times with uniform-random
    actions (drawn before the clock), resetting it when an episode ends."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    step, reset = env.step, env.reset
    t0, cpu = time.perf_counter(), time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = step(action)
        if terminated or truncated:
            reset()
    return time.perf_counter() - t0, time.process_time() - cpu


def everlearn_env_rate(scenario_name: str, steps: int, seed: int) -> EnvRate:
    """The vector env the Gymnasium path steps (everlearn's context and task wrappers in a
    1-env `SyncVectorEnv`), with random actions in [-1, 1]."""
    import numpy as np

    from everlearn.envs.gymnasium_context import make_vector_env
    from everlearn.scenarios import get_scenario

    task = get_scenario(scenario_name).tasks[0]
    envs = make_vector_env(task, 1)
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (steps, 1, *envs.single_action_space.shape)).astype(np.float32)
    t0 = time.perf_counter()
    for t in range(steps):
        envs.step(actions[t])
    seconds = time.perf_counter() - t0
    envs.close()
    return EnvRate(f"{task.env} through everlearn's wrappers (`make_vector_env`, 1 env)", steps,
                   seconds)


def sb3_offpolicy(algo: str, total_steps: int, seed: int, fast: bool = False) -> Row:
    """SB3 SAC or TD3 on Pendulum-v1 for `total_steps`; rate after LEARNING_STARTS; then the
    deterministic policy's mean return over EVAL_EPISODES episodes. `fast`: SB3 with
    everlearn's fast settings instead of its own (smaller networks and minibatches, 4 envs,
    the same gradient steps per env step), for reference."""
    import numpy as np
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    wait_for_others()
    config = OFFPOLICY[algo][1 if fast else 0]
    num_envs, train_every = config["num_envs"], config["train_every"]
    env = make_vec_env(PENDULUM, n_envs=num_envs, seed=seed, vec_env_cls=DummyVecEnv)
    # SB3's defaults (or the fast settings), spelled out; train_freq counts vector-env steps.
    common = dict(buffer_size=1_000_000, learning_starts=LEARNING_STARTS,
                  batch_size=config["batch_size"], tau=0.005, gamma=0.99, train_freq=train_every,
                  gradient_steps=train_every * num_envs, device="cpu", seed=seed, verbose=0)
    net_arch = dict(net_arch=list(config["hidden_sizes"]), activation_fn=torch.nn.ReLU)
    if algo == "SAC":
        model = SAC("MlpPolicy", env, learning_rate=3e-4, ent_coef="auto",
                    policy_kwargs=net_arch, **common)
    else:
        action_dim = env.action_space.shape[0]
        model = TD3("MlpPolicy", env, learning_rate=1e-3, policy_delay=2,
                    target_policy_noise=0.2, target_noise_clip=0.5,
                    action_noise=NormalActionNoise(np.zeros(action_dim), 0.1 * np.ones(action_dim)),
                    policy_kwargs=net_arch, **common)
    clock = start_clock(LEARNING_STARTS)
    with OtherLoad() as others:
        model.learn(total_timesteps=total_steps, callback=clock)
        t_end = time.perf_counter()
    assert clock.t_start is not None, "learning_starts must be below the step budget"
    row = Row(algo, "Stable-Baselines3 (torch, 1 thread)", 1,
              model.num_timesteps - clock.steps_at_start, t_end - clock.t_start,
              others=others.cores, settings="fast" if fast else "SB3",
              final_return=sb3_greedy_return(model, seed))
    env.close()
    return row


def sb3_greedy_return(model, seed: int) -> float:
    """The SB3 policy's mean deterministic return over the very episodes (start states) that
    everlearn's `GymnasiumTrainer.evaluate(state, [seed], 0)` plays on `pendulum-stationary`:
    the same vector env of EVAL_EPISODES envs, reset with the same seed. SB3 acts in the env's
    units ([-2, 2]); everlearn's wrapper takes [-1, 1] and scales by the bound."""
    import numpy as np

    from everlearn.envs.families import get_family
    from everlearn.envs.gymnasium_context import make_vector_env
    from everlearn.scenarios import get_scenario

    task = get_scenario("pendulum-stationary").tasks[0]
    bound = get_family(task.env).action_bound
    envs = make_vector_env(task, EVAL_EPISODES)
    obs, _ = envs.reset(seed=seed * 1_000_003)  # GymnasiumTrainer.evaluate's seed, eval 0
    returns, done = np.zeros(EVAL_EPISODES), np.zeros(EVAL_EPISODES, bool)
    while not done.all():
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = envs.step(np.asarray(action) / bound)
        returns += np.where(done, 0.0, reward)
        done |= terminated | truncated
    envs.close()
    return float(returns.mean())


def offpolicy_agent(algo: str, config: dict, scenario_name: str):
    from everlearn.agents import EnvSpec, make_agent
    from everlearn.agents.sac import SACConfig
    from everlearn.agents.td3 import TD3Config
    from everlearn.scenarios import get_scenario

    scenario = get_scenario(scenario_name)
    spec = EnvSpec(obs_dim=3, num_actions=1, num_tasks=scenario.num_tasks, continuous=True)
    config = (SACConfig if algo == "SAC" else TD3Config)(**config)
    return make_agent(algo.lower(), config, spec)


def gym_breakdown(trainer, state) -> dict[str, float]:
    """Seconds per env step spent acting (the jitted `act` call until its action is on the
    host), stepping the vector env, and in `update` calls (storing + gradient steps, until the
    new state is ready), over one more `train_segment` call; "rest" is the remainder (the Python
    loop, host-side rollout buffers, metrics). Wraps the trainer's own compiled functions and
    env, so the numbers are those of the loop that was timed."""
    import jax

    spent = {"act": 0.0, "env": 0.0, "update": 0.0}

    def timed(name, fn, ready):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            ready(out)
            spent[name] += time.perf_counter() - t0
            return out
        return wrapper

    def timed_actor(*args):
        reads, act, action_spec = actor(*args)
        return reads, timed("act", act, lambda out: jax.block_until_ready(out[0])), action_spec

    envs = trainer._vector_env(trainer._envs, 0, trainer.agent.num_envs)
    actor, update = trainer._actor, trainer._update
    trainer._actor = timed_actor
    trainer._update = timed("update", update, lambda out: jax.block_until_ready(out[0]))
    envs.step = timed("env", envs.step, lambda out: None)
    try:
        t0 = time.perf_counter()
        state, _ = trainer.train_segment(state, 0)
        jax.block_until_ready(state)
        total = time.perf_counter() - t0
    finally:
        del trainer._actor  # back to the class's method
        trainer._update = update
        del envs.step
    steps = trainer.iterations * trainer.agent.steps_per_update
    out = {k: v / steps for k, v in spent.items()}
    out["rest"] = total / steps - sum(out.values())
    out["total"] = total / steps
    return out


def everlearn_offpolicy_gym(algo: str, settings: str, config: dict, budget: int, segment: int,
                            seed: int) -> Row:
    """A fresh everlearn agent on the Gymnasium path (`pendulum-stationary`) for `budget` env
    steps in segments of `segment` steps: the first segment (learning_starts: random actions,
    plus compilation) timed apart, the rest timed; then the greedy return over EVAL_EPISODES
    episodes (`trainer.evaluate`), then one more, instrumented segment (`gym_breakdown`)."""
    import jax

    from everlearn.scenarios import get_scenario
    from everlearn.training.gymnasium import GymnasiumTrainer

    agent = offpolicy_agent(algo, config, "pendulum-stationary")
    assert segment % agent.steps_per_update == 0 and budget % segment == 0 and budget > segment
    trainer = GymnasiumTrainer(get_scenario("pendulum-stationary"), agent,
                               segment // agent.steps_per_update, eval_episodes=EVAL_EPISODES)
    wait_for_others()
    state = trainer.init([seed])
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    state, _ = trainer.train_segment(state, 0)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    times = []
    with OtherLoad() as others:
        for _ in range(budget // segment - 1):
            t0 = time.perf_counter()
            state, _ = trainer.train_segment(state, 0)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - t0)
    final_return = float(trainer.evaluate(state, [seed], 0)[0, 0])
    row = Row(algo, "everlearn Gymnasium path", 1, segment * len(times), sum(times),
              first_call_s=first, others=others.cores, settings=settings,
              final_return=final_return)
    row.notes.append(f"{len(times)} x {segment:,} steps after a first segment of {segment:,}, "
                     f"per call min {min(times):.2f}s / max {max(times):.2f}s")
    row.breakdown = gym_breakdown(trainer, state)
    return row


def everlearn_offpolicy_func(algo: str, settings: str, config: dict, seeds: list[int],
                             segment: int, calls: int) -> Row:
    """The functional path on `pendulum-contexts`, task 0: segments of `segment` env steps per
    seed (the first one, timed apart, covers learning_starts)."""
    from everlearn.scenarios import get_scenario
    from everlearn.training.functional import FunctionalTrainer

    agent = offpolicy_agent(algo, config, "pendulum-contexts")
    trainer = FunctionalTrainer(get_scenario("pendulum-contexts"), agent,
                                segment // agent.steps_per_update, eval_episodes=EVAL_EPISODES)
    row = everlearn_row(algo, "everlearn functional path", trainer, seeds, calls)
    row.settings = settings
    return row


def offpolicy_rows(algo: str, args) -> list[Row]:
    sb3_config, fast_config = OFFPOLICY[algo]
    rows = []
    for fast in (False, True) if algo in args.sb3_fast else (False,):
        log(f"SB3 {algo} ({'fast' if fast else 'SB3'} settings): {args.offpolicy_budget:,} "
            f"steps (rate after {LEARNING_STARTS:,})")
        rows.append(sb3_offpolicy(algo, args.offpolicy_budget, args.seed, fast))
        log(f"  {rows[-1].rate:,.0f} steps/s, final return {rows[-1].final_return:.1f}")
    for settings, config in (("SB3", sb3_config), ("fast", fast_config)):
        log(f"everlearn {algo} ({settings} settings): Gymnasium path, 1 seed, "
            f"{args.offpolicy_budget:,} steps")
        rows.append(everlearn_offpolicy_gym(algo, settings, config, args.offpolicy_budget,
                                            LEARNING_STARTS, args.seed))
        log(f"  {rows[-1].rate:,.0f} steps/s, final return {rows[-1].final_return:.1f}")
    for settings, config in (("SB3", sb3_config), ("fast", fast_config)):
        if settings not in getattr(args, f"{algo.lower()}_func_settings"):
            continue
        calls = args.func_calls_sb3 if settings == "SB3" else args.func_calls_fast
        for seeds in ([0], list(range(8))):
            log(f"everlearn {algo} ({settings} settings): functional path, {len(seeds)} seed(s)")
            rows.append(everlearn_offpolicy_func(algo, settings, config, seeds,
                                                 LEARNING_STARTS, calls))
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


def sb3_row(group: list[Row], settings: str = "SB3") -> Row | None:
    return next((r for r in group if r.impl.startswith("Stable") and r.settings == settings),
                None)


def offpolicy_table(rows: list[Row], raw: EnvRate | None) -> tuple[list[str], list[list[str]]]:
    header = ["algo", "implementation", "settings", "seeds", "env steps/s (total)", "per seed",
              "first call s", "vs SB3 / target", "of raw env rate", "final return",
              "others' CPU"]
    body = []
    for algo in OFFPOLICY:
        group = [r for r in rows if r.algo == algo]
        if not group:
            continue
        sb3, sb3_fast = sb3_row(group), sb3_row(group, "fast")
        for r in group:
            one = next((o for o in group if "functional" in o.impl and o.seeds == 1
                        and o.settings == r.settings), None)
            vs_sb3 = f"{r.rate / sb3.rate:.2f}x SB3" if sb3 else "-"
            if r is sb3:
                target = "baseline (1.00x)"
            elif r.impl.startswith("Stable"):
                target = vs_sb3 + " (SB3 itself with the fast settings, for reference)"
            elif "Gymnasium" in r.impl and r.settings == "SB3":
                target = vs_sb3 + " (same settings and compute)"
            elif "Gymnasium" in r.impl and algo == "SAC" and sb3:
                target = fast_verdict(r, sb3)
            elif "Gymnasium" in r.impl:
                target = vs_sb3 + " (no target)"
            elif r.seeds == 1:
                target = vs_sb3
            else:
                target = (verdict(r.rate / one.rate, TARGET_SEEDS_VS_ONE) + " vs 1 seed; "
                          + vs_sb3 if one else vs_sb3)
            if sb3_fast and r.settings == "fast" and "Gymnasium" in r.impl:
                target += f"; {r.rate / sb3_fast.rate:.2f}x SB3 with the fast settings"
            of_raw = (f"{r.rate_per_seed / raw.rate:.1%}" if raw and "functional" not in r.impl
                      else "-")
            body.append([
                algo, r.impl, r.settings, str(r.seeds), f"{r.rate:,.0f}",
                f"{r.rate_per_seed:,.0f}" if r.seeds > 1 else "",
                f"{r.first_call_s:.1f}" if r.first_call_s is not None else "-",
                target, of_raw,
                f"{r.final_return:.1f}" if r.final_return is not None else "-",
                f"{r.others:.2f}",
            ])
    return header, body


def return_check(row: Row, sb3: Row) -> tuple[bool, str]:
    """Whether `row`'s final return is at least SB3's (within RETURN_TOLERANCE), and how."""
    diff = row.final_return - sb3.final_return
    allowed = RETURN_TOLERANCE * abs(sb3.final_return)
    ok = diff >= -allowed
    how = ("at least SB3's" if diff >= 0 else
           f"{-diff:.1f} below SB3's, within the {RETURN_TOLERANCE:.0%} tolerance" if ok else
           f"{-diff:.1f} below SB3's, beyond the {RETURN_TOLERANCE:.0%} tolerance")
    return ok, f"return {row.final_return:.1f} vs SB3's {sb3.final_return:.1f}: {how}"


def fast_verdict(row: Row, sb3: Row) -> str:
    ratio = row.rate / sb3.rate
    good, how = return_check(row, sb3)
    met = ratio >= TARGET_SAC_VS_SB3 and good
    return (f"{ratio:.2f}x SB3 ({'met' if met else 'not met'}: target >= "
            f"{TARGET_SAC_VS_SB3:g}x with a final return >= SB3's; {how})")


def offpolicy_targets(rows: list[Row]) -> list[str]:
    out = []
    for algo in OFFPOLICY:
        group = [r for r in rows if r.algo == algo]
        sb3, sb3_fast = sb3_row(group), sb3_row(group, "fast")
        if not sb3:
            continue
        for r in group:
            if "Gymnasium" not in r.impl:
                continue
            ratio = r.rate / sb3.rate
            ret = return_check(r, sb3)[1]
            if r.settings == "SB3":
                out.append(f"{algo} Gymnasium path with SB3's settings {ratio:.2f}x SB3 "
                           f"(like for like, no target), {ret}")
                continue
            also = (f"; {r.rate / sb3_fast.rate:.2f}x SB3 run with the same fast settings "
                    f"({sb3_fast.rate:,.0f} steps/s, return {sb3_fast.final_return:.1f})"
                    if sb3_fast else "")
            if algo == "SAC":
                met = ratio >= TARGET_SAC_VS_SB3 and return_check(r, sb3)[0]
                out.append(f"SAC Gymnasium path, fast settings {ratio:.2f}x SB3, {ret} (>= "
                           f"{TARGET_SAC_VS_SB3:g}x with return >= SB3's: "
                           f"{'met' if met else 'NOT met'}){also}")
            else:
                out.append(f"{algo} Gymnasium path, fast settings {ratio:.2f}x SB3, {ret}{also}")
        for settings in ("SB3", "fast"):
            one = next((r for r in group if "functional" in r.impl and r.seeds == 1
                        and r.settings == settings), None)
            eight = next((r for r in group if "functional" in r.impl and r.seeds == 8
                          and r.settings == settings), None)
            if one and eight:
                ratio = eight.rate / one.rate
                out.append(f"{algo} functional path ({settings} settings) 8 seeds {ratio:.2f}x "
                           f"1 seed (>= {TARGET_SEEDS_VS_ONE:g}x: "
                           f"{'met' if ratio >= TARGET_SEEDS_VS_ONE else 'NOT met'})")
    return out


def breakdown_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["algo", "settings", "act", "env step", "update (store + gradient steps)",
              "rest (loop, host buffers, metrics)", "total per env step", "env steps/s"]
    body = []
    for r in rows:
        if r.breakdown is None:
            continue
        b = r.breakdown
        cell = lambda k: f"{b[k] * 1e6:,.0f} µs ({b[k] / b['total']:.0%})"  # noqa: E731
        body.append([r.algo, r.settings, cell("act"), cell("env"), cell("update"), cell("rest"),
                     f"{b['total'] * 1e6:,.0f} µs", f"{1 / b['total']:,.0f}"])
    return header, body


def format_text(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def format_markdown(header: list[str], body: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out)


def write_results(path: Path, args, rows: list[Row], env_rates: list[EnvRate], loads: dict,
                  wall_s: float) -> None:
    v = versions()
    lines = [
        "# Training throughput: everlearn vs Stable-Baselines3",
        "",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine_description()}",
        f"- Load average (1 min) before start: {loads['before']} (one reading per wait for a "
        f"quiet machine); at the end: "
        f"{loads['end']:.2f} (includes this benchmark's own load); largest CPU use by other "
        f"processes during a row: {max(r.others for r in rows):.2f} cores",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Commit: {COMMIT_AT_START}",
        f"- Command: `{' '.join([Path(sys.executable).name, *sys.argv])}` "
        f"({'quick' if args.quick else 'full'} run, {wall_s:.0f} s wall)",
        "",
        "Env steps per second of training (acting, env stepping and learning), steady state. "
        "`others' CPU` = cores kept busy by other processes during the row's timed part (from "
        "/proc/stat, this process's own CPU time subtracted; the machine has "
        f"{nproc()}); before each row the script waits (up to {args.others_waits} x 30 s) "
        f"while other processes keep more than {args.max_others:g} cores busy. SB3 runs with "
        "`torch.set_num_threads(1)`; XLA (everlearn) may use both cores inside one program "
        "(its larger matrix products).",
        "",
    ]
    discrete = [r for r in rows if r.algo in ("PPO", "DQN")]
    if discrete:
        header, body = table(discrete)
        lines += [
            "## PPO and DQN on CartPole-v1",
            "",
            format_markdown(header, body),
            "",
            "Targets: " + "; ".join(target_summary(discrete)) + ".",
            "",
            "`compile s` = first `train_segment` call minus one steady-state call (tracing + XLA "
            "compilation); SB3 has none.",
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
            "",
        ]
    continuous = [r for r in rows if r.algo in OFFPOLICY]
    raw = next((e for e in env_rates if e.name.startswith(PENDULUM)), None)
    if env_rates:
        lines += ["## Raw env step rate", "",
                  "| env | steps | steps/s | µs per step |", "|---|---|---|---|"]
        lines += [f"| {e.name} | {e.steps:,} | {e.rate:,.0f} | {1e6 / e.rate:,.1f} |"
                  for e in env_rates]
        lines += ["", "The upper bound for any agent on the Gymnasium path (one env stepped on "
                  "the host); `of raw env rate` below divides a row's rate per seed by the "
                  "first line's.", ""]
    if continuous:
        header, body = offpolicy_table(continuous, raw)
        lines += [
            f"## SAC and TD3 on Pendulum-v1 ({args.offpolicy_budget:,}-step budget)",
            "",
            format_markdown(header, body),
            "",
            "Targets: " + "; ".join(offpolicy_targets(continuous)) + ".",
            "",
            f"`final return` = mean return of {EVAL_EPISODES} episodes of the deterministic "
            f"policy after {args.offpolicy_budget:,} env steps of training, on the same "
            "episodes for every row (everlearn: `trainer.evaluate(state, [seed], 0)`, the "
            "greedy action; SB3: `model.predict(obs, deterministic=True)` played on the same "
            "vector env reset with the same seed, so the start states are the same). Training "
            f"seed {args.seed}, one run each: a converged Pendulum policy scores about -130 to "
            "-170 on ten episodes, and two converged policies differ by a point or two on the "
            "same episodes, either way; so \"at least SB3's return\" allows "
            f"{RETURN_TOLERANCE:.0%} of |SB3's return| (the exact difference is printed). "
            "`first call s` = the first `train_segment` "
            f"call: tracing + XLA compilation + the {LEARNING_STARTS:,} random warm-up steps "
            "(the first gradient step at its end).",
            "",
        ]
        header, body = breakdown_table(continuous)
        if body:
            lines += [
                "### Where the time goes per env step (Gymnasium path)",
                "",
                format_markdown(header, body),
                "",
                "Measured in one more `train_segment` call after the final return (the "
                "trainer's own jitted `act` and `update` and its vector env's `step`, wrapped "
                "with timers: `act` until its action is ready, `update` until the new state is "
                "ready). `act` = one jitted call per env step (sampling the policy, threading "
                "the key) plus moving the action to the host; `update` = one call per "
                "`train_every` steps, storing into the replay buffer and running "
                "`train_every x num_envs x utd_ratio` gradient steps in one `lax.scan`; `rest` "
                "= the Python loop, the host-side rollout buffers and the metrics.",
                "",
            ]
        lines += [
            "Settings:",
            "",
            f"- SAC: SB3 defaults - 1 env, lr 3e-4, buffer 1M, batch 256, tau 0.005, gamma "
            "0.99, train_freq 1, 1 gradient step per env step, automatic entropy coefficient "
            f"(initial 1, target -1), [256, 256] relu; learning_starts {LEARNING_STARTS:,} "
            "(SB3's default is 100) for both. everlearn SB3 settings: `SACConfig("
            + ", ".join(f"{k}={v}" for k, v in SAC_SB3.items()) + ")`. Fast settings: "
            + describe(SAC_FAST, SAC_SB3) + ": still one gradient step per env step (utd_ratio "
            "1), on smaller networks and minibatches; one `act` call serves 4 envs, and each "
            "update call runs 8 gradient steps in one `lax.scan`.",
            "- TD3: SB3 defaults - lr 1e-3, buffer 1M, batch 256, tau 0.005, gamma 0.99, "
            "policy_delay 2, target policy noise 0.2 clipped at 0.5, train_freq 1, 1 gradient "
            "step, [400, 300] relu; plus `NormalActionNoise(0, 0.1)` and learning_starts "
            f"{LEARNING_STARTS:,} to match everlearn. everlearn SB3 settings: `TD3Config("
            + ", ".join(f"{k}={v}" for k, v in TD3_SB3.items()) + ")`. Fast settings: "
            + describe(TD3_FAST, TD3_SB3) + " (as SAC's).",
            f"- SB3: `learn({args.offpolicy_budget})` on one Pendulum-v1 env in a DummyVecEnv; "
            f"its rate is measured from learning_starts ({LEARNING_STARTS:,}) to the end. "
            "SB3 with the fast settings (for reference, algorithms: "
            f"{', '.join(args.sb3_fast) or 'none'}): the same, on 4 envs, `train_freq=2` "
            "(vector-env steps), `gradient_steps=8`, `batch_size=128`, `net_arch=[64, 64]`. "
            f"everlearn Gymnasium path: a fresh agent on `pendulum-stationary`, "
            f"{args.offpolicy_budget // LEARNING_STARTS} `train_segment` calls of "
            f"{LEARNING_STARTS:,} env steps; the first (warm-up and compilation) is timed "
            "apart, the rate is over the others. Functional path: `pendulum-contexts`, task 0, "
            f"segments of {LEARNING_STARTS:,} env steps per seed, the first timed apart; "
            f"steady-state calls: {args.func_calls_sb3} (SB3 settings), "
            f"{args.func_calls_fast} (fast settings).",
        ]
    lines += ["", "Details per everlearn row:", ""]
    for r in rows:
        if r.notes:
            lines.append(f"- {r.algo} {r.impl}{', ' + r.settings + ' settings' if r.settings else ''}"
                         f", {r.seeds} seed(s): {'; '.join(r.notes)}"
                         + (f"; first call {r.first_call_s:.2f}s" if r.first_call_s else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
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
