"""The ``xposim`` command line.

Every subcommand turns bad settings into one clear error line on stderr and exit status 2,
never a traceback (argparse errors included).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["main", "build_parser", "CommandError"]


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _demo(args: argparse.Namespace) -> int:
    from xposim.demo import run_demo

    run_demo(out=args.out, quick=True)
    return 0


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def register(name: str, help_text: str):
    """Decorator registering ``add_arguments(parser)`` and ``run(args)`` for a subcommand."""

    def wrap(pair):
        add_arguments, run = pair
        SUBCOMMANDS[name] = (help_text, add_arguments, run)
        return pair

    return wrap


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="xposim-demo", help="directory for the demo's tables and figures")


register("demo", "the headline experiment on built-in defaults (what `make demo` runs)")((_add_demo_arguments, _demo))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise CommandError(message)


def build_parser() -> argparse.ArgumentParser:
    _load_plugins()
    parser = _Parser(prog="xposim", description="Exact-ground-truth simulator for exploration in RLHF.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    for name, (help_text, add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _load_plugins() -> None:
    """Import modules that register further subcommands (harness, LM path) if present."""
    import importlib

    for module in ("xposim.harness.cli", "xposim.lm.cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module and not module.startswith(str(exc.name)):
                raise


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return SUBCOMMANDS[args.command][2](args)
    except (CommandError, ValueError, FileNotFoundError) as exc:
        print(f"xposim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xposim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``xposim run ... | head``): results are already written; stop
        # quietly, and keep Python from complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
