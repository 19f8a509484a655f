"""`write_comparison` on a synthetic sweep directory (no training: fast): numbers against hand
computation, the Markdown table, the errors, and the HTML page in a headless Chromium."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from everlearn.report import comparison, write_comparison
from synthetic_runs import TASKS, make_run_dir

SEEDS = [0, 1, 2, 3]
# Per method: per-seed average performance, forgetting and learning-curve AUCs [seed, task].
# IQM of 4 values = the mean of the middle two (rliable trims a quarter from each end).
RESULTS: dict[str, dict[str, Any]] = {
    "fine-tuning": {"methods": [],
                    "average_performance": [0.1, 0.2, 0.3, 0.4],  # IQM 0.25
                    "forgetting": [0.3, 0.5, 0.4, 0.2],  # IQM 0.35
                    # per-seed means 0.6, 0.2, 0.4, 0.6: IQM 0.5
                    "task_auc": [[0.3, 0.6, 0.9], [0.1, 0.2, 0.3], [0.4, 0.4, 0.4],
                                 [0.5, 0.6, 0.7]]},
    "ewc": {"methods": ["ewc"],
            "average_performance": [0.5, 0.6, 0.7, 0.8],  # better than fine-tuning on every seed
            "forgetting": [0.1, 0.1, 0.2, 0.0],  # IQM 0.1
            "forward_transfer": [0.0, 0.1, -0.1, 0.2],  # IQM 0.05: the only run with references
            "task_auc": [[0.5] * 3] * 4},
    "multi_head+packnet": {"methods": ["multi_head", "packnet"],
                           # beats fine-tuning in 1 + 3 + 2 + 4 = 10 of the 16 seed pairs
                           "average_performance": [0.15, 0.35, 0.25, 0.45],
                           "forgetting": [0.0, 0.0, 0.0, 0.0],
                           "task_auc": [[0.2] * 3] * 4},
}
SCENARIOS = ["cartpole-trio", "acrobot-pair"]
FAILED = ("acrobot-pair", "multi_head+packnet")
ERROR = "training diverged in the segment ending at step 1,536 (task 2 'cartpole-heavy')"
COMMAND = "everlearn sweep grid.yaml --out sweeps/demo"


def _cell_name(scenario: str, label: str) -> str:
    return f"{scenario}-{label.replace('+', '-')}"


def make_sweep_dir(root: Path) -> Path:
    """2 scenarios × 3 methods, 4 seeds; one cell failed. Summaries carry the made-up per-seed
    numbers above and no aggregate, so the comparison computes every IQM itself."""
    cells, states = [], {}
    for scenario in SCENARIOS:
        for label, result in RESULTS.items():
            name = _cell_name(scenario, label)
            cells.append({"name": name, "scenario": scenario, "agent": "dqn",
                          "methods": result["methods"], "label": label, "overrides": {},
                          "seeds": SEEDS})
            run_dir = make_run_dir(root / "cells" / name, seeds=tuple(SEEDS),
                                   finished=(scenario, label) != FAILED)
            if (scenario, label) == FAILED:
                states[name] = {"status": "failed", "attempts": 2, "error": ERROR,
                                "wall_time_s": None}
                continue
            summary = json.loads((run_dir / "summary.json").read_text())
            summary["per_seed"] = {key: result.get(key) for key in
                                   ("average_performance", "forgetting", "forward_transfer")}
            summary["aggregate"] = {}
            summary["task_auc"] = result["task_auc"]
            (run_dir / "summary.json").write_text(json.dumps(summary))
            states[name] = {"status": "done", "attempts": 1, "error": None,
                            "wall_time_s": 100.0 + len(states)}
    (root / "sweep.json").write_text(json.dumps({
        "everlearn_version": "0.1.0", "commit": "abc1234", "created": "2025-01-02T03:04:05+00:00",
        "command": COMMAND, "cells": cells}))
    (root / "status.json").write_text(json.dumps({"cells": states}))
    return root


@pytest.fixture(scope="module", autouse=True)
def _fewer_bootstrap_draws() -> Iterator[None]:
    """200 bootstrap draws instead of 2,000, ten times faster: the tests check only that an
    interval brackets its estimate, or one that every draw gives (P = 1.0)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(comparison, "BOOTSTRAP_REPS", 200)
        yield


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sweep directory with its comparison written (default baseline), for every test that
    only reads it."""
    root = make_sweep_dir(tmp_path_factory.mktemp("sweep") / "demo")
    write_comparison(root)
    return root


def _rows(sweep_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    result = json.loads((sweep_dir / "comparison.json").read_text())
    return {(table["scenario"], row["name"]): row
            for table in result["scenarios"] for row in table["rows"]}


def test_numbers_match_hand_computation(sweep_dir: Path) -> None:
    result = json.loads((sweep_dir / "comparison.json").read_text())
    assert [t["scenario"] for t in result["scenarios"]] == SCENARIOS
    assert [t["baseline"] for t in result["scenarios"]] == ["fine-tuning", "fine-tuning"]
    assert result["scenarios"][0]["tasks"] == TASKS
    assert result["command"] == COMMAND and result["commit"] == "abc1234"
    rows = _rows(sweep_dir)
    assert len(rows) == 5  # 6 cells, one failed

    fine_tuning, ewc, packnet = (rows["cartpole-trio", label] for label in RESULTS)
    expected_iqm = {
        "fine-tuning": {"average_performance": 0.25, "forgetting": 0.35, "learning_speed": 0.5},
        "ewc": {"average_performance": 0.65, "forgetting": 0.1, "forward_transfer": 0.05,
                "learning_speed": 0.5},
        "multi_head+packnet": {"average_performance": 0.3, "forgetting": 0.0,
                               "learning_speed": 0.2},
    }
    for row in (fine_tuning, ewc, packnet):
        for metric, iqm in expected_iqm[row["name"]].items():
            stats = row["metrics"][metric]
            assert stats["iqm"] == pytest.approx(iqm), (row["name"], metric)
            low, high = min(stats["per_seed"]) - 1e-9, max(stats["per_seed"]) + 1e-9
            assert low <= stats["ci_low"] <= iqm + 1e-9 and iqm - 1e-9 <= stats["ci_high"] <= high
    assert fine_tuning["metrics"]["forward_transfer"] is None  # no reference runs
    assert fine_tuning["wall_time_s"] == 100.0

    assert ewc["probability_of_improvement"] == {"probability": 1.0, "ci_low": 1.0,
                                                 "ci_high": 1.0}
    assert packnet["probability_of_improvement"]["probability"] == pytest.approx(10 / 16)
    assert fine_tuning["probability_of_improvement"]["probability"] == 0.5

    assert ("acrobot-pair", "multi_head+packnet") not in rows
    assert result["unfinished"] == [{
        "cell": _cell_name(*FAILED), "scenario": "acrobot-pair", "agent": "dqn",
        "label": "multi_head+packnet", "status": "failed", "attempts": 2, "error": ERROR}]


def test_markdown_table(sweep_dir: Path) -> None:
    text = (sweep_dir / "comparison.md").read_text()
    lines = text.splitlines()
    assert lines[0] == f"# Comparison of `{sweep_dir}`"
    assert f"- command: `{COMMAND}`" in lines and "- commit: `abc1234`" in lines
    header = ("| method | average performance | forgetting | forward transfer "
              "| learning speed (AUC) | P(improvement over baseline) | wall s |")
    assert lines.count(header) == 2  # one table per scenario
    table = lines[lines.index(header) + 2:lines.index(header) + 5]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert [c[0] for c in cells] == ["fine-tuning (baseline)", "ewc", "multi_head+packnet"]
    fine_tuning, ewc, packnet = cells
    assert fine_tuning[1].startswith("0.250 [") and fine_tuning[3] == "—"
    assert fine_tuning[5:] == ["0.500", "100"]  # the baseline against itself, no interval
    assert ewc[3].startswith("0.050 [")
    assert ewc[5] == "1.000 [1.000, 1.000]"
    assert packnet[5].startswith("0.625 [")
    assert (f"| {_cell_name(*FAILED)} | acrobot-pair | multi_head+packnet | failed | 2 | "
            f"{ERROR} |") in lines


def test_a_named_baseline(tmp_path: Path) -> None:
    root = make_sweep_dir(tmp_path / "demo")
    write_comparison(root, baseline="multi_head+packnet")
    rows = _rows(root)
    improvement = {name: row["probability_of_improvement"] for (scenario, name), row
                   in rows.items() if scenario == "cartpole-trio"}
    assert improvement["multi_head+packnet"]["probability"] == 0.5
    assert improvement["fine-tuning"]["probability"] == pytest.approx(6 / 16)  # 16 − 10 pairs
    assert improvement["ewc"]["probability"] == 1.0
    # It failed in acrobot-pair: no probability there.
    assert rows["acrobot-pair", "ewc"]["probability_of_improvement"] is None
    text = (root / "comparison.md").read_text()
    assert "| multi_head+packnet (baseline) |" in text
    assert "the baseline did not finish in this scenario" in text


def test_errors_are_one_line(tmp_path: Path) -> None:
    root = make_sweep_dir(tmp_path / "demo")
    with pytest.raises(ValueError) as error:
        write_comparison(root, baseline="sgd")
    assert str(error.value) == ("unknown baseline 'sgd'; the rows are: 'fine-tuning', 'ewc', "
                                "'multi_head+packnet'")
    assert not (root / "comparison.json").exists()

    run_dir = make_run_dir(tmp_path / "a-run")
    with pytest.raises(ValueError, match="is not a sweep directory: it has no sweep.json"):
        write_comparison(run_dir)
    with pytest.raises(ValueError, match="is not a sweep directory: no such directory"):
        write_comparison(tmp_path / "missing")
    (run_dir / "sweep.json").write_text(json.dumps({"cells": [{"name": "x", "agent": "dqn"}]}))
    with pytest.raises(ValueError, match="sweep.json: cell 1 has no scenario, label$"):
        write_comparison(run_dir)

    for summary in root.glob("cells/*/summary.json"):
        summary.unlink()
    with pytest.raises(ValueError) as error:
        write_comparison(root)
    assert str(error.value) == f"{root}: no cell has finished yet (6 cells: 5 done, 1 failed)"


def test_several_agents_name_their_rows(tmp_path: Path) -> None:
    root = make_sweep_dir(tmp_path / "demo")
    sweep = json.loads((root / "sweep.json").read_text())
    sweep["cells"][1]["agent"] = "ppo"  # cartpole-trio ewc
    (root / "sweep.json").write_text(json.dumps(sweep))
    write_comparison(root)
    names = [name for scenario, name in _rows(root) if scenario == "cartpole-trio"]
    assert names == ["dqn/fine-tuning", "ppo/ewc", "dqn/multi_head+packnet"]
    with pytest.raises(ValueError, match="unknown baseline 'ewc'; the rows are: "
                                         "'dqn/fine-tuning', 'ppo/ewc'"):
        write_comparison(root, baseline="ewc")


def _render_in_chromium(page: Path) -> tuple[list[int], list[bool]]:
    """The row count of every table, and for every image whether it decoded, of `page` opened
    in headless Chromium."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not Path("/usr/bin/chromedriver").is_file():
        pytest.skip("no /usr/bin/chromedriver (.ci/run installs chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"),
                                  options=options)
        try:
            driver.get(page.resolve().as_uri())
            rows = driver.execute_script(
                "return Array.from(document.querySelectorAll('table'), t => t.rows.length)")
            images = driver.execute_script(
                "return Array.from(document.images, i => i.complete && i.naturalWidth > 0)")
        finally:
            driver.quit()
    return rows, images


def test_html_renders_in_chromium(sweep_dir: Path) -> None:
    """Every table has its rows and every embedded figure decodes, in a real browser."""
    text = (sweep_dir / "comparison.html").read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    rows, images = _render_in_chromium(sweep_dir / "comparison.html")
    # Per scenario its rows and a header; the unfinished cells; the definitions (6 of them).
    assert rows == [1 + 3, 1 + 2, 1 + 1, 6]
    # Per scenario a performance profile and a matrix per finished cell.
    assert images == [True] * (1 + 3 + 1 + 2)


COMMITTED_SWEEP = Path(__file__).with_name("data") / "small_sweep"


def test_compare_on_the_committed_small_sweep(tmp_path: Path) -> None:
    """`everlearn compare` on a real sweep directory kept in the repository (three cells of
    `everlearn sweep`, checkpoints and reports left out): the three files, and the page in
    Chromium."""
    from typer.testing import CliRunner

    from everlearn.cli import app

    sweep = tmp_path / "small_sweep"
    shutil.copytree(COMMITTED_SWEEP, sweep)
    result = CliRunner().invoke(app, ["compare", str(sweep)])
    assert result.exit_code == 0, result.output
    assert result.output.split() == [str(sweep / f"comparison.{ext}")
                                     for ext in ("json", "md", "html")]
    comparison = json.loads((sweep / "comparison.json").read_text())
    (table,) = comparison["scenarios"]
    assert [row["name"] for row in table["rows"]] == ["fine-tuning", "ewc",
                                                      "multi_head+packnet"]
    assert table["baseline"] == "fine-tuning"
    for row in table["rows"]:  # the numbers are the cells' own summaries
        summary = json.loads((sweep / "cells" / row["cell"] / "summary.json").read_text())
        assert row["metrics"]["average_performance"]["iqm"] == pytest.approx(
            summary["aggregate"]["average_performance"]["iqm"])
    assert "| multi_head+packnet |" in (sweep / "comparison.md").read_text()
    rows, images = _render_in_chromium(sweep / "comparison.html")
    assert rows == [1 + 3, 6]  # one scenario's table, the definitions
    assert images == [True] * (1 + 3)  # its performance profile and three matrices
