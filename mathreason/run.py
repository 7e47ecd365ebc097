"""Entry point: ``python -m mathreason.run [overrides]``.

Hydra composes ``mathreason/conf/`` (config groups model, data, method, reward, logger,
experiment; the group size is one key, ``group_size``), the config is
validated (``mathreason.config.schema``) before anything heavy is imported, then
the job runs (``mathreason.job``). ``--help`` and ``--cfg job`` never import
torch.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from mathreason.records.run_dir import slug

OmegaConf.register_new_resolver("mr_slug", slug, replace=True)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    from mathreason.job import run_job

    return run_job(cfg)


def cli() -> None:
    from mathreason.cli import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
