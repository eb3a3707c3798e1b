"""The ``xposim`` command line.

Every subcommand ends a failure with ONE line on stderr and a non-zero exit status, never a
traceback:

* a bad setting, argument, path or file (``ValueError``, ``OSError`` such as ``PermissionError``,
  ``IsADirectoryError``, ``NotADirectoryError``, ``FileExistsError``; argparse errors included):
  ``xposim: error: ...`` and exit status 2;
* Ctrl-C: ``xposim: error: interrupted ...`` and exit status 130 (finished cells are kept);
* a closed stdout pipe (``xposim run ... | head``): silence and exit status 141;
* anything else (a bug): ``xposim: error: internal error: TYPE: message (set XPOSIM_DEBUG=1 to
  see the traceback)`` and exit status 1.

With the environment variable ``XPOSIM_DEBUG=1`` the traceback of any caught exception is printed
before that line.

Output directories (``--out``) are checked before any computation (:func:`check_output_directory`):
an empty path, an existing regular file and a directory that cannot be created or written are
refused. Progress bars are one option on every long-running subcommand:
``--progress auto|on|off`` (auto: only when stderr is a terminal; :func:`add_progress_argument`).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from xposim.commands import (
    SUBCOMMANDS,
    CommandError,
    add_progress_argument,
    check_output_directory,
    register,
    resolve_progress,
)

__all__ = ["main", "build_parser", "CommandError", "check_output_directory", "add_progress_argument",
           "resolve_progress", "DEBUG_ENV"]

#: Environment variable that makes :func:`main` print tracebacks (any value but ``""``/``"0"``).
DEBUG_ENV = "XPOSIM_DEBUG"


def _demo(args: argparse.Namespace) -> int:
    from xposim.demo import run_demo

    check_output_directory(args.out)
    run_demo(out=args.out, quick=True, progress=resolve_progress(args.progress))
    return 0


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="xposim-demo", help="directory for the demo's tables and figures")
    add_progress_argument(parser)


register("demo", "the headline experiment on built-in defaults (what `make demo` runs)")((_add_demo_arguments, _demo))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise CommandError(message)


def build_parser() -> argparse.ArgumentParser:
    _load_plugins()
    parser = _Parser(prog="xposim", description="Exact-ground-truth simulator for exploration in RLHF.",
                     epilog=f"Errors are one line on stderr (exit status 2); set {DEBUG_ENV}=1 to see tracebacks.")
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


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _one_line(text: str) -> str:
    """``text`` on one line (the lines of a multi-line message joined by ' ')."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _os_error_text(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return (f"{reason}: " + " -> ".join(repr(os.fsdecode(n)) for n in names)) if names else reason


def _fail(message: str, status: int) -> int:
    if _debug():
        import traceback

        traceback.print_exc()
    print(f"xposim: error: {_one_line(message)}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xposim`` command; return the exit status (see the module docstring)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return SUBCOMMANDS[args.command][2](args)
    except (CommandError, ValueError) as exc:
        return _fail(str(exc) or type(exc).__name__, 2)
    except KeyboardInterrupt:
        return _fail("interrupted (finished results are kept; rerun the same command to resume)", 130)
    except BrokenPipeError:
        # the reader went away (``xposim run ... | head``): results are already written; stop
        # quietly, and keep Python from complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError, ...
        return _fail(_os_error_text(exc), 2)
    except Exception as exc:  # noqa: BLE001 - a bug: one line and a hint, not a traceback
        hint = "" if _debug() else f" (set {DEBUG_ENV}=1 to see the traceback)"
        return _fail(f"internal error: {type(exc).__name__}: {exc}{hint}", 1)
