"""Throughput benchmark tables: the rows as text tables, target verdicts and the results file.

`table` (PPO, DQN), `offpolicy_table` (SAC, TD3) and `breakdown_table` build header and body;
`format_text` prints them, `format_markdown` and `write_results` write
benchmarks/results/throughput.md (machine, versions, load, tables and the exact settings).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from machine import COMMIT_AT_START, machine_description, nproc, versions
from throughput_harness import (
    EVAL_EPISODES,
    LEARNING_STARTS,
    OFFPOLICY,
    PENDULUM,
    SAC_FAST,
    SAC_SB3,
    TD3_FAST,
    TD3_SB3,
    EnvRate,
    Row,
    describe,
)

# Targets (ratios); see benchmarks/README.md.
TARGET_GYM_VS_SB3 = 5.0
TARGET_FUNC_VS_SB3 = 15.0
TARGET_SEEDS_VS_ONE = 1.5
TARGET_SAC_VS_SB3 = 10.0  # SAC, Gymnasium path, with a final return at least SB3's
# "At least SB3's return" allows this fraction of |SB3's return|: converged Pendulum policies
# differ by a point or two on the same ten episodes, in either direction.
RETURN_TOLERANCE = 0.05


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
