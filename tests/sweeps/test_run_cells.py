"""The sweep's retry rule and status file, driven by a scripted executor (no processes, no
training: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from everlearn.sweeps.spec import expand, read_sweep_file
from everlearn.sweeps.sweep import prepare_directory, run_cells


class ScriptedExecutor:
    """Each cell's attempts succeed or fail as `script[name]` says, in order."""

    name, reports_steps, capacity = "scripted", False, 2

    def __init__(self, script: dict[str, list[bool]]):
        self.script = {name: list(outcomes) for name, outcomes in script.items()}
        self.attempts: list[str] = []
        self.in_flight_max = 0
        self._running: list[str] = []

    def describe(self) -> str:
        return "scripted executor"

    def submit(self, cell: dict, run_dir: Path) -> str:
        self.attempts.append(cell["name"])
        self._running.append(cell["name"])
        self.in_flight_max = max(self.in_flight_max, len(self._running))
        return f"{cell['name']}#{len(self.attempts)}"

    def wait(self, handles: list[str], timeout: float) -> list[str]:
        return handles[:1]

    def outcome(self, handle: str, run_dir: Path) -> dict:
        name = handle.split("#")[0]
        self._running.remove(name)
        ok = self.script[name].pop(0)
        return {"ok": ok, "error": None if ok else f"{name} broke", "wall_time_s": 1.0,
                "started_at": 1.0, "ended_at": 2.0}


def test_a_failed_cell_is_retried_once_then_recorded_and_the_sweep_goes_on(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"scenarios": ["cartpole-contexts"], "agents": ["ppo"],
                                    "methods": [[], "ewc", "mas"]}))
    cells = expand(read_sweep_file(path), path)
    names = [c.name for c in cells]
    status = prepare_directory(tmp_path / "out", path.read_text(), cells)
    executor = ScriptedExecutor({names[0]: [True], names[1]: [False, True],
                                 names[2]: [False, False]})
    final = run_cells(tmp_path / "out", cells, status, executor, quiet=True, poll_s=0)
    assert {n: (s["status"], s["attempts"]) for n, s in final.items()} == {
        names[0]: ("done", 1), names[1]: ("done", 2), names[2]: ("failed", 2)}
    assert final[names[2]]["error"] == f"{names[2]} broke"
    assert final[names[1]]["error"] is None  # its retry succeeded
    assert executor.attempts.count(names[2]) == 2 and executor.in_flight_max <= 2
    written = json.loads((tmp_path / "out" / "status.json").read_text())
    assert written["cells"] == final and written["executor"] == "scripted executor"
