"""How every command line of hear_codec and training/ ends on an error.

Each command-line module has a ``main(argv=None)`` that raises like any other function (tests and
scripts that call it see the exception) and ends with::

    if __name__ == "__main__":
        cli.run(main)

:func:`run` prints an error the user can fix as its message alone, ``error: <message>`` on
stderr, and exits with status 2, the status argparse gives a bad option. Any other exception is
a bug in this code: it keeps its traceback (status 1).

The errors a user can fix, :data:`USER_ERRORS`:

* :class:`hear_codec.errors.UserError` and everything derived from it: a bad option value or
  input file found by the command's own code, an unreadable audio file, a missing, damaged or
  foreign checkpoint, published weights that are neither on disk nor downloadable; the user
  errors of ``training/`` derive from it too (hear_codec/errors.py lists them);
* a bad path: ``FileNotFoundError``, ``NotADirectoryError``, ``IsADirectoryError``,
  ``FileExistsError``, ``PermissionError``;
* ``SystemExit`` with a message (``raise SystemExit("...")``, the standard library's way to stop
  a command with a message); argparse's own exits keep their status.

This module imports no other module of hear_codec but errors.py (a leaf), so that every command
can use it without an import circle.

``main``'s return value is the exit status when it is an int (0 otherwise).

Numeric options take their range from the argparse types here (:data:`positive_int`,
:data:`fraction`, ...), so a value out of range is argparse's own error naming the option.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, NoReturn

from .errors import UserError

USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError,
               PermissionError)
USER_ERROR_STATUS = 2


def run(main: Callable, argv=None) -> NoReturn:
    """Run ``main(argv)`` as a command and exit: status 2 and ``error: <message>`` for the
    errors in :data:`USER_ERRORS`, a traceback for any other exception."""
    try:
        status = main(argv)
    except USER_ERRORS as e:
        fail(str(e))
    except SystemExit as e:
        if isinstance(e.code, str):
            fail(e.code)
        raise
    sys.exit(status if isinstance(status, int) else 0)


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR_STATUS)


def _number(kind: type, lowest: float, inclusive: bool, description: str) -> Callable[[str], float]:
    """An argparse ``type``: ``kind(text)`` at least (or above) ``lowest``, else an error that
    argparse prints beside the option's name (exit status 2)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {description}, got {text!r}") from None
        # NaN compares False with everything, so it would pass the bound check below unnoticed.
        if value != value or value < lowest or (value == lowest and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {description}, got {text!r}")
        if value == float("inf"):  # no option means "unbounded" by inf (they use 0); it would fail deep in a run
            raise argparse.ArgumentTypeError(f"must be {description} and finite, got {text!r}")
        return value

    parse.__name__ = description
    return parse


positive_int = _number(int, 0, False, "a whole number > 0")
non_negative_int = _number(int, 0, True, "a whole number >= 0")
positive_float = _number(float, 0.0, False, "a number > 0")
non_negative_float = _number(float, 0.0, True, "a number >= 0")


def _below_one(lower: Callable[[str], float], inclusive: bool, description: str) -> Callable[[str], float]:
    """An argparse ``type``: what ``lower`` accepts (its own message otherwise), and at most (or
    below) 1."""
    def parse(text: str) -> float:
        value = lower(text)
        if value > 1 or (value == 1 and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {description}, got {text!r}")
        return value

    parse.__name__ = description
    return parse


fraction = _below_one(non_negative_float, False, "a number in [0, 1)")
# a loss weight, where either end is one loss alone
closed_fraction = _below_one(non_negative_float, True, "a number in [0, 1]")
# a share of frames or tokens to mask, where none and all are both runs that learn nothing
open_fraction = _below_one(positive_float, False, "a number in (0, 1)")
# a share of a run's steps that does something: some of them, at most all
positive_fraction = _below_one(positive_float, True, "a number in (0, 1]")


def parse_model_options(text: str) -> dict:
    """``--model-options``: the JSON object of ``load_model`` options heareval takes, e.g.
    '{"sample_rate": 16000}'. Raises UserError."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--model-options is not valid JSON ({e}): {text!r}") from None
    if not isinstance(options, dict):
        raise UserError(f"--model-options must be a JSON object such as '{{\"sample_rate\": 16000}}', got {text!r}")
    return options
