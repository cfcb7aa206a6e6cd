"""Exceptions raised for bad input.

Every problem a user can cause (wrong shapes, wrong sensor, unreadable files, an output path that exists)
raises :class:`BinsharpError` with a message naming the problem; the command line prints it and exits
with status 2.
"""


class BinsharpError(ValueError):
    """Bad input: the message names the problem and, where possible, the offending file or value."""


class Terminated(BaseException):
    """The process received a termination signal (SIGTERM); raised after partial outputs were removed.

    Like ``KeyboardInterrupt`` it is not an ``Exception``, so ordinary error handling does not swallow it;
    the command line reports it and exits with ``128 + signum``.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)
