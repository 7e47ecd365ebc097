"""Entry point: ``python -m mathreason.run [overrides]``.

Hydra composes ``mathreason/conf/`` (config groups model, data, method, reward, logger,
experiment; the group size is one key, ``group_size``), the config is
validated (``mathreason.config.schema``) before anything heavy is imported, then
the job runs (``mathreason.job``). ``--help`` and ``--cfg job`` never import
torch. Under torchrun / ``accelerate launch`` every rank runs this; rank 0 owns the
run (``mathreason.processes``).
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from mathreason.errors import UserError
from mathreason.one_line import debug_mode, end_bar_line, fail
from mathreason.records.run_dir import slug

OmegaConf.register_new_resolver("mr_slug", slug, replace=True)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    from mathreason.job import run_job

    return run_job(cfg)


def show_derived(argv: list[str]) -> None:
    """After ``--cfg job`` (or ``all``): the GRPO geometry the config implies
    (prompts and rollouts per step, per-device batch, scaled lr, steps), as
    YAML comments, so the printed config stays valid YAML. The command line is
    read with Hydra's own argument parser."""
    from hydra import compose, initialize_config_module
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    if args.cfg not in ("job", "all") or args.package or args.config_dir:
        return  # a sweep file's own config dir (--config-dir): the printed config is all there is
    from mathreason.config.geometry import describe
    from mathreason.config.schema import validate

    overrides = list(args.overrides)
    with initialize_config_module("mathreason.conf", version_base="1.3"):
        cfg = compose(config_name=args.config_name or "config", overrides=overrides)
    if cfg.get("method") != "grpo":
        return
    typed = validate(cfg, overrides)
    n_train = typed.data.n_train if typed.data.generator is not None else None
    print("# derived by mathreason.config.geometry (not keys; logged as geometry/* in run.json and W&B):")
    for line in describe(typed, n_train):
        print(f"#   {line}")


def run_cli(hydra_main) -> None:
    """Run a ``@hydra.main`` function so that a bad override or config ends in
    one line and exit 2, while real crashes keep their traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mathreason.errors import Interrupted, NumericFault
    from mathreason.processes import OtherRankFailed, is_main

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["MATHREASON_DEBUG"] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us unformatted
    try:
        hydra_main()
        show_derived(sys.argv[1:])
    except (UserError, NumericFault, HydraException, OmegaConfBaseException) as err:
        fail(err)
    except OtherRankFailed as err:  # rank 0 said why
        raise SystemExit(UserError.exit_code if err.kind == "UserError" else 1) from None
    except (Interrupted, KeyboardInterrupt) as err:
        if debug_mode():
            raise
        if is_main():
            end_bar_line()
            sys.stderr.write(f"{str(err) or 'interrupted'}\n")
        raise SystemExit(getattr(err, "exit_code", Interrupted.exit_code)) from None


# A job on several processes (torchrun, accelerate launch): ranks other than 0 write
# neither Hydra's .hydra/ nor run.log into rank 0's run dir, and log warnings only.
QUIET_RANK_OVERRIDES = ["hydra.output_subdir=null", "hydra.job_logging.root.handlers=[console]",
                        "hydra.job_logging.root.level=WARNING"]


def cli() -> None:
    from mathreason.processes import is_main

    if not is_main():
        sys.argv += QUIET_RANK_OVERRIDES
    run_cli(main)


if __name__ == "__main__":
    cli()
