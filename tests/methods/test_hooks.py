"""The method hook system: composition, wiring into both agents, runs, resume, config errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from everlearn.agents import EnvSpec, make_agent
from everlearn.agents.dqn import DQNConfig
from everlearn.agents.ppo import PPOConfig
from everlearn.core.errors import ConfigError
from everlearn.core.replay import Transition
from everlearn.methods import METHODS, Hooks, Method
from everlearn.runs.checks import agents_for
from everlearn.runs.config import build_config
from everlearn.runs.plan import make_plan
from everlearn.runs.run import resume_run, start_run

SPEC = EnvSpec(obs_dim=4, num_actions=2, num_tasks=3)
PPO_SMALL = PPOConfig(num_envs=2, num_steps=8, num_epochs=1, num_minibatches=2,
                      hidden_sizes=(8,))
DQN_SMALL = DQNConfig(train_every=8, gradient_steps=2, batch_size=4, buffer_size=64,
                      learning_starts=0, hidden_sizes=(8,))


def _batch(agent, key) -> Transition:
    T, E = agent.rollout_length, agent.num_envs
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (T, E, SPEC.obs_dim))
    return Transition(obs=obs, action=jax.random.randint(k2, (T, E), 0, 2),
                      reward=jax.random.normal(k3, (T, E)), terminated=jnp.zeros((T, E), bool),
                      truncated=jnp.zeros((T, E), bool), next_obs=obs,
                      extras={"log_prob": jnp.full((T, E), -0.7), "value": jnp.zeros((T, E))})


def _recorder(name: str, log: list) -> Method:
    """A method that records (at trace time) which hooks the agent called, with what."""

    def observe(state, data, task, key):
        log.append(("observe", name, sorted(data)))
        return {"seen": state["seen"] + data["obs"].shape[0]}

    def on_task_end(state, params, task, key):
        log.append(("on_task_end", name))
        return state, params

    def extra_loss(state, params, minibatch):
        log.append(("extra_loss", name))
        return jnp.zeros(())

    return Method(name, init=lambda key, params: {"seen": jnp.zeros((), jnp.int32)},
                  observe=observe, on_task_end=on_task_end, extra_loss=extra_loss)


@pytest.mark.parametrize("agent_name,config", [("ppo", PPO_SMALL), ("dqn", DQN_SMALL)])
def test_agents_call_every_hook_in_order(agent_name, config):
    log: list = []
    agent = make_agent(agent_name, config, SPEC,
                       methods=[lambda view: _recorder("a", log), lambda view: _recorder("b", log)])
    state = agent.init(jax.random.PRNGKey(0))
    assert int(state.methods["task"]) == 0
    state, metrics = agent.update(state, _batch(agent, jax.random.PRNGKey(1)),
                                  jax.random.PRNGKey(2))
    assert int(state.methods["a"]["seen"]) == agent.steps_per_update
    assert [e for e in log if e[0] == "observe"][0][2][0] == "action"
    observed = [e[1] for e in log if e[0] == "observe"]
    assert observed == ["a", "b"]  # composed in the order given
    assert {e[1] for e in log if e[0] == "extra_loss"} == {"a", "b"}
    assert "method_loss" in metrics
    state = agent.task_boundary(state, jnp.int32(0), jnp.int32(1), jax.random.PRNGKey(3))
    assert int(state.methods["task"]) == 1
    assert [e[1] for e in log if e[0] == "on_task_end"] == ["a", "b"]


def test_optax_links_get_their_own_state_and_the_loss_gradient():
    seen = {}

    def update(updates, state, params=None, *, method_state, loss_grad, **extra):
        seen["state"] = method_state
        seen["grad"] = loss_grad
        return jax.tree.map(lambda u: 0.0 * u, updates), state  # freeze everything

    freeze = optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)
    method = Method("freeze", init=lambda key, params: {"mine": jnp.ones(())},
                    update_transformation=freeze)
    agent = make_agent("ppo", PPO_SMALL, SPEC, methods=[lambda view: method])
    state = agent.init(jax.random.PRNGKey(0))
    new_state, _ = agent.update(state, _batch(agent, jax.random.PRNGKey(1)),
                                jax.random.PRNGKey(2))
    assert set(seen["state"]) == {"mine"}
    assert callable(seen["grad"])
    for old, new in zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params)):
        np.testing.assert_array_equal(old, new)  # the link sits after Adam: nothing moves


def test_hooks_reject_a_method_listed_twice():
    with pytest.raises(ValueError, match="twice"):
        Hooks(None, [Method("x"), Method("x")])


# -- runs with methods ------------------------------------------------------------------------
SMALL = ["steps_per_task=512", "evals_per_task=2", "eval_episodes=2", "checkpoint_every=1",
         "ppo.num_envs=4", "ppo.num_steps=32", "ppo.num_epochs=2"]


def _run_config(methods, *extra, agent="ppo", scenario="cartpole-contexts"):
    sets = SMALL if agent == "ppo" else [s for s in SMALL if not s.startswith("ppo.")]
    return build_config(None, {"scenario": scenario, "agent": agent, "seeds": "0-1",
                               "methods": methods}, [*sets, *extra])


def _evals(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_method_that_adds_nothing_leaves_the_run_unchanged(tmp_path):
    plain = start_run(_run_config([]), tmp_path / "plain", quiet=True)
    zero = start_run(_run_config(["l2_init"], "l2_init.strength=0"), tmp_path / "zero",
                     quiet=True)
    returns = lambda d: [e["returns"] for e in _evals(d)]  # noqa: E731
    assert returns(plain) == returns(zero)


def test_resumed_run_with_methods_finishes_identically(tmp_path):
    config = _run_config(["l2_init", "multi_head"])
    whole = start_run(config, tmp_path / "whole", quiet=True)
    killed = start_run(config, tmp_path / "killed", quiet=True, stop_after=3)
    resume_run(killed, quiet=True)
    assert _evals(whole) == _evals(killed)
    whole_summary = json.loads((whole / "summary.json").read_text())
    killed_summary = json.loads((killed / "summary.json").read_text())
    assert whole_summary["per_seed"] == killed_summary["per_seed"]


def test_method_config_errors_are_one_clear_line():
    with pytest.raises(ConfigError, match="unknown method 'ewk'; choose from: .*l2_init"):
        _run_config(["ewk"])
    with pytest.raises(ConfigError, match="unknown config key 'l2_init.strenght'"):
        _run_config(["l2_init"], "l2_init.strenght=1")
    with pytest.raises(ConfigError, match="list a method twice"):
        _run_config(["l2_init", "l2_init"])


def test_methods_that_need_what_a_scenario_hides_are_refused(monkeypatch):
    import everlearn.runs.checks as run_module  # where the plan checks the scenario
    from everlearn.scenarios import get_scenario
    from everlearn.scenarios.resolve import ResolvedScenario

    def hidden(name):
        shown = get_scenario(name)
        return type(shown)(shown.name, shown.description, shown.tasks, shown.steps_per_task,
                           boundaries_visible=False, task_ids_visible=False)

    # the hidden CartPole, or for continuous agents the hidden Pendulum, whatever name is asked
    hidden_cartpole, hidden_pendulum = hidden("cartpole-contexts"), hidden("pendulum-contexts")
    def resolving_to(scenario):
        return lambda name, backend: ResolvedScenario(scenario, backend)

    monkeypatch.setattr(run_module, "resolve", resolving_to(hidden_cartpole))
    with pytest.raises(ConfigError, match="'multi_head' needs task ids"):
        make_plan(_run_config(["multi_head"]))
    needing = [n for n, e in METHODS.items() if e.needs_boundaries]
    for name in needing:
        agent = next(a for a in ("ppo", "dqn", "sac") if a in agents_for(METHODS[name]))
        scenario = hidden_pendulum if agent == "sac" else hidden_cartpole
        monkeypatch.setattr(run_module, "resolve", resolving_to(scenario))
        with pytest.raises(ConfigError, match=f"'{name}' needs task boundaries"):
            make_plan(_run_config([name], agent=agent, scenario=scenario.name))
    monkeypatch.setattr(run_module, "resolve", resolving_to(hidden_cartpole))
    make_plan(_run_config(["l2_init"]))  # needs neither


def test_a_method_for_other_agents_is_refused():
    only_dqn = [n for n, e in METHODS.items() if "ppo" not in agents_for(e)]
    for name in only_dqn:
        with pytest.raises(ConfigError, match=f"method '{name}' does not apply to agent 'ppo'"):
            make_plan(_run_config([name]))
