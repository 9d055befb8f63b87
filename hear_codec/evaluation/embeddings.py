"""``python -m hear_codec.evaluation.embeddings``: heareval's embeddings runner, unchanged,
with its GPU check handled by :mod:`hear_codec.evaluation.compat` (so it runs on GPU machines
that have tensorflow-cpu).

It takes exactly heareval's arguments::

    python -m hear_codec.evaluation.embeddings hear_codec --model CHECKPOINT --tasks-dir tasks \\
        --embeddings-dir embeddings [--task NAME] [--model-options '{"sample_rate": 16000}']

Embeddings land in ``<embeddings-dir>/<module>[-<options>]/<task>/``; a task that already has
``.done.embeddings`` there is skipped.
"""
from __future__ import annotations

import sys
from typing import List, Optional

from hear_codec import cli
from hear_codec.evaluation import compat


def main(argv: Optional[List[str]] = None) -> None:
    """Run heareval's click command with ``argv`` (default: the command line).

    From the command line click handles usage errors and exits; called with ``argv`` it returns
    and lets exceptions through (for use from Python).
    """
    compat.apply()
    runner = compat.import_embeddings_runner().runner
    runner.main(args=sys.argv[1:] if argv is None else argv, standalone_mode=argv is None,
                prog_name="python -m hear_codec.evaluation.embeddings")


if __name__ == "__main__":
    cli.run(main)
