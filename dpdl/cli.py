"""The ``dpdl`` command-line program.

Each group of subcommands lives beside the code it drives and registers itself here:
``dpdl.data.commands`` (datasets, split, stats), ``dpdl.commands`` (train, score),
``dpdl.study.commands`` (study run|status|tables) and ``dpdl.book`` (book build).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("dpdl.data.commands", "dpdl.commands", "dpdl.study.commands", "dpdl.book")


class UserError(Exception):
    """Bad input from the user: printed as one sentence, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpdl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a group not written yet must not break the others
            if exc.name and exc.name.startswith("dpdl"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"dpdl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Library code raises these with one clear sentence for bad input.
        msg = exc.args[0] if exc.args else str(exc)
        print(f"dpdl {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
