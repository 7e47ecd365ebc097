"""``python -m mathreason.prebuild``: build the tiny warm start a config composes,
once and with every core, before a sweep's jobs need it (each SLURM job gets one
CPU; without this, the first would build it single-threaded while the others wait)."""

from __future__ import annotations

import logging
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """``python -m mathreason.prebuild [--config-dir D --config-name N] [key=value ...]``:
    build (once) the tiny model that config composes, with every core, and
    print its directory. A sweep's SLURM jobs get one CPU each; building it
    first spares them the wait on one single-threaded build."""
    import argparse

    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mathreason.errors import UserError
    from mathreason.one_line import fail

    parser = argparse.ArgumentParser(prog="python -m mathreason.prebuild", description="Build (once) the tiny model a config composes, with every core; print its directory.")
    parser.add_argument("--config-dir", default=None, help="a directory of primary configs, as for mathreason.run")
    parser.add_argument("--config-name", default="config")
    parser.add_argument("overrides", nargs="*", help="key=value, as for mathreason.run")
    args = parser.parse_args(argv)
    try:
        if args.config_dir:
            with initialize_config_dir(str(Path(args.config_dir).resolve()), version_base="1.3"):
                cfg = compose(args.config_name, overrides=[*args.overrides, "hydra.searchpath=[pkg://mathreason.conf]"])
        else:
            with initialize_config_module("mathreason.conf", version_base="1.3"):
                cfg = compose(args.config_name, overrides=args.overrides)
        if cfg.model.get("tiny") is None:
            raise UserError(f"model={cfg.model.name}: not the tiny model; nothing to build")
        from mathreason.console import TqdmHandler, quiet_libraries

        handler = TqdmHandler()  # the build's phase lines and one progress bar, as in a run
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("mathreason").addHandler(handler)
        logging.getLogger("mathreason").setLevel(logging.INFO)
        quiet_libraries()  # no per-operation dataset bars

        from mathreason.models.tiny import ensure_tiny_model

        print(ensure_tiny_model(cfg.model.tiny, Path(cfg.cache_dir) / "tiny"))  # with every core (limit_torch_threads)
    except (UserError, HydraException, OmegaConfBaseException) as err:
        fail(err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
