"""How user errors end: one line on stderr, exit status 2, no traceback.

``HYDRA_FULL_ERROR=1`` (or ``MATHREASON_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import re
import sys

from mathreason.errors import UserError


def debug_mode() -> bool:
    return os.environ.get("MATHREASON_DEBUG") == "1"


_UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'|^([\w.]+): unknown key")


def known_keys() -> list[str]:
    """Every key of the config schema (``grpo.learning_rate``, ...) and every config group."""
    import dataclasses

    import mathreason.config.schema as schema

    def walk(cls, prefix: str) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            out.append(prefix + f.name)
            sub = getattr(schema, str(f.type).split("|")[0].strip(), None)
            if dataclasses.is_dataclass(sub):
                out += walk(sub, f"{prefix}{f.name}.")
        return out

    return walk(schema.RootCfg, "") + ["experiment"]


def suggest(key: str) -> str:
    """'; did you mean X?' for a mistyped key, else ''."""
    import difflib

    section, _, rest = key.partition(".extra.")
    if rest and section in ("grpo", "dpo", "sft"):  # a TRL field not in the YAML: Hydra adds new keys only with +
        return f"; {section}.extra takes any other TRL field with a leading +: +{key}=..."
    keys = known_keys()
    if key in keys:  # a real key whose section this composition lacks (grpo.* under method=eval)
        section = key.split(".")[0]
        return f"; the {section} section comes with method={section}" if section in ("grpo", "dpo", "sft") else ""
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def one_line(err: BaseException) -> str:
    """The first meaningful part of an error message, on one line. A
    mistyped key gets the closest existing key, not Hydra's advice to add it."""
    text = str(err).split("Config search path")[0]
    unknown = _UNKNOWN_KEY.search(text)
    if unknown:
        key = unknown[1] or unknown[2]
        known = key in known_keys()
        return f"{key}: {'not in this composition' if known else 'unknown key'}{suggest(key)}"
    text = re.sub(r"\s*\n\s*", "; ", text.strip())
    text = re.sub(r"(; )+", "; ", text).replace("\t", " ")
    text = " ".join(text.split()).replace(":; ", ": ").rstrip(";")
    return text or type(err).__name__


def _end_bar_line() -> None:
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        sys.stderr.write("\n")  # end an open progress bar's line first


def fail(err: BaseException) -> None:
    """Report a user error in one line and exit 2 (raise it in debug mode)."""
    if debug_mode():
        raise err
    _end_bar_line()
    sys.stderr.write(f"error: {one_line(err)}\n")
    sys.stderr.flush()
    raise SystemExit(UserError.exit_code)


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

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["MATHREASON_DEBUG"] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us unformatted
    try:
        hydra_main()
        show_derived(sys.argv[1:])
    except (UserError, NumericFault, HydraException, OmegaConfBaseException) as err:
        fail(err)
    except (Interrupted, KeyboardInterrupt) as err:
        if debug_mode():
            raise
        _end_bar_line()
        sys.stderr.write(f"{str(err) or 'interrupted'}\n")
        raise SystemExit(getattr(err, "exit_code", Interrupted.exit_code)) from None
