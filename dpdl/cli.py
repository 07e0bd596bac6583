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


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``dpdl train: error: argument --seed: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dpdl", description=__doc__.splitlines()[0])
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


def _sentence(exc: BaseException) -> str:
    """The one sentence of a bad-input exception (an OSError as ``file: reason``, not its errno)."""
    if isinstance(exc, UnicodeError) and isinstance(getattr(exc, "object", None), str):
        where = exc.object[max(0, exc.start - 80):exc.end + 20]
        name = where.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        return (f"a file name is not valid UTF-8 (near {name!r}): expected UTF-8 file names; rename that file "
                "(e.g. with convmv)")
    if isinstance(exc, UnicodeError):
        return f"a file name or text is not valid UTF-8 ({exc.reason}): expected UTF-8"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc.args[0]) if exc.args else type(exc).__name__


PATH_OPTIONS = ("out", "results_dir", "data_root", "model", "folder", "weights", "study", "images")


def expand_user_paths(args: argparse.Namespace) -> None:
    """``~`` and ``~user`` expanded in every path option, once, where they are read: the checks and the writes
    then see the same folder (never a folder literally named ``~`` in the current one)."""
    import os
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list):
            setattr(args, name, [os.path.expanduser(v) if isinstance(v, str) else v for v in value])


def main(argv: list[str] | None = None) -> int:
    from .paths import set_tool_config_env
    set_tool_config_env()  # matplotlib's and IPython's folders in the cache, also for every kernel started
    parser = build_parser()
    args = parser.parse_args(argv)
    expand_user_paths(args)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"dpdl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError, KeyError) as exc:
        # Library code raises these with one clear sentence for bad input.
        print(f"dpdl {args.command}: error: {_sentence(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:   # Ctrl-C, or SIGTERM where a command turns it into Stopped (signum)
        print(f"dpdl {args.command}: interrupted", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", 2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
