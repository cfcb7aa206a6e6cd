"""Exceptions raised for bad input.

Every problem a user can cause (wrong shapes, wrong sensor, unreadable files, an output path that exists)
raises :class:`BinsharpError` with a message naming the problem; the command line prints it and exits
with status 2.
"""


class BinsharpError(ValueError):
    """Bad input: the message names the problem and, where possible, the offending file or value."""
