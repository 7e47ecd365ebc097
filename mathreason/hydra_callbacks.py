"""Hydra callbacks: validate the composed config before any job starts.

``on_run_start`` runs before Hydra creates the run directory, so a bad
override leaves nothing behind; ``on_multirun_start`` checks every job of a
sweep before the launcher submits any of them.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mathreason.cli import fail
from mathreason.errors import UserError


class ValidateConfig(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pathlib import Path

        from mathreason.run_dir import check_reuse
        from mathreason.schema import validate

        try:
            typed = validate(config)
            check_reuse(Path(config.hydra.run.dir), typed)
        except UserError as err:
            fail(err)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mathreason.sweep_check import validate_sweep

        try:
            validate_sweep(config)
        except UserError as err:
            fail(err)
