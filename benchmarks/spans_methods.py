"""The spans type's client methods on real crowd NER: ``aggregate_spans`` (``span_vote``, the
platform's per-task rule, and the sequence models over span segments, as ``to_pandas(method=)``
runs them) on the CoNLL-2003 MTurk crowd, each sentence's text its tokens joined by spaces and
each answer's IOB2 tags given as character spans of it; strict entity P / R / F1 against the
gold (exact span and label). ``bsc`` runs twice: over the answers' span segments alone (no
text, as before) and given the texts (``texts=``, as ``to_pandas(method="bsc")`` does when the
export holds the text field): then it tags the words and reads them (word model, text tagger).

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
    ("bsc", {"texts": True}),
]


def key(frame: pd.DataFrame) -> pd.Series:
    return frame["split"] + "/" + frame["doc"] + "/" + frame["sent"].astype(str)


def char_spans(tags: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """IOB2 tags of a sentence's tokens as character spans of its space-joined text."""
    return tags_to_spans(tags.split(), offsets)


def offsets_of(tokens: list[str]) -> list[tuple[int, int]]:
    out, at = [], 0
    for t in tokens:
        out.append((at, at + len(t)))
        at += len(t) + 1
    return out


def main() -> None:
    answers = pd.read_csv(DATA / "answers.csv")
    gold = pd.read_csv(DATA / "sentences_gold.csv")
    answers["task"], gold["task"] = key(answers), key(gold)
    gold = gold[gold["task"].isin(set(answers["task"]))]
    tokens = dict(zip(gold["task"], gold["tokens"].str.split(), strict=True))
    texts = {t: " ".join(words) for t, words in tokens.items()}
    offsets = {t: offsets_of(words) for t, words in tokens.items()}
    frame = pd.DataFrame(
        {
            "task": answers["task"],
            "worker": answers["worker"],
            "spans": [
                char_spans(tags, offsets[t])
                for t, tags in zip(answers["task"], answers["tags"], strict=True)
            ],
        }
    )
    truth = {
        t: set(char_spans(g, offsets[t]))
        for t, g in zip(gold["task"], gold["gold_tags"], strict=True)
    }
    print(f"{len(truth)} sentences, {len(frame)} answers; load {os.getloadavg()[0]:.1f}")
    for method, params in METHODS:
        started = time.process_time()
        kwargs = {**params, "texts": texts} if params.get("texts") else params
        out = aggregate_spans(frame, method, labels=LABELS, **kwargs)
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
