"""Live logs for TensorBoard (`--tensorboard`): every evaluation's numbers as event files in
`<run dir>/tensorboard/`, through tensorboardX (`pip install 'everlearn[tensorboard]'`).

Scalars, at the env step (per seed) of the evaluation, as means over seeds:
`performance/<task>` (normalised return), `performance/mean` (clipped to [0, 1], as the
metrics are), `train/<loss>` and `diagnostics/<name>` (dormant neurons, effective rank, ...).
A resumed run adds an event file of its own (named by the segment it starts from); TensorBoard
shows the later point of a repeated step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from everlearn.core.errors import ConfigError


def require_tensorboard() -> None:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise ConfigError("--tensorboard needs tensorboardX: pip install "
                          "'everlearn[tensorboard]'") from None


def _seed_mean(values: Any) -> float | None:
    array = np.asarray([np.nan if v is None else v for v in np.ravel(values)], dtype=float)
    finite = array[np.isfinite(array)]
    return float(finite.mean()) if finite.size else None


class TensorBoardLog:
    def __init__(self, run_dir: Path, task_names: list[str], start: int):
        from tensorboardX import SummaryWriter

        # Event files are named by the second they open in: the segment a run (or a resume)
        # starts from keeps a quick resume from overwriting the file before it.
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"),
                                    filename_suffix=f".from-segment-{start}")
        self.task_names = task_names

    def write(self, record: dict[str, Any]) -> None:
        """One evaluation's line of metrics.jsonl."""
        step = record["step"]
        normalised = np.asarray(record["normalised"], dtype=float)  # [seed, task]
        for task, name in enumerate(self.task_names):
            self.writer.add_scalar(f"performance/{name}", float(normalised[:, task].mean()), step)
        self.writer.add_scalar("performance/mean", float(np.clip(normalised, 0, 1).mean()), step)
        for group in ("train", "diagnostics"):
            for key, values in record.get(group, {}).items():
                value = _seed_mean(values)
                if value is not None:
                    self.writer.add_scalar(f"{group}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
