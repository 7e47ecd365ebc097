"""Errors a user can cause. How they end (one line on stderr, exit 2, no
traceback) is ``mathreason.one_line.fail``."""

from __future__ import annotations


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
