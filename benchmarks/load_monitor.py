"""Throughput benchmark: waiting, before each row, while other processes keep the machine busy.

`wait_for_others` samples the cores other processes keep busy (`machine.OtherLoad`) and waits
while that is above `QUIET["max_cores"]` (set from the command line in `throughput.main`);
`log` is the timestamped progress line the benchmark prints.
"""

from __future__ import annotations

import time

from machine import OtherLoad


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# Before each row: wait (at most `waits` times) while other processes keep more than
# `max_cores` busy (sampled over one second with `OtherLoad`; this process is idle then, so the
# reading is theirs alone). Set from the command line in `main`.
QUIET = {"max_cores": 0.3, "wait_s": 30.0, "waits": 20}


def wait_for_others() -> None:
    for attempt in range(QUIET["waits"] + 1):
        with OtherLoad() as others:
            time.sleep(1.0)
        if others.cores <= QUIET["max_cores"]:
            return
        if attempt == QUIET["waits"]:
            log(f"[load] other processes use {others.cores:.2f} cores: measuring anyway")
            return
        log(f"[load] other processes use {others.cores:.2f} cores > {QUIET['max_cores']}: "
            f"waiting {QUIET['wait_s']:.0f}s ({attempt + 1}/{QUIET['waits']})")
        time.sleep(QUIET["wait_s"])
