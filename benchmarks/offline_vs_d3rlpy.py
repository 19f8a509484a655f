"""TD3+BC: everlearn's td3_bc against d3rlpy 2.8.1's TD3PlusBC, on the standard Pendulum's
built-in medium recipe, the same gradient-step budget, back to back in one process.
Usage (after `make bench`, which installs d3rlpy): .venv/bin/python benchmarks/offline_vs_d3rlpy.py STEPS SEEDS(comma)
(this run: d3rlpy from a --target install, PYTHONPATH=/tmp/d3pkgs)."""
import sys, time, json, numpy as np
import jax
from everlearn.runs.config import build_config
from everlearn.runs.run import make_plan, make_datasets
from everlearn.data import minari_io, recipes

steps = int(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(",")]
RANDOM, REF = -1214.0, -150.0
norm = lambda r: (np.asarray(r) - RANDOM) / (REF - RANDOM)
scen = "/tmp/off_med_cmp.yaml"
open(scen, "w").write("name: off-med\nsteps_per_task: %d\ntasks:\n  - {name: standard, env: Pendulum-v1, dataset: medium, random_score: -1214.0, reference_score: -150.0}\n" % steps)
out = {"steps": steps, "seeds": seeds}

# everlearn td3_bc, defaults ([256, 256]); two segments: the first holds the compilation
def everlearn_run(run_seeds):
    cfg = build_config(None, {"scenario": scen, "agent": "td3_bc", "seeds": run_seeds},
                       ["evals_per_task=2", "eval_episodes=10", "diagnostics=false"])
    plan = make_plan(cfg); make_datasets(plan.scenario, cfg, True)
    st = plan.trainer.init(run_seeds)
    t0 = time.time(); st, _ = plan.trainer.train_segment(st, 0); jax.block_until_ready(st); t1 = time.time()
    st, _ = plan.trainer.train_segment(st, 0); jax.block_until_ready(st); t2 = time.time()
    r = plan.trainer.evaluate(st, run_seeds, 1)[:, 0]
    half = steps // 2
    return plan, {"first_segment_s": t1 - t0, "steady_steps_per_s": half / (t2 - t1),
                  "steady_seed_steps_per_s": half * len(run_seeds) / (t2 - t1),
                  "returns": np.asarray(r).tolist(), "normalised": norm(r).tolist()}
plan, ev1 = everlearn_run(seeds[:1]); print("everlearn 1 seed", ev1, flush=True)
_, evn = everlearn_run(seeds); print(f"everlearn {len(seeds)} seeds vmapped", evn, flush=True)
out["everlearn_1_seed"], out["everlearn_vmapped"] = ev1, evn

dataset_id = recipes.recipe_id(plan.scenario.tasks[0], "medium")
d = minari_io.load_transitions(dataset_id)
out["dataset"] = dataset_id; out["data_normalised"] = float(norm(np.mean(d.episode_returns)))
print("dataset", dataset_id, len(d.reward), "rows, data avg normalised", out["data_normalised"], flush=True)

import d3rlpy, gymnasium as gym, torch
dataset = d3rlpy.dataset.MDPDataset(d.obs.astype(np.float32), d.action.astype(np.float32),
                                    d.reward.astype(np.float32), d.terminated.astype(np.float32),
                                    timeouts=d.truncated.astype(np.float32))
res = []
for seed in seeds:
    d3rlpy.seed(seed)
    algo = d3rlpy.algos.TD3PlusBCConfig(
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler()).create(device="cpu:0")
    algo.build_with_dataset(dataset)
    t0 = time.time()
    algo.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10**9)
    el = time.time() - t0
    env = gym.make("Pendulum-v1"); rets = []
    for ep in range(10):
        o, _ = env.reset(seed=1000 + ep); done = False; ret = 0.0
        while not done:
            a = algo.predict(o[None].astype(np.float32))[0]
            o, r, term, trunc, _ = env.step(2.0 * np.clip(a, -1, 1)); ret += r; done = term or trunc
        rets.append(ret)
    res.append({"seed": seed, "fit_s": el, "steps_per_s": steps / el, "return": float(np.mean(rets)),
                "normalised": float(norm(np.mean(rets)))})
    print("d3rlpy", res[-1], flush=True)
out["d3rlpy"] = res; out["torch_threads"] = torch.get_num_threads()
json.dump(out, open("/work/bench-runs/offline_vs_d3rlpy.json", "w"), indent=1)
