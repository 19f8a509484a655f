"""The `everlearn` command line: list, run, resume, report, sweep, compare, collect,
check-env."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

err = Console(stderr=True)


class _OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, an option without its value, a bad path) in one line,
    as every other error: Click would draw a box of several lines."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            sys.exit(1)
        except Exception as e:
            # Click's usage errors, known by their interface (Typer vendors its own Click).
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            if type(e).__name__ == "NoArgsIsHelpError":  # `everlearn` alone: the help
                e.show()
            else:
                _print_error(f"{e.format_message()} (see --help)")
            sys.exit(e.exit_code)
        sys.exit(code or 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_OneLineErrors,
                  help="Continual reinforcement learning: run agents through changing tasks.")


def _print_error(message: str) -> None:
    from rich.markup import escape  # user input may hold [brackets] and newlines

    line = escape(message.replace("\r", "\\r").replace("\n", "\\n"))
    err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)


def _fail(message: str, exit_code: int = 2) -> None:
    """One line on stderr, then exit: 2 for bad input, 1 for a run that stopped, 130 for an
    interrupt."""
    _print_error(message)
    raise typer.Exit(exit_code)


def _interrupted(run_dir: Path | None) -> None:
    where = f"'everlearn resume {run_dir}' finishes it" if run_dir else "nothing was written"
    _fail(f"interrupted; {where}", 130)


@app.command("list")
def list_cmd() -> None:
    """Show the scenarios (built-in and installed), agents and continual-learning methods."""
    from rich.markup import (
        escape,  # descriptions from other packages may contain [brackets]
    )

    from everlearn.agents import AGENTS
    from everlearn.methods import METHODS
    from everlearn.runs.checks import agents_for
    from everlearn.scenarios import get_scenario
    from everlearn.scenarios.registry import scenario_sources

    sources = scenario_sources()
    # The source column only where something is not built in (an entry point's
    # `module:object (distribution)` is long); the env heads the description, which wraps,
    # so the table fits an 80-column terminal.
    show_source = any(source != "built-in" for source in sources.values())
    table = Table(title="scenarios")
    table.add_column("name", no_wrap=True)
    if show_source:
        table.add_column("source", overflow="fold")
    for col in ("tasks × steps", "boundaries"):
        table.add_column(col, no_wrap=True)
    table.add_column("env: description", min_width=20, ratio=1)
    for name, source in sources.items():
        shown = [name, source] if show_source else [name]
        try:
            s = get_scenario(name)
        except ValueError as e:  # a broken installed package must not hide the other scenarios
            table.add_row(*shown, "-", "-", f"[red]cannot load:[/] {escape(str(e))}")
            continue
        table.add_row(*shown, f"{s.num_tasks} × {s.steps_per_task:,}",
                      "visible" if s.boundaries_visible else "hidden",
                      f"[bold]{escape(s.env)}[/]: {escape(s.description)}")
    Console().print(table)
    Console().print("agents: " + ", ".join(AGENTS))
    methods = Table(title="methods (--method NAME, settings: --set NAME.key=value)")
    for col in ("name", "agents", "needs"):
        methods.add_column(col, no_wrap=True)
    methods.add_column("what it does")
    for name, entry in METHODS.items():
        needs = [need for need, flag in (("task boundaries", entry.needs_boundaries),
                                         ("task ids", entry.needs_task_ids)) if flag]
        methods.add_row(name, ", ".join(agents_for(entry)), ", ".join(needs) or "-", entry.summary)
    Console().print(methods)
    from everlearn.runs.config import preset_names

    Console().print("presets (--preset NAME): " + ", ".join(preset_names()))


@app.command()
def run(
    scenario: Annotated[Optional[str], typer.Option(help="Scenario name (see 'everlearn list').")] = None,
    agent: Annotated[Optional[str], typer.Option(help="Agent: ppo, dqn (discrete actions), sac, td3 (continuous); offline: td3_bc, iql, cql (continuous), cql_dqn (discrete), or any off-policy agent on a scenario of datasets.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, e.g. 0-4 or 0,3,7.")] = None,
    backend: Annotated[Optional[str], typer.Option(help="jax (functional) or gymnasium; default: jax where the scenario has a functional env.")] = None,
    method: Annotated[Optional[list[str]], typer.Option(help="Continual-learning method; repeat to compose (see 'everlearn list').")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override: key=value (e.g. ppo.learning_rate=3e-4).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML config file.")] = None,
    preset: Annotated[Optional[str], typer.Option(help="A published protocol's settings, under --config, flags and --set (see 'everlearn list').")] = None,
    reference: Annotated[Optional[bool], typer.Option("--reference/--no-reference", help="Also run single-task references (for forward transfer).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<scenario>-<agent>-<backend>-<time>).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the config and the scenario, print the resolved config, and exit without writing anything.")] = False,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Also write TensorBoard event files into <run dir>/tensorboard (needs the tensorboard extra).")] = False,
    record: Annotated[Optional[str], typer.Option(help="Record every transition of the run as Minari datasets NAMESPACE/task<k>-<task>-seed<S>-v0, one per online task and seed (docs/offline.md).", metavar="NAMESPACE")] = None,
) -> None:
    """Run an agent through a scenario; writes a run directory ending with a report."""
    from everlearn.core.errors import ConfigError, RunStopped
    from everlearn.runs.config import build_config

    try:
        cfg = build_config(config, {"scenario": scenario, "agent": agent, "seeds": seeds,
                                    "backend": backend, "reference": reference,
                                    "methods": method or None}, set_, preset)
        from everlearn.runs.checks import check_memory
        from everlearn.runs.plan import budget_note, make_plan
        from everlearn.runs.run import make_recorder, start_run

        if dry_run:
            import yaml

            plan = make_plan(cfg)
            check_memory(plan)
            if record is not None:
                make_recorder(plan, out or Path("runs"), record).check_new()
            note = budget_note(plan)
            typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False), nl=False)
            if note:
                err.print(note, highlight=False, soft_wrap=True)
            return
        start_run(cfg, out, tensorboard=tensorboard, record=record)
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    except RunStopped as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _interrupted(out)


@app.command()
def resume(run_dir: Path) -> None:
    """Continue a killed run from its last checkpoint."""
    from everlearn.core.errors import ConfigError, RunStopped
    from everlearn.runs.run import resume_run

    try:
        resume_run(run_dir)
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    except RunStopped as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _interrupted(run_dir)


@app.command()
def report(run_dir: Path) -> None:
    """(Re)build the HTML report of a run directory."""
    from everlearn.report import write_report

    if not (run_dir / "metrics.jsonl").is_file():
        _fail(f"'{run_dir}' is not a run directory (no metrics.jsonl)")
    try:
        typer.echo(write_report(run_dir))
    except (ValueError, KeyError, OSError) as e:
        _fail(f"cannot build the report of '{run_dir}': {' '.join(str(e).split())}")


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="A sweep file (YAML): scenarios, agents, methods, seeds, set, grid, sample; see docs/sweeps.md.")],
    out: Annotated[Optional[Path], typer.Option(help="Sweep directory (default sweeps/<sweep file name>); the same command again resumes it.")] = None,
    executor: Annotated[str, typer.Option(help="local (a pool of processes on this machine) or ray (an existing Ray cluster).")] = "local",
    workers: Annotated[Optional[int], typer.Option(help="Local worker processes (default: one per core, at most one per cell).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address, HOST:PORT or auto (with --executor ray).")] = None,
    cpus_per_cell: Annotated[float, typer.Option(help="CPUs a Ray task declares (with --executor ray).")] = 1.0,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Run the valid cells when some are invalid (default: stop before anything runs).")] = False,
    baseline: Annotated[Optional[str], typer.Option(help="The comparison's baseline row (default: fine-tuning).")] = None,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Every cell writes TensorBoard event files (cells/NAME/tensorboard; point TensorBoard at the sweep directory).")] = False,
) -> None:
    """Run a grid of runs (scenarios × agents × methods × settings, seeds vmapped in each) on
    local processes or a Ray cluster; ends with comparison.html/.md/.json in the sweep
    directory. Exit code 1 if a cell failed twice."""
    from everlearn.core.errors import ConfigError
    from everlearn.sweeps import run_sweep

    sweep_dir = out
    try:
        sweep_dir, status = run_sweep(sweep_file, out, executor=executor, workers=workers,
                                      address=address, cpus_per_cell=cpus_per_cell,
                                      skip_invalid=skip_invalid, baseline=baseline,
                                      tensorboard=tensorboard)
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail(f"interrupted; the same command resumes the sweep"
              f"{f' in {sweep_dir}' if sweep_dir else ''}", 130)
    failed = {name: s["error"] for name, s in status.items() if s["status"] == "failed"}
    for name, error in failed.items():  # before the comparison, which may fail on its own
        _print_error(f"cell {name} failed twice: {error}")
    if len(failed) < len(status):
        _write_comparison(sweep_dir, baseline)
    if failed:
        _fail(f"{len(failed)} cell(s) failed twice (above; tracebacks in their "
              f"sweep_error.txt); the same command retries them", 1)


def _write_comparison(sweep_dir: Path, baseline: str | None, out: Path | None = None) -> None:
    from everlearn.report import write_comparison

    try:
        paths = write_comparison(sweep_dir, baseline, out)
    except (ValueError, KeyError, OSError) as e:
        _fail(" ".join(str(e).split()))
    for path in paths:
        typer.echo(path)


@app.command()
def compare(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep directory (everlearn sweep --out).")],
    baseline: Annotated[Optional[str], typer.Option(help="The row the others are compared with (probability of improvement); default: fine-tuning.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="A path stem for the three files instead of SWEEP_DIR/comparison (e.g. results/methods: methods.md, .json, .html).")] = None,
) -> None:
    """Compare the methods of a sweep: comparison.html, comparison.md (a table that pastes into
    a paper) and comparison.json, written into the sweep directory."""
    _write_comparison(sweep_dir, baseline, out)


@app.command()
def collect(
    scenario: Annotated[str, typer.Option(help="The scenario the task belongs to (see 'everlearn list').")],
    task: Annotated[str, typer.Option(help="The task to record on (a task name of the scenario).")],
    name: Annotated[str, typer.Option(help="Minari dataset id to write, e.g. me/pendulum-heavy/medium-v0.")],
    policy: Annotated[str, typer.Option(help="random, a run directory (its newest checkpoint acts), or one of its checkpoint files (<run>/checkpoints/segment-N.msgpack).")] = "random",
    steps: Annotated[int, typer.Option(help="Transitions to record (whole episodes; the last unfinished ones are dropped).")] = 50_000,
    seed: Annotated[int, typer.Option(help="Seed of the recording (env starts, policy noise).")] = 0,
    seed_index: Annotated[int, typer.Option(help="With a run directory: which of its seeds acts (0: its first).")] = 0,
    greedy: Annotated[bool, typer.Option("--greedy", help="With a run directory: act greedily instead of with the exploring policy.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a dataset with this id.")] = False,
) -> None:
    """Record a policy's episodes on a task into a Minari dataset (on the functional path where
    the task has a functional env, else on the Gymnasium path)."""
    from everlearn.core.errors import ConfigError

    try:
        from everlearn.runs.collect import record

        typer.echo(record(scenario, task, name, policy, steps, seed, seed_index, greedy,
                          overwrite))
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; nothing was written", 130)


@app.command("check-env")
def check_env(
    env_or_scenario: Annotated[str, typer.Argument(help="An env (Gymnasium id, module:Class, gymnax id, built-in family) or a scenario name or file: every distinct env of it.")],
    kwargs: Annotated[Optional[list[str]], typer.Option("--kwargs", help="The env's keyword arguments: a JSON object, or key=value (repeat).")] = None,
    import_: Annotated[Optional[list[str]], typer.Option("--import", help="A module to import first (it may register the env id); repeat for several.")] = None,
) -> None:
    """Check that an env works as an everlearn task: Gymnasium's env checker, supported spaces,
    determinism under a seed, episodes that end, observations in their space, finite rewards.
    Exit code 0: OK; 1: problems (each named with its fix); 2: the env cannot be made."""
    from everlearn.scenarios.check import check, parse_kwargs

    try:
        results = check(env_or_scenario, parse_kwargs(kwargs or []), tuple(import_ or ()))
    except ValueError as e:
        _fail(" ".join(str(e).split()))
    for result in results:
        typer.echo("\n".join(result.lines()))
    if not all(result.ok for result in results):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
