"""hear_codec.cli.run: user errors read as one message with exit status 2, bugs keep their traceback.

Each command line's own user-error test runs it as a user does (``python -m ...``) and lives in
the test file of its module (test_pretrain.py, test_convert.py, ...)."""
import argparse
import re

import pytest

from hear_codec import cli
from hear_codec.audio import AudioReadError
from hear_codec.checkpoint import DamagedCheckpointError
from hear_codec.codec import CodecWeightsUnavailable
from hear_codec.published import PublishedWeightsUnavailable


def raising(error: BaseException):
    def main(argv):
        raise error
    return main


@pytest.mark.parametrize("error", [
    cli.UserError("--clip-seconds 9 is longer than the model's positions"),
    FileNotFoundError("checkpoint not found: x.ckpt"),
    NotADirectoryError("out is a file"),
    AudioReadError("clip.wav: cannot read audio (LibsndfileError: Format not recognised)"),
    DamagedCheckpointError("damaged checkpoint x.ckpt: 1 of 9 tensors differ"),
    CodecWeightsUnavailable("EnCodec weights file not found: w.th"),
    PublishedWeightsUnavailable("could not get the published EnCodecMAE weights"),
    SystemExit("--run: runs/x not found"),
], ids=lambda e: type(e).__name__)
def test_user_errors_print_their_message_and_exit_2(error, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(raising(error))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_a_bug_keeps_its_traceback():
    """Anything else (a ValueError or KeyError from a bug, say) propagates: Python prints its traceback."""
    for error in (ValueError("shape mismatch"), KeyError("state_dict"), RuntimeError("CUDA error")):
        with pytest.raises(type(error)):
            cli.run(raising(error))


def test_argparse_errors_and_return_values_keep_their_status(capsys):
    def main(argv):
        parser = argparse.ArgumentParser(prog="prog")
        parser.add_argument("--steps", type=int)
        return parser.parse_args(argv).steps

    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, ["--steps", "x"])
    assert exit_info.value.code == 2 and "argument --steps: invalid int value: 'x'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, ["--steps", "3"])  # an int return value is the status
    assert exit_info.value.code == 3
    with pytest.raises(SystemExit) as exit_info:
        cli.run(lambda argv: "a path")  # anything else: success
    assert exit_info.value.code == 0


def test_number_types_accept_their_range_and_name_the_option_otherwise(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--steps", type=cli.positive_int)
    parser.add_argument("--workers", type=cli.non_negative_int)
    parser.add_argument("--seconds", type=cli.positive_float)
    parser.add_argument("--clip", type=cli.non_negative_float)
    parser.add_argument("--share", type=cli.fraction)
    parser.add_argument("--masked", type=cli.open_fraction)
    parser.add_argument("--weight", type=cli.closed_fraction)
    args = parser.parse_args(["--steps", "3", "--workers", "0", "--seconds", "0.5", "--clip", "0", "--share", "0",
                              "--masked", "0.999", "--weight", "1"])
    assert (args.steps, args.workers, args.seconds, args.clip, args.share, args.masked, args.weight) == \
        (3, 0, 0.5, 0.0, 0.0, 0.999, 1.0)
    assert parser.parse_args(["--weight", "0"]).weight == 0.0
    for option, value, message in [("--steps", "0", "a whole number > 0"), ("--steps", "1.5", "a whole number > 0"),
                                   ("--workers", "-1", "a whole number >= 0"), ("--seconds", "0", "a number > 0"),
                                   ("--clip", "-0.1", "a number >= 0"), ("--share", "1", r"a number in \[0, 1\)"),
                                   ("--share", "x", "a number >= 0"), ("--seconds", "nan", "a number > 0"),
                                   ("--clip", "nan", "a number >= 0"), ("--share", "nan", "a number >= 0"),
                                   ("--masked", "0", "a number > 0"), ("--masked", "1", r"a number in \(0, 1\)"),
                                   ("--masked", "nan", "a number > 0"), ("--weight", "1.01", r"a number in \[0, 1\]"),
                                   ("--weight", "-0.1", "a number >= 0"), ("--weight", "nan", "a number >= 0"),
                                   ("--seconds", "inf", "a number > 0 and finite"),
                                   ("--clip", "inf", "a number >= 0 and finite"),
                                   ("--masked", "inf", "a number > 0 and finite")]:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([option, value])
        assert exit_info.value.code == 2
        assert re.search(rf"argument {option}: must be {message}, got '{re.escape(value)}'", capsys.readouterr().err)
