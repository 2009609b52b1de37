"""Pairwise preferences: how well the platform's per-task consensus and the leaderboard recover
the sandbox's hidden item qualities, and what the type's export costs, all in this run.

Run from the repo root:

    python benchmarks/types_preferences.py
    python benchmarks/types_preferences.py --items 30 --tasks 1500 --seeds 5

A synthetic arena (no gold, no server): ``--items`` models with hidden standard-normal
qualities (``consensus.preferences.item_score``), ``--tasks`` random pairs, each judged by
``--votes`` of ``--members`` simulated annotators (accuracy uniform in 0.6-0.95, each with its
own position bias) through the ``pairwise`` type's own ``simulate``. Reported, mean ± sd over
``--seeds`` seeds:

- per task: the share of tasks whose final choice (the type's ``decide``, threshold 0.66, no
  expert, up to 5 votes) names the better candidate, against a single annotator's vote;
- across tasks: Spearman correlation of the item scores with the hidden qualities, for the
  leaderboard (``preferences.leaderboard``'s Bradley–Terry on every judgement) beside the raw
  win rate (wins / comparisons; a tie is half a win);
- position bias: the share of simulated members whose exact binomial test flags them (p < 0.05)
  beside the size of their hidden bias;
- export: the type's ``wide_columns`` time per 10,000 votes as a ratio of the classification
  type's on the same number of votes (measured in this run; the load is printed).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cynaps_data.consensus.pairwise import aggregate_pairwise  # noqa: E402
from cynaps_data.consensus.preferences import (  # noqa: E402
    item_score,
    left_choices,
    member_bias,
    position_bias_of,
)
from cynaps_data.types import get_type  # noqa: E402
from cynaps_data.types.base import VoteArrays  # noqa: E402

PAIRWISE = get_type("pairwise")
CONFIG = PAIRWISE.validate_config(
    {"candidates": ["response_a", "response_b"], "ids": ["model_a", "model_b"]}
)
QUALITY = {
    "min_annotators": 3,
    "max_annotators": 5,
    "consensus_threshold": 0.66,
    "enable_expert_review": False,
}


def arena(items: int, tasks: int, members: int, seed: int) -> tuple[list[dict], list[float]]:
    rng = random.Random(seed)
    names = [f"model-{seed}-{i}" for i in range(items)]
    data = []
    for t in range(tasks):
        a, b = rng.sample(names, 2)
        data.append(
            {
                "prompt": f"p{t}",
                "response_a": f"{a}:{t}",
                "response_b": f"{b}:{t}",
                "model_a": a,
                "model_b": b,
            }
        )
    accuracies = [rng.uniform(0.6, 0.95) for _ in range(members)]
    return data, accuracies


def run(items: int, tasks: int, members: int, votes: int, seed: int) -> dict[str, float]:
    data, accuracies = arena(items, tasks, members, seed)
    rng = random.Random(seed + 1)
    rows, right_final, right_single = [], 0, 0
    for t, d in enumerate(data):
        truth = PAIRWISE.pseudo_truth(orjson.dumps(d).decode(), CONFIG)
        better = "a" if item_score(d["model_a"]) > item_score(d["model_b"]) else "b"
        crowd = rng.sample(range(members), 5)
        answers, needed = [], votes
        while True:
            while len(answers) < needed:
                m = crowd[len(answers)]
                value = PAIRWISE.simulate(
                    truth, CONFIG, accuracies[m], random.Random(f"{seed}:{m}:{t}"), d
                )
                answers.append((m, value))
            decision = PAIRWISE.decide([v for _, v in answers], QUALITY, needed, CONFIG)
            if decision.status == "completed":
                break
            needed = decision.needed
        right_final += decision.final_label["choice"] == better
        right_single += answers[0][1]["choice"] == better
        for m, value in answers:
            shown = value["shown"]
            ids = {"a": d["model_a"], "b": d["model_b"]}
            label = "tie" if value["choice"] == "tie" else ids[value["choice"]]
            rows.append((f"w{m}", ids[shown[0]], ids[shown[1]], label, value["choice"], shown))
    table = pd.DataFrame(rows, columns=["worker", "left", "right", "label", "choice", "shown"])
    board = aggregate_pairwise(table[["worker", "left", "right", "label"]], "auto")
    truth = pd.Series({i: item_score(i) for i in board.index})
    wins = (
        pd.concat(
            [
                table.assign(
                    item=table["left"],
                    won=np.where(table["label"] == "tie", 0.5, table["label"] == table["left"]),
                ),
                table.assign(
                    item=table["right"],
                    won=np.where(table["label"] == "tie", 0.5, table["label"] == table["right"]),
                ),
            ]
        )
        .groupby("item")["won"]
        .mean()
    )
    flagged, biases = [], []
    for worker, part in table.groupby("worker"):
        bias = position_bias_of(left_choices(part["choice"], part["shown"]))
        flagged.append(bias["p_value"] < 0.05)
        biases.append(abs(member_bias(accuracies[int(worker[1:])], 2.0)))
    flagged, biases = np.array(flagged), np.array(biases)
    strong = biases > 0.4
    return {
        "final_right": right_final / tasks,
        "single_right": right_single / tasks,
        "bt_spearman": float(spearmanr(board["score"], truth[board.index]).statistic),
        "winrate_spearman": float(spearmanr(wins[truth.index], truth).statistic),
        "flagged_strong": float(flagged[strong].mean()) if strong.any() else float("nan"),
        "flagged_weak": float(flagged[~strong].mean()) if (~strong).any() else float("nan"),
        "n_votes": len(table),
    }


def export_ratio(n_tasks: int, votes: int, repeats: int = 3) -> float:
    """pairwise wide_columns time / classification wide_columns time on the same votes."""
    rng = np.random.default_rng(0)
    pos = np.repeat(np.arange(n_tasks), votes)
    pair_values = pa.array(
        [
            orjson.dumps({"choice": c, "shown": s}).decode()
            for c, s in zip(
                rng.choice(["a", "b", "tie"], len(pos)),
                rng.choice(["ab", "ba"], len(pos)),
                strict=True,
            )
        ]
    )
    cls_values = pa.array([orjson.dumps(c).decode() for c in rng.choice(["x", "y", "z"], len(pos))])
    n_votes = np.full(n_tasks, votes)
    empty = pa.array([""] * n_tasks)

    def timed(atype, config, values, final) -> float:
        arrays = VoteArrays(n_tasks, pos, values, n_votes, final, empty, empty)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            atype.wide_columns(arrays, config)
            best = min(best, time.perf_counter() - start)
        return best

    pair = timed(PAIRWISE, CONFIG, pair_values, pa.array(['{"choice":"a"}'] * n_tasks))
    classification = get_type("classification")
    cls = timed(classification, ["x", "y", "z"], cls_values, pa.array(['"x"'] * n_tasks))
    print(
        f"  wide_columns on {len(pos):,} votes: pairwise {pair:.3f} s, classification {cls:.3f} s"
    )
    return pair / cls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=800)
    parser.add_argument("--members", type=int, default=15)
    parser.add_argument("--votes", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()}")
    results = pd.DataFrame(
        [run(args.items, args.tasks, args.members, args.votes, seed) for seed in range(args.seeds)]
    )
    print(f"{args.items} items, {args.tasks} tasks, {args.members} members, {args.seeds} seeds")
    for column in results.columns:
        print(f"  {column:18s} {results[column].mean():.3f} ± {results[column].std(ddof=0):.3f}")
    ratio = export_ratio(5000, 3)
    print(f"  export cost ratio pairwise / classification: {ratio:.1f}x")
    print(f"load: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
