"""Shared test set-up: reference-run caches go to a temporary folder, never the user's."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EVERLEARN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
