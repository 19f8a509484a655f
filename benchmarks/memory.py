"""Replay-buffer memory: a 1M-transition Hopper-v5 buffer held by SAC, filled for real.

The target: a 1M-transition replay buffer for Hopper-v5 (observation 11 floats, action 3
floats) stays well under 1 GiB of process memory. This script

  1. prints `ReplayBuffer.footprint(1_000_000, 11, (3,))` (bytes, computed without allocating);
  2. in a fresh subprocess (so nothing else has touched the heap) builds a SAC agent for
     Hopper (`EnvSpec(11, 3, continuous=True)`, `SACConfig(buffer_size=1_000_000, ...)`),
     initialises it, then fills the buffer completely through jitted `agent.update` calls with
     the agent state donated (`donate_argnums=0`, as `GymnasiumTrainer` does): 100 calls of
     10,000 transitions each (`train_every=10_000`, 1 env; `learning_starts` above 1M, so no
     gradient steps run, only the stores). It reports the peak resident set size
     (`resource.getrusage(...).ru_maxrss`) before init, after init and after filling, the
     state's `buffer.nbytes`, and the buffer's row count at the end;
  3. does the same without donation, to show what donation saves.

Run: `.venv/bin/python benchmarks/memory.py`. Writes benchmarks/results/memory.md (see --out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from machine import results_header

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "memory.md"
CAPACITY, OBS_DIM, ACTION_DIM = 1_000_000, 11, 3
CHUNK = 10_000  # transitions per update call
TARGET_BYTES = 2**30  # 1 GiB
MiB = 2**20


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    """Resident set size now, in bytes (from /proc/self/statm)."""
    import os

    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return -1


def child(donate: bool) -> dict:
    """Runs in the fresh subprocess: init a SAC agent, fill its buffer, measure."""
    import jax
    import numpy as np

    from everlearn.agents import EnvSpec, make_agent
    from everlearn.agents.sac import SACConfig
    from everlearn.core.replay import Transition

    config = SACConfig(buffer_size=CAPACITY, learning_starts=CAPACITY + 1, train_every=CHUNK,
                       num_envs=1)
    agent = make_agent("sac", config, EnvSpec(obs_dim=OBS_DIM, num_actions=ACTION_DIM,
                                              continuous=True))
    jax.block_until_ready(jax.numpy.zeros(()))  # the backend is up: count it in "before init"
    out = {"before_init": peak_rss(), "rss_before_init": current_rss()}

    key = jax.random.PRNGKey(0)
    init = jax.jit(agent.init).lower(key).compile()
    out["init_compiled"] = peak_rss()
    state = init(key)
    jax.block_until_ready(state)
    out["after_init"], out["rss_after_init"] = peak_rss(), current_rss()
    out["buffer_nbytes"] = state.buffer.nbytes

    rng = np.random.default_rng(0)
    # One chunk of random transitions (host arrays, [T, num_envs, ...]), reused every call.
    batch = Transition(
        obs=rng.standard_normal((CHUNK, 1, OBS_DIM), np.float32),
        action=rng.uniform(-1, 1, (CHUNK, 1, ACTION_DIM)).astype(np.float32),
        reward=rng.standard_normal((CHUNK, 1), np.float32),
        terminated=np.zeros((CHUNK, 1), bool),
        truncated=np.zeros((CHUNK, 1), bool),
        next_obs=rng.standard_normal((CHUNK, 1, OBS_DIM), np.float32),
        extras={},
    )
    key = jax.random.PRNGKey(1)
    update = jax.jit(agent.update, donate_argnums=0 if donate else ()).lower(
        state, batch, key).compile()
    out["update_compiled"] = peak_rss()
    t0 = time.perf_counter()
    for i in range(CAPACITY // CHUNK):
        state, _ = update(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready(state)
    out["fill_s"] = time.perf_counter() - t0
    out["after_fill"], out["rss_after_fill"] = peak_rss(), current_rss()
    out["buffer_size"] = int(state.buffer.size)
    out["gradient_steps"] = int(state.gradient_steps)
    out["env_steps"] = int(state.env_steps)
    return out


def run_child(donate: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child",
           "--donate" if donate else "--no-donate"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child failed: {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(x: int) -> str:
    return f"{x / MiB:,.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--donate", action=argparse.BooleanOptionalAction, default=True,
                   help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown results file")
    p.add_argument("--no-write", action="store_true", help="print only, write no results file")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.donate)))
        return 0

    from everlearn.core.replay import ReplayBuffer

    t_start = time.perf_counter()
    footprint = ReplayBuffer.footprint(CAPACITY, OBS_DIM, (ACTION_DIM,))
    print(f"ReplayBuffer.footprint({CAPACITY:_}, {OBS_DIM}, ({ACTION_DIM},)) = {footprint:,} "
          f"bytes ({mib(footprint)} MiB)")
    results = {}
    for donate in (True, False):
        label = "donated" if donate else "not donated"
        print(f"filling a {CAPACITY:,}-row buffer in a fresh process, agent state {label} ...",
              flush=True)
        r = results[donate] = run_child(donate)
        print(f"  peak RSS: before init {mib(r['before_init'])} MiB, after init "
              f"{mib(r['after_init'])} MiB, after filling {mib(r['after_fill'])} MiB; "
              f"buffer.nbytes {r['buffer_nbytes']:,}; rows {r['buffer_size']:,}; "
              f"fill {r['fill_s']:.1f}s", flush=True)
    wall = time.perf_counter() - t_start

    d = results[True]
    ok = d["after_fill"] < TARGET_BYTES
    verdict = (f"peak RSS after filling {mib(d['after_fill'])} MiB = "
               f"{d['after_fill'] / TARGET_BYTES:.0%} of 1 GiB: "
               f"{'met' if ok else 'NOT met'} (target: well under 1 GiB)")
    print(verdict)
    header = ["measurement", "agent state donated (as GymnasiumTrainer)", "not donated"]
    n = results[False]
    body = [
        ["peak RSS before init (imports, JAX backend up) MiB", mib(d["before_init"]),
         mib(n["before_init"])],
        ["peak RSS after compiling `agent.init` MiB", mib(d["init_compiled"]),
         mib(n["init_compiled"])],
        ["peak RSS after `agent.init` (buffer allocated) MiB", mib(d["after_init"]),
         mib(n["after_init"])],
        ["peak RSS after compiling `agent.update` MiB", mib(d["update_compiled"]),
         mib(n["update_compiled"])],
        [f"peak RSS after filling ({CAPACITY // CHUNK} `update` calls) MiB",
         mib(d["after_fill"]), mib(n["after_fill"])],
        ["growth from before init to after filling MiB",
         mib(d["after_fill"] - d["before_init"]), mib(n["after_fill"] - n["before_init"])],
        ["RSS after init / at the end MiB",
         f"{mib(d['rss_after_init'])} / {mib(d['rss_after_fill'])}",
         f"{mib(n['rss_after_init'])} / {mib(n['rss_after_fill'])}"],
        ["`state.buffer.nbytes` MiB", mib(d["buffer_nbytes"]), mib(n["buffer_nbytes"])],
        ["rows filled / gradient steps", f"{d['buffer_size']:,} / {d['gradient_steps']}",
         f"{n['buffer_size']:,} / {n['gradient_steps']}"],
        ["fill time s", f"{d['fill_s']:.1f}", f"{n['fill_s']:.1f}"],
    ]
    for row in body:
        print("  " + " | ".join(row))
    if args.no_write:
        return 0
    lines = [
        *results_header("Replay-buffer memory: 1M transitions of Hopper-v5 (SAC)", wall),
        "",
        f"`ReplayBuffer.footprint({CAPACITY:_}, {OBS_DIM}, ({ACTION_DIM},))` = {footprint:,} "
        f"bytes ({mib(footprint)} MiB): per row two float32 observations (2 x {OBS_DIM} x 4 B), "
        f"a float32 action ({ACTION_DIM} x 4 B), a float32 reward and a bool termination flag.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in body),
        "",
        f"Target (1M-transition Hopper buffer well under 1 GiB): {verdict}.",
        "",
        "Each column is one fresh subprocess: a SAC agent for Hopper-v5 (`EnvSpec(11, 3, "
        f"continuous=True)`, `SACConfig(buffer_size={CAPACITY:_}, learning_starts="
        f"{CAPACITY + 1:_}, train_every={CHUNK:_}, num_envs=1)`, otherwise SB3's defaults: "
        "[256, 256] networks); `agent.init` compiled ahead (`jax.jit(...).lower(...)"
        ".compile()`) and run, `agent.update` compiled ahead, then "
        f"{CAPACITY // CHUNK} `update` calls of {CHUNK:,} random transitions each fill the "
        "buffer (`learning_starts` above the capacity: no gradient steps; the networks' and "
        "optimiser's memory is there all the same). Compiling ahead shows XLA's compiler "
        "memory (which the process keeps) apart from the data: the step from \"after "
        "compiling `agent.init`\" to \"after `agent.init`\" is the state itself, mostly the "
        "buffer. Peak RSS is `resource.getrusage(RUSAGE_SELF).ru_maxrss`; \"RSS after init / "
        "at the end\" is the current RSS (/proc/self/statm). Without donation every `update` "
        "call allocates a new state (a second buffer) and copies the old one into it.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
