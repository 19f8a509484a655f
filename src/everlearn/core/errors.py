"""The errors a user sees as one line: a config or input that cannot run (`ConfigError`), a
run that stopped before its end (`RunStopped`), an env that raised (`EnvFailed`)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-facing configuration problem; the message is one line."""


class RunStopped(RuntimeError):
    """The run stopped before its end; `exit_code` is what the command line exits with."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class EnvFailed(RuntimeError):
    """A task's env raised; `step` counts env steps per seed from the segment's start
    (None: during an evaluation)."""

    def __init__(self, env: str, task: str, step: int | None, error: BaseException):
        super().__init__(f"env '{env}' of task '{task}' raised {type(error).__name__}: "
                         f"{' '.join(str(error).split())}")
        self.step = step

