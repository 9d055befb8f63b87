"""The errors a user can fix, in one place: every one derives from :class:`UserError`.

A command line (hear_codec/cli.py) prints such an error as ``error: <message>`` and exits with
status 2; anything else is a bug and keeps its traceback. The message names the file or option
and says what is wrong, in one line where it can.

This module imports nothing of hear_codec, so that every other module, cli.py included, can
import it without an import circle. The modules that raise these errors import them from here
and keep them as their own names (``hear_codec.checkpoint.CheckpointError`` is this one).

    UserError                       a bad option value or input file, found by a command's own code
    ├── AudioReadError              an audio file that is missing, unreadable, empty, not finite or not audio
    ├── CheckpointError             a model file that is missing, unreadable, damaged, foreign or too new
    │   ├── UnknownFormatError          neither a hear_codec checkpoint nor a published EnCodecMAE model
    │   ├── DamagedCheckpointError      weights that differ from the hashes written with them
    │   └── UnsupportedVariant          a published EnCodecMAE whose configuration hear_codec cannot reproduce
    ├── CodecWeightsUnavailable     the published EnCodec weights are neither on disk nor downloadable
    ├── PublishedWeightsUnavailable the published EnCodecMAE weights are neither on disk nor downloadable
    └── DiskFullError               a write that ran out of disk space or quota (hear_codec/files.py)

The user errors of ``training/`` derive from :class:`UserError` too. Each class also derives from
the built-in error it refines (ValueError, RuntimeError), so code that caught those still does.
"""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (a bad option value, a bad input file): a command prints its
    message alone and exits with status 2."""


class AudioReadError(UserError, ValueError):
    """A file that could not be read as audio; the message names the file and the reason."""


class CheckpointError(UserError, ValueError):
    """A model file that is missing, unreadable, damaged, foreign, or of an unsupported version."""


class UnknownFormatError(CheckpointError):
    """A file or folder that is neither a hear_codec checkpoint nor a published EnCodecMAE model."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose weights differ from the hashes written with them."""


class UnsupportedVariant(CheckpointError):
    """A published EnCodecMAE file whose configuration hear_codec cannot reproduce."""


class CodecWeightsUnavailable(UserError, RuntimeError):
    """The published EnCodec weights could not be found or downloaded."""


class PublishedWeightsUnavailable(UserError, RuntimeError):
    """The published EnCodecMAE weights are neither on disk nor downloadable (offline, unknown
    file, no huggingface_hub)."""


class DiskFullError(UserError, OSError):
    """A write ran out of space (``ENOSPC``, or ``EDQUOT``: a quota); the target file was left as
    it was and the temporary file removed (``hear_codec.files.atomic_path``). ``str()`` is one
    line for the user: which file, why, how far the write got, and that the previous version is
    intact."""

    def __str__(self) -> str:
        return self.strerror
