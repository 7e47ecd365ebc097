"""Errors a user can cause. The CLI prints them as one line and exits 2."""


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
    """Ctrl-C: the CLI prints the message (where it stopped, how to resume), exit 130.
    A BaseException, like KeyboardInterrupt, so that Hydra passes it through."""

    exit_code = 130
