"""``python -m hear_codec.evaluation.predictions``: heareval's predictions runner, unchanged,
with the compatibility layer (:mod:`hear_codec.evaluation.compat`) applied first.

It takes exactly heareval's arguments: one or more *task* folders of an embeddings folder, e.g.::

    python -m hear_codec.evaluation.predictions embeddings/hear_codec/* --grid faster --grid-points 1

Options (heareval's): ``--grid default|fast|faster`` (hyper-parameter grid; default is the full
HEAR protocol), ``--grid-points N`` (grid points tried, default 8), ``--gpus JSON`` (e.g. ``"[0]"``;
default: the first GPU if torch sees one), ``--in-memory``, ``--deterministic``, ``--shuffle``.
Each task folder gets ``test.predicted-scores.json``, ``prediction.log`` and
``prediction-done.json``; a task that already has ``prediction-done.json`` is skipped.
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
    from heareval.predictions.runner import runner

    runner.main(args=sys.argv[1:] if argv is None else argv, standalone_mode=argv is None,
                prog_name="python -m hear_codec.evaluation.predictions")


if __name__ == "__main__":
    cli.run(main)
