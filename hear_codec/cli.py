"""How every command line of hear_codec and training/ ends on an error.

Each command-line module has a ``main(argv=None)`` that raises like any other function (tests and
scripts that call it see the exception) and ends with::

    if __name__ == "__main__":
        cli.run(main)

:func:`run` prints an error the user can fix as its message alone, ``error: <message>`` on
stderr, and exits with status 2, the status argparse gives a bad option. Any other exception is
a bug in this code: it keeps its traceback (status 1).

The errors a user can fix, :data:`USER_ERRORS`:

* :class:`UserError`: a bad option value or input file found by the command's own code; the
  user errors of ``training/`` derive from it (e.g. pretrained BART / CLAP weights missing
  offline, a bad labels file);
* a bad path: ``FileNotFoundError``, ``NotADirectoryError``, ``IsADirectoryError``,
  ``FileExistsError``, ``PermissionError``;
* :class:`hear_codec.checkpoint.CheckpointError`: a missing, truncated, damaged, foreign or
  newer-version checkpoint, or a published variant hear_codec cannot convert;
* :class:`hear_codec.codec.CodecWeightsUnavailable`,
  :class:`hear_codec.published.PublishedWeightsUnavailable`: published weights that are
  neither on disk nor downloadable (e.g. offline);
* ``SystemExit`` with a message (``raise SystemExit("...")``, the standard library's way to stop
  a command with a message); argparse's own exits keep their status.

``main``'s return value is the exit status when it is an int (0 otherwise).
"""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

from .checkpoint import CheckpointError
from .codec import CodecWeightsUnavailable
from .published import PublishedWeightsUnavailable


class UserError(Exception):
    """An error the user can fix (a bad option value, a bad input file): a command prints its
    message alone and exits with status 2."""


USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError,
               PermissionError, CheckpointError, CodecWeightsUnavailable, PublishedWeightsUnavailable)
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
