"""Throughput benchmark: where the time goes per env step on the Gymnasium path.

`gym_breakdown` runs one more `train_segment` call with the trainer's own jitted `act` and
`update` and its vector env's `step` wrapped in timers, and returns seconds per env step by part
(act / env / update / rest / total).
"""

from __future__ import annotations

import time


def gym_breakdown(trainer, state) -> dict[str, float]:
    """Seconds per env step spent acting (the jitted `act` call until its action is on the
    host), stepping the vector env, and in `update` calls (storing + gradient steps, until the
    new state is ready), over one more `train_segment` call; "rest" is the remainder (the Python
    loop, host-side rollout buffers, metrics). Wraps the trainer's own compiled functions and
    env, so the numbers are those of the loop that was timed."""
    import jax

    spent = {"act": 0.0, "env": 0.0, "update": 0.0}

    def timed(name, fn, ready):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            ready(out)
            spent[name] += time.perf_counter() - t0
            return out
        return wrapper

    def timed_actor(*args):
        reads, act, action_spec = actor(*args)
        return reads, timed("act", act, lambda out: jax.block_until_ready(out[0])), action_spec

    envs = trainer._vector_env(trainer._envs, 0, trainer.agent.num_envs)
    actor, update = trainer._actor, trainer._update
    trainer._actor = timed_actor
    trainer._update = timed("update", update, lambda out: jax.block_until_ready(out[0]))
    envs.step = timed("env", envs.step, lambda out: None)
    try:
        t0 = time.perf_counter()
        state, _ = trainer.train_segment(state, 0)
        jax.block_until_ready(state)
        total = time.perf_counter() - t0
    finally:
        del trainer._actor  # back to the class's method
        trainer._update = update
        del envs.step
    steps = trainer.iterations * trainer.agent.steps_per_update
    out = {k: v / steps for k, v in spent.items()}
    out["rest"] = total / steps - sum(out.values())
    out["total"] = total / steps
    return out
