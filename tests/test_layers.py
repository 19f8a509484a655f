"""The package's structure: every module imports on its own, in a fresh interpreter, so that no
module works only because another happened to be imported first (a circle hidden by import
order); the layers themselves are `lint-imports`' contract in pyproject.toml, which
`make test` runs before the suite."""

import pkgutil
import subprocess
import sys

import everlearn

MODULES = sorted(m.name for m in pkgutil.walk_packages(everlearn.__path__, "everlearn."))


def test_every_module_imports_on_its_own():
    # One interpreter per module would cost ~90 processes of JAX start-up; instead one child
    # process imports each module with every everlearn module forgotten first.
    script = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "everlearn" or m.startswith("everlearn.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {type(e).__name__}: {e}")
print("\\n".join(failed))
"""
    out = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True,
                         text=True, check=True, timeout=300)
    assert out.stdout.strip() == "", out.stdout
    assert len(MODULES) > 80  # the walk found the package

