"""Valid ranges of config values as pydantic types, so that each config class states in one
word what a value may be, and a value outside it is refused with the key, the value and the
range (`everlearn.runs.config` turns pydantic's error into that one line). No config value may
be NaN or infinite (checked once for every key in `runs/config.py`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Count = Annotated[int, Field(ge=1)]  # env counts, batch sizes, steps between things
NonNegativeCount = Annotated[int, Field(ge=0)]
LearningRate = Annotated[float, Field(gt=0.0)]
Positive = Annotated[float, Field(gt=0.0)]  # clip ranges, gradient norms, widths
NonNegative = Annotated[float, Field(ge=0.0)]  # loss coefficients, noise scales
Discount = Annotated[float, Field(gt=0.0, le=1.0)]  # gamma; 1: undiscounted
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]  # probabilities, epsilons, lambdas
PolyakStep = Annotated[float, Field(gt=0.0, le=1.0)]  # 1: copy the online network
# Hidden layer widths, first layer first; methods and diagnostics need at least one layer.
HiddenSizes = Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1)]
# Seeds are uint32 keys (`jax.random.PRNGKey`).
SEED_MAX = 2**32 - 1
# Env steps are counted in int32 inside the compiled loops (schedules, buffers).
STEPS_MAX = 2**31 - 1
