"""The ``binsharp`` command line.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (a callable taking the parsed namespace and returning an exit status).
Bad input raises :class:`binsharp.errors.BinsharpError`; :func:`main` prints its message and exits with 2.
Ctrl-C exits with 130 and SIGTERM with 143, after the partial outputs were removed (:mod:`binsharp.fileio`).
"""

from __future__ import annotations

import argparse
import sys

from binsharp import __version__
from binsharp.cli import bench, data, evaluate, export, fuse, quickstart, train
from binsharp.errors import BinsharpError, Terminated

#: Subcommand modules, in the order they appear in ``binsharp --help``.
COMMANDS = (data, evaluate, fuse, train, export, bench, quickstart)

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="binsharp", description="Pan-sharpening with binarized neural networks."
    )
    parser.add_argument("--version", action="version", version=f"binsharp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except BinsharpError as exc:
        print(f"binsharp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # Output piped into a program that stopped reading (e.g. ``| head``): not an error of ours.
        sys.stderr.close()
        return 0
    except OSError as exc:  # the system refused a read or write the checks could not foresee (disk full)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"binsharp {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"binsharp {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"binsharp {args.command}: terminated by signal {exc.signum}", file=sys.stderr)
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
