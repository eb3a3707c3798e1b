"""The subcommand registry and the helpers every ``xposim`` subcommand shares.

A module that adds a subcommand (``xposim/harness/cli.py``, ``xposim/lm/cli.py``) imports
:func:`register` and the helpers from here; ``xposim/cli.py`` builds the parser from
:data:`SUBCOMMANDS` and runs it. This module imports nothing of xposim, so the command modules
depend on it and not on each other (no import cycle).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["CommandError", "check_output_directory", "add_progress_argument", "resolve_progress", "register",
           "SUBCOMMANDS"]


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def check_output_directory(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuse an output directory that cannot be used, before any work starts; return it as a Path.

    Refused (``CommandError`` naming ``flag``): an empty or blank path; a path that exists and is
    not a directory; a path below an existing regular file; a directory (or, if it does not exist
    yet, its nearest existing ancestor, where it would be created) without write and search
    permission (``os.access(.., W_OK | X_OK)``, which also reports a read-only file system).
    Nothing is created.
    """
    text = os.fspath(path)
    if not str(text).strip():
        raise CommandError(f"{flag} must be a directory path, got {text!r}")
    directory = Path(text)
    if directory.exists() and not directory.is_dir():
        raise CommandError(f"{flag} {text!r} is an existing file, not a directory")
    probe = directory.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise CommandError(f"{flag} {text!r} cannot be created: {str(probe)!r} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == directory.absolute() else f" (in {str(probe)!r})"
        raise CommandError(f"{flag} {text!r} is not writable{where}: permission denied or read-only file system")
    return directory


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """The one progress option of every long-running subcommand: ``--progress auto|on|off``."""
    parser.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                        help="progress bars on stderr (default auto: only when stderr is a terminal)")


def resolve_progress(choice: str) -> bool:
    """``--progress`` value -> whether to show progress bars (``auto``: stderr is a terminal)."""
    if choice not in ("auto", "on", "off"):
        raise ValueError(f"--progress must be one of auto, on, off, got {choice!r}")
    return sys.stderr.isatty() if choice == "auto" else choice == "on"


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def register(name: str, help_text: str):
    """Decorator registering ``add_arguments(parser)`` and ``run(args)`` for a subcommand."""

    def wrap(pair):
        add_arguments, run = pair
        SUBCOMMANDS[name] = (help_text, add_arguments, run)
        return pair

    return wrap
