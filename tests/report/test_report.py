"""The HTML report, built from a synthetic run directory (no training: fast)."""

from __future__ import annotations

from pathlib import Path

from everlearn.report import write_report
from synthetic_runs import TASKS, make_run_dir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


def test_report_of_a_finished_run(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run")
    path = write_report(run_dir)

    assert path == run_dir / "report.html" and path.is_file()
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 2  # performance curves and matrix
    for name in TASKS:
        assert name in text
    assert "0.679" in text and "[0.610, 0.700]" in text  # IQM and CI, 3 decimals
    assert "Run not finished" not in text
    assert "scenario: cartpole-trio" in text  # the config
    assert "<script" not in text and "http://" not in text and "https://" not in text
    for name in ("performance.png", "matrix.png"):
        assert _is_png(run_dir / "figures" / name)
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))


def test_report_of_an_unfinished_run(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", finished=False)
    # Cut the log in the middle of task 2, as a killed run would leave it.
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join(lines[:5]) + "\n")

    text = write_report(run_dir).read_text()

    assert "Run not finished" in text
    assert "data:image/png;base64," in text
    for name in TASKS:
        assert name in text
    assert _is_png(run_dir / "figures" / "performance.png")
    assert _is_png(run_dir / "figures" / "matrix.png")  # the rows of finished tasks
