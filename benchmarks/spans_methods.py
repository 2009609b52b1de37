"""The spans type's client methods on real crowd NER: ``aggregate_spans`` (``span_vote``, the
platform's per-task rule, and the sequence models over span segments, as ``to_pandas(method=)``
runs them) on the CoNLL-2003 MTurk crowd, each answer's IOB2 tags given as token-index spans;
strict entity P / R / F1 against the gold (exact span and label).

    PYTHONPATH=. python benchmarks/spans_methods.py

Reads ``../shared/data/spans/conll2003_ner_mturk`` (or ``$CYNAPS_SPANS_DIR``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from cynaps_data.consensus.spans import aggregate_spans
from cynaps_data.consensus.spans_tokens import tags_to_spans

DATA = Path(
    os.environ.get(
        "CYNAPS_SPANS_DIR",
        Path(__file__).resolve().parents[2] / "shared/data/spans/conll2003_ner_mturk",
    )
)
LABELS = ["PER", "ORG", "LOC", "MISC"]
METHODS = [
    ("span_vote", {"threshold": 0.5}),
    ("span_vote", {"threshold": 0.34}),
    ("token_mv", {}),
    ("token_ds", {}),
    ("bsc", {}),
]


def key(frame: pd.DataFrame) -> pd.Series:
    return frame["split"] + "/" + frame["doc"] + "/" + frame["sent"].astype(str)


def token_spans(tags: str) -> list[tuple[int, int, str]]:
    tags_list = tags.split()
    return tags_to_spans(tags_list, [(i, i + 1) for i in range(len(tags_list))])


def main() -> None:
    answers = pd.read_csv(DATA / "answers.csv")
    gold = pd.read_csv(DATA / "sentences_gold.csv")
    answers["task"], gold["task"] = key(answers), key(gold)
    gold = gold[gold["task"].isin(set(answers["task"]))]
    frame = pd.DataFrame(
        {
            "task": answers["task"],
            "worker": answers["worker"],
            "spans": [token_spans(t) for t in answers["tags"]],
        }
    )
    truth = {t: set(token_spans(g)) for t, g in zip(gold["task"], gold["gold_tags"], strict=True)}
    print(f"{len(truth)} sentences, {len(frame)} answers; load {os.getloadavg()[0]:.1f}")
    for method, params in METHODS:
        started = time.process_time()
        out = aggregate_spans(frame, method, labels=LABELS, **params)
        tp = n_pred = n_gold = 0
        for task, predicted in out["spans"].items():
            found = {(s["start"], s["end"], s["label"]) for s in predicted}
            tp += len(found & truth[task])
            n_pred += len(found)
            n_gold += len(truth[task])
        p, r = tp / n_pred, tp / n_gold
        print(
            f"{method:10s} {params!s:22s} P={p:.4f} R={r:.4f} F1={2 * p * r / (p + r):.4f} "
            f"({time.process_time() - started:.1f} CPU s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
