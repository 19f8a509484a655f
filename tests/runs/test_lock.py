"""One writer per run directory (issue 15, part 3): `run` and `resume` hold an advisory lock;
a second writer gets one line naming the holder; a killed holder's lock is free at once."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from everlearn.runs.lock import LOCK_NAME, RunDirectoryBusy, run_lock
from everlearn.runs.run import resume_run

HOLD = """
import sys, time
from everlearn.runs.lock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_resume_while_another_process_writes_is_refused_naming_it(tmp_path: Path):
    (tmp_path / "config.yaml").write_text("scenario: cartpole-contexts\n")
    with run_lock(tmp_path):
        with pytest.raises(RunDirectoryBusy, match=f"process {os.getpid()}") as info:
            resume_run(tmp_path, quiet=True)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, "config.yaml"]


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryBusy, match=f"process {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(tmp_path):  # the kernel released it with the process
        assert (tmp_path / LOCK_NAME).read_text() == str(os.getpid())
