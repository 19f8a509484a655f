"""Throughput on the field's benchmarks (issue 11 part 8): everlearn against Stable-Baselines3 on
Continual World's SAC and on MinAtar's PPO, side by side in one run on this machine.

Continual World (Meta-World v3 `hammer`, cw10's first task, through `everlearn/ContinualWorld-v0`:
CW's 200-step episodes and goal randomisation):
  - the raw env step rate, random actions;
  - everlearn SAC, Gymnasium path, `--preset continual-world` (four 256-unit layers, layer
    norm after the first, leaky ReLU 0.2, one head per task, batch 128, 50 gradient steps every
    50 env steps), 1 and 4 seeds, measured as benchmarks/gymnasium_population.py does;
  - SB3 SAC with the same network, batch, learning rate, update schedule, buffer, target and
    entropy settings (torch, 1 thread), its rate after `learning_starts`.
MinAtar Breakout (no sticky actions, as gymnax's):
  - the raw step rate of the `minatar` package's Gymnasium env, random actions;
  - everlearn PPO, functional path (gymnax's Breakout-MinAtar), 1 and 8 vmapped seeds, with
    everlearn's PPO defaults (8 envs × 32 steps, 20 epochs of one 256-step minibatch, lr 1e-3,
    [64, 64] tanh) on MinAtar's torso (one 3×3 convolution of 16 channels, ReLU);
  - SB3 PPO with the same settings and torso on the `minatar` package's Gymnasium env
    (`MinAtar/Breakout-v1`, 8 envs in a DummyVecEnv, torch 1 thread).

    python benchmarks/field_throughput.py [--quick] [--out benchmarks/results/field_throughput.md]

Needs the bench extra (`make .venv/bin/.bench`: torch 2.13.0 CPU, stable-baselines3, minatar).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import NamedTuple

from gymnasium_population import WORKLOADS, measure
from machine import OtherLoad, results_header, wait_for_quiet_machine
from throughput import log, start_clock, step_randomly

ROOT = Path(__file__).resolve().parent
CW_TASK = "hammer-v3"
CW = dict(learning_rate=1e-3, batch_size=128, buffer_size=1_000_000, tau=0.005, gamma=0.99,
          train_freq=50, gradient_steps=50, learning_starts=1_000, hidden=256, layers=4)
MINATAR_GAME = "Breakout"
PPO = dict(n_envs=8, n_steps=32, n_epochs=20, batch_size=256, learning_rate=1e-3, gamma=0.98,
           gae_lambda=0.8, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
BREAKOUT_SCENARIO = ("name: minatar-breakout\nsteps_per_task: 1000000\ntasks:\n"
                     "  - {name: breakout, env: Breakout-MinAtar, random_score: 0.41, "
                     "reference_score: 28.0}\n")


class Rate(NamedTuple):
    steps_per_s: float  # env steps per second, all seeds
    cores: float  # this process's CPU time over the wall time (2 cores here)
    others: float  # cores kept busy by other processes meanwhile


# -- raw env rates -------------------------------------------------------------------------------
def raw_rate(make_env, steps: int) -> Rate:
    env = make_env()
    with OtherLoad() as others:
        seconds, cpu = step_randomly(env, steps, seed=0)
    env.close()
    return Rate(steps / seconds, cpu / seconds, others.cores)


def continual_world_env():
    import gymnasium as gym

    import everlearn.envs.metaworld as cw  # registers everlearn/ContinualWorld-v0

    return gym.make(cw.ENV_ID, task=CW_TASK)


def minatar_env():
    import gymnasium as gym
    import minatar.gym

    if "MinAtar/Breakout-v1" not in gym.envs.registry:
        minatar.gym.register_envs()
    return gym.make(f"MinAtar/{MINATAR_GAME}-v1", sticky_action_prob=0.0)


# -- Stable-Baselines3 ---------------------------------------------------------------------------
def sb3_continual_world_sac(steps: int, threads: int) -> Rate:
    """SB3 SAC with CW's network and settings on hammer, torch on `threads` threads: env
    steps/s after learning_starts."""
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    torch.set_num_threads(threads)

    class FirstLayer(BaseFeaturesExtractor):
        """CW's first hidden layer: Dense, LayerNorm, tanh (sac/models.py, use_layer_norm)."""

        def __init__(self, observation_space):
            super().__init__(observation_space, CW["hidden"])
            self.layer = torch.nn.Sequential(
                torch.nn.Linear(observation_space.shape[0], CW["hidden"]),
                torch.nn.LayerNorm(CW["hidden"]), torch.nn.Tanh())

        def forward(self, obs):
            return self.layer(obs)

    class LeakyReLU(torch.nn.LeakyReLU):  # TensorFlow's slope, as CW's tf.nn.leaky_relu
        def __init__(self):
            super().__init__(0.2)

    env = continual_world_env()
    model = SAC("MlpPolicy", env, learning_rate=CW["learning_rate"],
                buffer_size=CW["buffer_size"], learning_starts=CW["learning_starts"],
                batch_size=CW["batch_size"], tau=CW["tau"], gamma=CW["gamma"],
                train_freq=CW["train_freq"], gradient_steps=CW["gradient_steps"],
                ent_coef="auto_2.718281828", target_entropy=-4.0, device="cpu", seed=0,
                policy_kwargs=dict(features_extractor_class=FirstLayer,
                                   net_arch=[CW["hidden"]] * (CW["layers"] - 1),
                                   activation_fn=LeakyReLU))
    clock = start_clock(CW["learning_starts"])
    with OtherLoad() as others:
        model.learn(total_timesteps=CW["learning_starts"] + steps, callback=clock)
        end, cpu_end = time.perf_counter(), time.process_time()
    env.close()
    wall = end - clock.t_start
    return Rate((model.num_timesteps - clock.steps_at_start) / wall,
                (cpu_end - clock.cpu_start) / wall, others.cores)


def sb3_minatar_ppo(steps: int, threads: int) -> Rate:
    """SB3 PPO with everlearn's PPO settings and MinAtar's torso on Breakout, torch on
    `threads` threads: env steps/s."""
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(threads)

    class MinAtarTorso(BaseFeaturesExtractor):
        """Young & Tian's (2019) torso: one 3×3 convolution of 16 channels, ReLU, flattened."""

        def __init__(self, observation_space):
            height, width, channels = observation_space.shape
            super().__init__(observation_space, 16 * (height - 2) * (width - 2))
            self.conv = torch.nn.Conv2d(channels, 16, 3)

        def forward(self, obs):  # SB3 hands the frames over as float, channels last
            return torch.relu(self.conv(obs.permute(0, 3, 1, 2))).flatten(1)

    env = DummyVecEnv([minatar_env] * PPO["n_envs"])
    env.seed(0)
    model = SB3PPO("MlpPolicy", env, **{k: v for k, v in PPO.items() if k != "n_envs"},
                   device="cpu", seed=0,
                   policy_kwargs=dict(features_extractor_class=MinAtarTorso,
                                      share_features_extractor=False,
                                      net_arch=dict(pi=[64, 64], vf=[64, 64]),
                                      activation_fn=torch.nn.Tanh))
    model.learn(total_timesteps=PPO["n_envs"] * PPO["n_steps"])  # warm-up (first allocations)
    with OtherLoad() as others:
        start, cpu = time.perf_counter(), time.process_time()
        model.learn(total_timesteps=steps, reset_num_timesteps=True)
        seconds = time.perf_counter() - start
    env.close()
    return Rate(model.num_timesteps / seconds, (time.process_time() - cpu) / seconds,
                others.cores)


# -- everlearn -----------------------------------------------------------------------------------
def everlearn_rate(workload: dict, seeds: int, segments: int, steps: int,
                   backend: str) -> Rate:
    with OtherLoad() as others:
        rate, cores = measure(workload, seeds, segments, steps, backend)
    return Rate(rate, cores, others.cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (a minute or two)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cw_steps, cw_segments = (200, 1) if args.quick else (2_000, 2)
    ppo_steps, ppo_segments = (2_048, 1) if args.quick else (16_384, 3)
    sb3_ppo_steps = 2_048 if args.quick else 16_384
    started = time.perf_counter()
    wait_for_quiet_machine(max_load=0.5, waits=10, wait_s=30)
    rows: list[tuple[str, str, str, Rate]] = []  # benchmark, implementation, seeds, rate

    def add(benchmark: str, row: str, seeds: str, rate: Rate):
        rows.append((benchmark, row, seeds, rate))
        log(f"{benchmark} | {row} | {seeds} seed(s): {rate.steps_per_s:,.0f} env steps/s, "
            f"{rate.cores:.2f} cores")

    add("Continual World", "Meta-World hammer-v3, raw env, random actions", "-",
        raw_rate(continual_world_env, 500 if args.quick else 5_000))
    for threads in (1, 2):
        add("Continual World", f"Stable-Baselines3 SAC, CW's settings (torch, {threads} "
            f"thread{'s' if threads > 1 else ''})", "1",
            sb3_continual_world_sac(cw_steps, threads))
    for seeds in (1, 4):
        add("Continual World", "everlearn SAC, Gymnasium path, --preset continual-world",
            str(seeds), everlearn_rate(WORKLOADS["cw-sac"], seeds, cw_segments, cw_steps,
                                       "gymnasium"))
    add("MinAtar Breakout", "`minatar` package, raw env, random actions", "-",
        raw_rate(minatar_env, 5_000 if args.quick else 50_000))
    for threads in (1, 2):
        add("MinAtar Breakout", f"Stable-Baselines3 PPO, `minatar` env (torch, {threads} "
            f"thread{'s' if threads > 1 else ''})", "1", sb3_minatar_ppo(sb3_ppo_steps, threads))
    with TemporaryDirectory() as folder:
        scenario = Path(folder) / "minatar-breakout.yaml"
        scenario.write_text(BREAKOUT_SCENARIO)
        workload = dict(scenario=str(scenario), agent="ppo", preset=None, sets=[])
        for seeds in (1, 8):
            add("MinAtar Breakout", "everlearn PPO, functional path (gymnax)", str(seeds),
                everlearn_rate(workload, seeds, ppo_segments, ppo_steps, "jax"))

    table = ["| benchmark | implementation | seeds | env steps/s (all seeds) | per seed "
             "| vs SB3 (1 thread) | cores busy | others' cores |",
             "|:--|:--|--:|--:|--:|--:|--:|--:|"]
    for benchmark, row, seeds, rate in rows:
        sb3 = next(r[3].steps_per_s for r in rows
                   if r[0] == benchmark and r[1].startswith("Stable"))
        per_seed = rate.steps_per_s / (int(seeds) if seeds != "-" else 1)
        versus = f"{rate.steps_per_s / sb3:.2f}x" if seeds != "-" else ""
        table.append(f"| {benchmark} | {row} | {seeds} | {rate.steps_per_s:,.0f} | "
                     f"{per_seed:,.0f} | {versus} | {rate.cores:.2f} | {rate.others:.2f} |")
    lines = [*results_header("Throughput on Continual World and MinAtar: everlearn vs "
                             "Stable-Baselines3 (issue 11 part 8)",
                             time.perf_counter() - started), "",
             *table, "",
             f"- Continual World rows: {cw_segments} timed segments of {cw_steps:,} env steps "
             "per seed after a warm-up segment that compiles and passes learning_starts "
             f"({CW['learning_starts']:,}); SB3's rate from learning_starts to "
             f"{CW['learning_starts'] + cw_steps:,} steps. Both sides: batch 128, lr 1e-3, "
             "50 gradient steps every 50 env steps, tau 0.005, gamma 0.99, 1M buffer, alpha "
             "from e (log alpha 1), target entropy -4. Network: four 256-unit layers, the "
             "first Dense-LayerNorm-tanh, the rest leaky ReLU 0.2. Differences: SB3's critic "
             "takes the action after its first layer (its features extractor sees the "
             "observation only; CW's and everlearn's critics read observation and action "
             "from the first layer), and it has one output head (everlearn's preset: one per "
             "task of cw10, 10).",
             f"- MinAtar rows: everlearn {ppo_segments} timed segments of {ppo_steps:,} env "
             f"steps per seed after a warm-up segment; SB3 `learn({sb3_ppo_steps:,})` after "
             "a one-rollout warm-up. Both sides: 8 envs × 32 steps, 20 epochs of one "
             "256-step minibatch, lr 1e-3, gamma 0.98, GAE 0.8, clip 0.2, separate actor "
             "and critic, each with its own torso (3×3 conv of 16 channels, ReLU) and [64, "
             "64] tanh. everlearn steps gymnax's Breakout-MinAtar inside its compiled "
             "program; SB3 steps the `minatar` package's (Young & Tian's own code, sticky "
             "actions off, as gymnax's).",
             "- cores busy: this process's CPU time over the row's timed wall time (the "
             "machine has 2; XLA's matrix products may use both, torch uses its threads); "
             "others' cores: cores kept busy by other processes meanwhile.",
             ""]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
