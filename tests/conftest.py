"""Shared fixtures: the real data beside the checkout and the cached tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SHARED_DATA


def pytest_configure(config):
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA} (checkout needs ../shared beside it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tiny-model cache per test session (the build is shared by every test),
    or MATHREASON_CACHE_DIR when set."""
    env = os.environ.get("MATHREASON_CACHE_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("cache")


