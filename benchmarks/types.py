"""Accuracy of each annotation type's aggregation on real crowd data, beside the baselines
computed in the same run (issue 13 and after). One script per type, ``types_<type>.py``; this
one runs them:

    python benchmarks/types.py                      # every type, one after another
    python benchmarks/types.py --type rating        # one type
    python benchmarks/types.py --type text --quick  # options after the type go to its script

Types and data (``../shared/data/``, never shipped with the package):

* ``rating``: Snow et al. 2008 affect scales and word similarity — Pearson with gold of the
  default (RaterModel) beside the raters' mean and median;
* ``multi_label``: CrowdTruth medical relations — split-half Jaccard of the default
  (MultiLabelModel) beside crowd-kit's BinaryRelevance(MajorityVote), and synthetic crowds;
* ``text``: CrowdSpeech dev-clean / dev-other — WER and fit time of the default (TextROVER)
  beside crowd-kit's ROVER;
* ``boxes``: synthetic crowds with true boxes (F1 @ IoU 0.75) and the Sugar/Flower/Fish/Gravel
  practice workflow (split-half F1) — the default (BoxReliability) beside BASELINE.md's
  matching (BoxMatching), and the speed on 10,000 images.
* ``spans``: CoNLL-2003 NER MTurk crowd (BIO tags) — strict entity F1 of the default
  (BayesianSequenceCombination) beside token majority vote and token Dawid-Skene, all / val / test
  halves, with the published figures (Simpson & Gurevych 2019) beside.
* ``pairwise``: CrowDEA ideas/designs (7 sets) — Spearman with the mean viewpoint and nDCG@5/10
  of the default (AnnotatorBradleyTerry) beside crowd-kit's BradleyTerry and NoisyBradleyTerry,
  fit-time ratios, and synthetic sparse, position-biased crowds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "rating": "types_rating.py",
    "multi_label": "types_multilabel.py",
    "text": "types_text.py",
    "boxes": "types_boxes.py",
    "spans": "types_spans.py",
    "pairwise": "types_pairwise.py",
    "preferences": "types_preferences.py",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--type", choices=[*SCRIPTS, "all"], default="all")
    args, rest = parser.parse_known_args(argv)
    names = list(SCRIPTS) if args.type == "all" else [args.type]
    failed = 0
    for name in names:
        print(f"\n=== {name} ({SCRIPTS[name]}) ===", flush=True)
        code = subprocess.call([sys.executable, str(HERE / SCRIPTS[name]), *rest])
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
