"""Throughput benchmark harness: what is timed, and how, for each row.

The Stable-Baselines3 and everlearn runs (PPO and DQN on CartPole-v1, SAC and TD3 on
Pendulum-v1), the raw env step rates, the settings both sides use, and the records (`Row`,
`EnvRate`) each measurement returns. `throughput.py` calls these in order; the tables are
`throughput_tables.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from load_monitor import log, wait_for_others
from machine import OtherLoad
from profiler import gym_breakdown


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
