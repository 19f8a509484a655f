# One-command set-up: every target creates .venv and installs everlearn into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# A venv made before the mujoco==3.3.0 pin holds MuJoCo 4, split into mujoco-core and
	@# mujoco-studio; installing 3.3.0 over it leaves those two behind and breaks `import mujoco`.
	if $(BIN)/python -m pip show -q mujoco-core >/dev/null 2>&1; then \
		$(BIN)/python -m pip uninstall -q -y mujoco mujoco-core mujoco-studio; fi
	@# uv resolves the same versions as pip and installs them in ~25 s instead of ~70 s
	@# (2026-12-01, this 2-core machine). Byte-compiled at install, as pip does: without .pyc files (and
	@# with PYTHONDONTWRITEBYTECODE set) every process would compile JAX's sources on import.
	@# uv reads no pip configuration: where it cannot install (a private index, a TLS proxy),
	@# pip does. pip stays in the venv: the bench target needs it for torch.
	$(BIN)/python -m pip install -q 'uv>=0.13,<0.14'
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test,ray]' \
		|| $(BIN)/python -m pip install -q -e '.[test,ray]'
	touch $@

# The main job: PPO on the default continual scenario, 5 vmapped seeds, with the
# single-task reference runs that forward transfer needs; ends with the report path.
run: $(BIN)/.installed
	$(BIN)/everlearn run --scenario cartpole-contexts --agent ppo --seeds 0-4 --reference

# Two worker processes (pytest-xdist), a test file each at a time: compilation is mostly one
# thread, so two files compile side by side; a file's tests share their compiled programs.
# The heaviest files go first, in the order tests/conftest.py gives (not xdist's by test count),
# so that both workers finish together. A learning test also runs on one XLA device
# (tests/agents/test_one_device.py). First the layers (pyproject.toml's import-linter contract).
test: $(BIN)/.installed
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# Benchmarks need the baselines: torch==2.13.0 (CPU build) goes in before stable-baselines3
# and d3rlpy.
$(BIN)/.bench: $(BIN)/.installed
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[bench]'
	@# d3rlpy 2.8.1 pins gymnasium==1.0.0; its algorithms work with everlearn's gymnasium and
	@# are used on datasets only (benchmarks/offline.py), so it goes in without its pins.
	$(BIN)/python -m pip install -q --no-deps d3rlpy==2.8.1
	touch $@

bench: $(BIN)/.bench
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV)
