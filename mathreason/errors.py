"""Errors a user can cause, and how they end: one line on stderr, exit 2, no
traceback (``fail``). ``HYDRA_FULL_ERROR=1`` (or ``MATHREASON_DEBUG=1``) shows the
traceback instead.
"""

from __future__ import annotations

import os
import re
import sys


class UserError(Exception):
    """A mistake in a config, an override or an input file.

    The message must be one line that names the key (or ``file:line``) and
    what is allowed. ``mathreason.run`` prints it without a traceback.
    """

    exit_code = 2


class NumericFault(RuntimeError):
    """A NaN/inf reward or loss; the run stops, naming the step and the reward
    function, with what was logged so far saved."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: the CLI prints the message (where it stopped, how to resume) and
    exits 130 (Ctrl-C) or 143 (SIGTERM), as a shell reports a process those signals ended.
    A BaseException, like KeyboardInterrupt, so that Hydra passes it through."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a container stop) outside SLURM, raised where the run is,
    so it stops as Ctrl-C does: its state saved as interrupted, exit 143."""

    exit_code = 143


# --------------------------------------------------------------------------
# One line, exit 2


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


def end_bar_line() -> None:
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        sys.stderr.write("\n")  # end an open progress bar's line first


def fail(err: BaseException) -> None:
    """Report a user error in one line and exit 2 (raise it in debug mode)."""
    from mathreason.processes import is_main

    if debug_mode():
        raise err
    if is_main():  # a job on several processes: rank 0 says it once
        end_bar_line()
        sys.stderr.write(f"error: {one_line(err)}\n")
        sys.stderr.flush()
    raise SystemExit(UserError.exit_code)
