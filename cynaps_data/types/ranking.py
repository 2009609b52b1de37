"""Ranking of N candidates (best-of-N responses, search results): an order, best first.

Config (the project's ``labels``)::

    {"prompt": "prompt", "candidates": "responses", "ids": None}

- ``prompt``: the data field shown above the candidates (``None``: none);
- ``candidates``: a data field holding a list of 2 … :data:`MAX_CANDIDATES` candidates (each a
  text, an image URL, or an object ``{"id": ..., "text": ...}`` as Label Studio's ``List``
  takes: its ``id`` is the item id, its ``text``/``body``/``title`` is shown), or a list of 2 …
  :data:`MAX_CANDIDATES` data field names, one candidate each;
- ``ids``: the candidates' stable item ids: with a list field, ``None`` or a data field holding
  a list of ids of the same length; with named fields, ``None`` or one id entry per candidate
  (a field name, or a list of field names joined with ``":"``). Without ids an item's id is its
  ``id`` key, else ``"sha:"`` + 12 hex of its content's SHA-256 (as the pairwise type).

Value: ``{"order": [2, 0, 1], "shown": [1, 2, 0]}`` — ``order`` the candidates' positions (in
the data's order, from 0) best first, a permutation of all of them; ``shown`` (optional) the
order they were displayed top to bottom (the widget shuffles them per showing). A plain list
of positions is accepted, and, when the task data is given (the platform always gives it), a
list of item ids. Label Studio: a ``ranker`` region ``{"ranker": {"rank": [item ids]}}``.

Consensus per task: the Borda order (candidates by mean rank); ``agreement`` is Kendall's W
(:func:`cynaps_data.consensus.preferences.kendall_w`; 1 = identical orders). W at or above
``consensus_threshold`` is final (``consensus``); below, disputed (expert review) or one more
annotator up to ``max_annotators``, then the Borda order (``majority``).

Export (wide): ``label``/``gold``/``expert_label`` list<int64> (orders); ``agreement`` (W),
``confidence`` (share of the votes whose first place is the final first place) float64;
``mean_ranks`` list<float64> per candidate (1 = best); ``orders`` and ``shown`` as JSON texts
per vote (lists of the annotators' orders, aligned with ``annotator_ids``; JSON text so that
CSV and every sink hold them). Pairs for the leaderboard and TRL: every pair of an order
(:func:`~cynaps_data.consensus.preferences.ranking_pairs`), see :mod:`cynaps_data.preferences`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..consensus.preferences import (
    consensus_order,
    item_score,
    kendall_w,
    logit,
    mean_ranks,
    member_bias,
    ranking_pairs,
)
from ..errors import ValidationError
from ._preference_data import (
    check_field,
    check_id_spec,
    content_id,
    data_records,
    field_value,
    id_from,
    pd_object,
    prompt_of,
)
from .base import Decision, VoteArrays, json_values, method_prefix
from .pairwise import MEAN_GAP

if TYPE_CHECKING:
    import pandas as pd

CONFIG_KEYS = ("prompt", "candidates", "ids")
MAX_CANDIDATES = 20
VALUE_COLUMNS = ("label", "gold", "expert_label")
SHOW_KEYS = ("text", "body", "title", "content")


def _order_list(texts: Any) -> list[list[int] | None]:
    out: list[list[int] | None] = []
    for value in json_values(texts):
        if isinstance(value, dict):
            value = value.get("order")
        out.append([int(x) for x in value] if isinstance(value, list) else None)
    return out


def _values(texts: Any) -> list[dict]:
    out = []
    for value in json_values(texts):
        value = {} if value is None else value
        out.append({"order": value} if isinstance(value, list) else value)
    return out


def candidates_of(data: Any, config: dict) -> list[tuple[str, Any]] | None:
    """``[(item_id, content), ...]`` of a task's candidates in data order, or None when its
    data lacks them."""
    try:
        return _candidates(data, config)
    except ValueError:
        return None


def _candidates(data: Any, config: dict) -> list[tuple[str, Any]]:
    spec, ids = config["candidates"], config.get("ids")
    if isinstance(spec, str):
        items = field_value(data, spec, "candidates")
        if not isinstance(items, list) or not 2 <= len(items) <= MAX_CANDIDATES:
            raise ValueError(f"the task's {spec!r} must be a list of 2-{MAX_CANDIDATES} candidates")
        if ids is not None:
            id_list = field_value(data, ids, "ids")
            if not isinstance(id_list, list) or len(id_list) != len(items):
                raise ValueError(f"the task's {ids!r} must be a list of {len(items)} ids")
            keys = [str(x) for x in id_list]
        else:
            keys = [
                str(x["id"]) if isinstance(x, dict) and "id" in x else content_id(x) for x in items
            ]
        out = []
        for key, item in zip(keys, items, strict=True):
            shown = next((item[k] for k in SHOW_KEYS if isinstance(item, dict) and k in item), item)
            out.append((key, shown))
    else:
        out = []
        for i, field in enumerate(spec):
            content = field_value(data, field, f"candidates[{i}]")
            key = id_from(data, ids[i], "id") if ids else content_id(content)
            out.append((key, content))
    if len({k for k, _ in out}) != len(out):
        raise ValueError("the task's candidates must have distinct item ids")
    return out


class Ranking:
    name = "ranking"
    price_per_judgement_cents = 3000
    aggregation_methods = ("auto", "borda")
    default_method = "auto"
    agreement_metrics = ("kendall_w",)

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> dict:
        if not isinstance(config, dict):
            raise ValueError(
                'labels must be an object {"prompt": <field>, "candidates": <list field> or '
                f'[<field>, ...], "ids": ...}}, got {type(config).__name__}'
            )
        unknown = [k for k in config if k not in CONFIG_KEYS]
        if unknown:
            raise ValueError(f"labels.{unknown[0]} is not a ranking setting; use {CONFIG_KEYS}")
        prompt = config.get("prompt", "prompt")
        if prompt is not None:
            check_field(prompt, "labels.prompt")
        if "candidates" not in config:
            raise ValueError("labels.candidates is required (a list field or 2+ field names)")
        candidates = config["candidates"]
        ids = config.get("ids")
        if isinstance(candidates, str):
            check_field(candidates, "labels.candidates")
            if ids is not None:
                check_field(ids, "labels.ids")
        elif isinstance(candidates, list):
            if not 2 <= len(candidates) <= MAX_CANDIDATES:
                raise ValueError(f"labels.candidates must name 2-{MAX_CANDIDATES} fields")
            for i, field in enumerate(candidates):
                check_field(field, f"labels.candidates[{i}]")
            if len(set(candidates)) != len(candidates):
                raise ValueError("labels.candidates must name different fields")
            if ids is not None:
                if not isinstance(ids, list) or len(ids) != len(candidates):
                    raise ValueError("labels.ids must be null or one id entry per candidate")
                ids = [check_id_spec(s, f"labels.ids[{i}]") for i, s in enumerate(ids)]
        else:
            raise ValueError("labels.candidates must be a list field name or a list of fields")
        return {"prompt": prompt, "candidates": candidates, "ids": ids}

    def validate_data(self, data: Any, config: dict) -> None:
        """Upload check: a task without its candidates (or ids) could never be ranked."""
        _candidates(data, config)

    def validate_value(self, value: Any, config: dict, data: Any = None) -> dict:
        if isinstance(value, dict) and "ranker" in value:
            value = self._from_studio(value)
        if isinstance(value, list):
            value = {"order": value}
        if not isinstance(value, dict):
            raise ValueError(
                'ranking label must be a list of candidate positions or {"order": [...]}, '
                f"got {type(value).__name__}"
            )
        unknown = [k for k in value if k not in ("order", "shown")]
        if unknown:
            raise ValueError(f"label.{unknown[0]} is not a ranking key; use order, shown")
        pool = _candidates(data, config) if data is not None else None
        n = len(pool) if pool is not None else None
        out = {"order": self._positions(value.get("order"), "label.order", pool, n)}
        n = len(out["order"])
        if value.get("shown") is not None:
            out["shown"] = self._positions(value["shown"], "label.shown", pool, n)
        return out

    @staticmethod
    def _positions(order: Any, where: str, pool: list | None, n: int | None) -> list:
        if not isinstance(order, list) or not order:
            raise ValueError(f"{where} must be a list of candidate positions, best first")
        ids = [k for k, _ in pool] if pool is not None else None
        out = []
        for i, x in enumerate(order):
            if isinstance(x, str) and ids is not None and x in ids:
                x = ids.index(x)
            elif isinstance(x, str) and ids is None:
                out.append(x)  # an item id: resolved when the task's data is given
                continue
            elif isinstance(x, str) and x.isascii() and x.isdigit():
                x = int(x)  # a position as text (Label Studio keeps only strings)
            if not isinstance(x, int) or isinstance(x, bool):
                raise ValueError(f"{where}[{i}] must be a candidate position or item id, got {x!r}")
            out.append(x)
        size = n if n is not None else len(out)
        if len(out) != size or len(set(map(str, out))) != size:
            raise ValueError(f"{where} must list each of the {size} candidates exactly once")
        if all(isinstance(x, int) for x in out) and sorted(out) != list(range(size)):
            raise ValueError(f"{where} must be a permutation of the positions 0..{size - 1}")
        return out

    @staticmethod
    def _from_studio(value: dict) -> dict:
        ranker = value.get("ranker")
        if not isinstance(ranker, dict) or len(ranker) != 1:
            raise ValueError('a Label Studio ranker result is {"ranker": {"<name>": [ids]}}')
        extra = value.get("cynaps") if isinstance(value.get("cynaps"), dict) else {}
        return {**extra, "order": list(ranker.values())[0]}

    def to_label_studio(self, value: Any, config: dict) -> dict:
        value = {"order": value} if isinstance(value, list) else dict(value)
        order = value.pop("order")
        ids = value.pop("ids", None) or [str(x) for x in order]
        extra = {"cynaps": value} if value else {}
        return {"type": "ranker", "value": {"ranker": {"rank": ids}, **extra}}

    def from_label_studio(self, region: dict, config: dict) -> Any:
        value = region.get("value")
        if region.get("type") != "ranker" or not isinstance(value, dict):
            raise ValueError('not a Label Studio ranker result {"ranker": {"rank": [...]}}')
        # item ids stay strings (resolved against the task's data by validate_value, which
        # reads a string that is no item id but digits as a position): ids may be digits too
        return self._from_studio(value)

    def label_studio_result(self, value: Any, config: dict, data: Any = None) -> list[dict]:
        """The ``ranker`` region naming the candidates by their item ids (what Label Studio's
        ``List`` items carry), or by their positions as text when the data lacks them."""
        value = {"order": value} if isinstance(value, list) else dict(value)
        pool = candidates_of(data, config) if data is not None else None
        order = value.get("order")
        if (
            pool is not None
            and isinstance(order, list)
            and all(isinstance(x, int) and 0 <= x < len(pool) for x in order)
        ):
            value["ids"] = [pool[x][0] for x in order]
        return [self.to_label_studio(value, config)]

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """Borda order; Kendall's W against ``consensus_threshold`` (module docstring)."""
        if len(votes) < needed:
            return Decision("pending", needed)
        orders = [v["order"] if isinstance(v, dict) else v for v in votes]
        n = len(orders[0])
        w = kendall_w(orders, n)
        final = {"order": consensus_order(orders, n)}
        if w >= quality["consensus_threshold"]:
            return Decision("completed", needed, final, "consensus", w)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, w)
        if needed < quality["max_annotators"]:
            return Decision("pending", needed + 1, None, None, w)
        return Decision("completed", needed, final, "majority", w)

    def summarize(self, votes: list[Any], config: dict | None) -> dict[str, Any]:
        """``mean_ranks`` (per candidate position, 1 = best), ``kendall_w`` and
        ``top_counts`` ({position: how many votes put it first}); None/{} without votes."""
        orders = [v["order"] if isinstance(v, dict) else v for v in votes]
        if not orders:
            return {"mean_ranks": None, "kendall_w": None, "top_counts": {}}
        n = len(orders[0])
        tops: dict[str, int] = {}
        for order in orders:
            tops[str(order[0])] = tops.get(str(order[0]), 0) + 1
        return {
            "mean_ranks": [float(x) for x in mean_ranks(orders, n)],
            "kendall_w": kendall_w(orders, n),
            "top_counts": tops,
        }

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: dict) -> dict[str, pa.Array]:
        """The export columns of the module docstring (one row per task)."""
        n_tasks = votes.n_tasks
        per_task: list[list[dict]] = [[] for _ in range(n_tasks)]
        for pos, value in zip(votes.pos.tolist(), _values(votes.values), strict=True):
            per_task[pos].append(value)
        final = _order_list(votes.final)
        agreement, confidence, ranks, orders, shown = [], [], [], [], []
        for task_votes, label in zip(per_task, final, strict=True):
            task_orders = [v["order"] for v in task_votes if v.get("order")]
            if not task_orders:
                agreement.append(None)
                confidence.append(None)
                ranks.append(None)
            else:
                n = len(task_orders[0])
                agreement.append(kendall_w(task_orders, n))
                ranks.append([float(x) for x in mean_ranks(task_orders, n)])
                top = label[0] if label else None
                share = sum(o[0] == top for o in task_orders) / len(task_orders)
                confidence.append(share if label else None)
            orders.append(orjson.dumps(task_orders).decode())
            shown.append(orjson.dumps([v.get("shown") for v in task_votes]).decode())
        as_orders = pa.list_(pa.int64())
        return {
            "gold": pa.array(_order_list(votes.gold), as_orders),
            "label": pa.array(final, as_orders),
            "agreement": pa.array(agreement, pa.float64()),
            "confidence": pa.array(confidence, pa.float64()),
            "mean_ranks": pa.array(ranks, pa.list_(pa.float64())),
            "orders": pa.array(orders, pa.string()),
            "shown": pa.array(shown, pa.string()),
            "expert_label": pa.array(_order_list(votes.expert), as_orders),
        }

    def long_label(self, values: pa.Array, config: dict) -> pa.Array:
        """Each judgement's order, list<int64>."""
        return pa.array(_order_list(values), pa.list_(pa.int64()))

    def features(self, config: dict) -> dict[str, Any]:
        import datasets

        out: dict[str, Any] = {c: datasets.Sequence(datasets.Value("int64")) for c in VALUE_COLUMNS}
        out["mean_ranks"] = datasets.Sequence(datasets.Value("float64"))
        out["orders"] = datasets.Value("string")
        out["shown"] = datasets.Value("string")
        return out

    def to_pandas_columns(self, frame: pd.DataFrame, config: dict) -> pd.DataFrame:
        """List columns as Python lists; adds ``ranked_ids`` (the final order as item ids, a
        JSON text list; null without a label)."""
        for column in (*VALUE_COLUMNS, "mean_ranks"):
            if column in frame.columns:
                frame[column] = pd_object(
                    [
                        list(v) if isinstance(v, (list, tuple, np.ndarray)) else None
                        for v in frame[column].tolist()
                    ],
                    frame.index,
                )
        ranked = []
        for data, label in zip(
            data_records(frame, _fields_config(config)), frame["label"], strict=True
        ):
            pool = candidates_of(data, config)
            if pool is None or not isinstance(label, list):
                ranked.append(None)
            else:
                ranked.append(orjson.dumps([pool[i][0] for i in label]).decode())
        frame["ranked_ids"] = pd_object(ranked, frame.index)
        return frame

    # -- client side ------------------------------------------------------------------------
    def aggregate(self, votes: Any, method: Any, config: dict, **params: Any) -> Any:
        """``auto`` = ``borda``: ``<prefix>_order`` (JSON text of the Borda order) and
        ``<prefix>_kendall_w`` (float64) per task. Item scores across tasks: the leaderboard
        of :mod:`cynaps_data.preferences`."""
        import pandas as pd

        key = method_prefix(method) if isinstance(method, str) else None
        if key not in self.aggregation_methods:
            raise ValidationError(
                f"unknown ranking method {method!r}; choose one of {list(self.aggregation_methods)}",
                param="method",
            )
        if params:
            raise ValidationError(
                f"unknown parameter {next(iter(params))!r}", param=next(iter(params))
            )
        rows = []
        long = votes.dropna(subset=["label"]) if len(votes) else votes
        for task, group in long.groupby("task", sort=True) if len(long) else []:
            orders = [list(map(int, o)) for o in group["label"]]
            n = len(orders[0])
            rows.append(
                (task, orjson.dumps(consensus_order(orders, n)).decode(), kendall_w(orders, n))
            )
        out = pd.DataFrame(
            {
                f"{key}_order": pd.Series([r[1] for r in rows], dtype=object),
                f"{key}_kendall_w": pd.Series([r[2] for r in rows], dtype="float64"),
            },
        )
        out.index = pd.Index([int(r[0]) for r in rows], name="task", dtype="int64")
        return out

    def comparisons(self, frame: pd.DataFrame, config: dict, pairs: str = "all") -> pd.DataFrame:
        """The annotators' orders of a wide export as pairwise comparisons (contract in
        :mod:`cynaps_data.consensus.preferences`): each order gives the ``pairs`` of
        :func:`~cynaps_data.consensus.preferences.ranking_pairs`; ``left`` is the one of the
        two shown higher (first in data order when the display order is unknown)."""
        import pandas as pd

        rows: dict[str, list] = {k: [] for k in ("task", "worker", "left", "right", "label")}
        records = data_records(frame, _fields_config(config))
        for task, data, workers, orders, shown in zip(
            frame.index.tolist(),
            records,
            frame["annotator_ids"].tolist(),
            frame["orders"].tolist(),
            frame["shown"].tolist(),
            strict=True,
        ):
            pool = candidates_of(data, config)
            if pool is None or not isinstance(orders, str):
                continue
            for worker, order, seen in zip(
                workers, orjson.loads(orders), orjson.loads(shown), strict=False
            ):
                place = {c: i for i, c in enumerate(seen or range(len(pool)))}
                for win, lose in ranking_pairs(order, pairs):
                    left, right = (win, lose) if place[win] < place[lose] else (lose, win)
                    rows["task"].append(int(task))
                    rows["worker"].append(str(worker))
                    rows["left"].append(pool[left][0])
                    rows["right"].append(pool[right][0])
                    rows["label"].append(pool[win][0])
        out = pd.DataFrame(rows)
        out["task"] = out["task"].astype("int64")
        return out

    def left_decisions(self, frame: pd.DataFrame, config: dict) -> Iterator[tuple[str, bool]]:
        """``(worker, preferred the one shown higher)`` for each adjacent pair of every order."""
        table = self.comparisons(frame, config, pairs="adjacent")
        for w, left, label in zip(table["worker"], table["left"], table["label"], strict=True):
            yield str(w), left == label

    def preference_rows(
        self, frame: pd.DataFrame, config: dict, pairs: str, min_agreement: float | None
    ) -> Iterator[tuple]:
        """The consensus orders as ``(task, prompt, chosen, rejected, chosen_id, rejected_id,
        agreement, margin)``, the ``pairs`` of each order; the margin is the difference of the
        two candidates' mean ranks over ``n - 1``."""
        records = data_records(frame, _fields_config(config))
        for task, data, (_, row) in zip(frame.index, records, frame.iterrows(), strict=True):
            order, pool = row["label"], candidates_of(data, config)
            if not isinstance(order, list) or pool is None:
                continue
            if min_agreement is not None and not row["agreement"] >= min_agreement:
                continue
            ranks = row["mean_ranks"]
            for win, lose in ranking_pairs(order, pairs):
                gap = (ranks[lose] - ranks[win]) / max(1, len(order) - 1) if ranks else np.nan
                yield (
                    int(task),
                    prompt_of(data, config),
                    pool[win][1],
                    pool[lose][1],
                    pool[win][0],
                    pool[lose][0],
                    float(row["agreement"]),
                    float(gap),
                )

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        return resources.files(__package__).joinpath("widgets/ranking.js")

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: dict) -> dict:
        """The candidates by descending pseudo score of their item ids."""
        pool = candidates_of(orjson.loads(data_json), config)
        if pool is None:
            digest = hashlib.sha256(data_json.encode()).digest()
            return {"order": [0, 1] if digest[0] % 2 else [1, 0]}
        scores = [item_score(k) for k, _ in pool]
        return {"order": [int(i) for i in np.argsort(scores, kind="stable")[::-1]]}

    def simulate(
        self, truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
    ) -> dict:
        """A Plackett–Luce annotator: the candidates are shown in a random order; each place
        is filled by drawing among the rest with weights :math:`\\exp(\\lambda u_i + \\beta
        [\\text{shown first among the rest}])`, where :math:`u_i` is the candidate's utility
        (its pseudo score, or the truth's order as evenly spaced scores when the truth is a
        gold order; scores over their mean gap 2/√π), :math:`\\lambda = \\mathrm{logit}(accuracy)` and :math:`\\beta` the
        member's own bias toward the candidate shown highest."""
        order = truth.get("order") if isinstance(truth, dict) else truth
        pool = candidates_of(data, config) if data is not None else None
        n = len(pool) if pool is not None else len(order)
        if pool is not None:  # the pseudo scores, best to the truth's first place
            levels = sorted((item_score(k) for k, _ in pool), reverse=True)
        else:
            levels = [(n - 1 - place) / max(1, n - 1) * 2.0 for place in range(n)]
        utility = np.zeros(n)
        for place, pos in enumerate(order):
            utility[int(pos)] = levels[place] / MEAN_GAP
        shown = list(range(n))
        rng.shuffle(shown)
        lam = logit(max(0.5, min(float(accuracy), 0.999)))
        beta = member_bias(accuracy, 2.0)
        rest = list(shown)
        out = []
        while rest:
            weights = [lam * utility[c] + (beta if i == 0 else 0.0) for i, c in enumerate(rest)]
            top = max(weights)
            probs = np.exp(np.array(weights) - top)
            pick = rng.random() * probs.sum()
            i = int(np.searchsorted(np.cumsum(probs), pick, side="right"))
            out.append(rest.pop(min(i, len(rest) - 1)))
        return {"order": out, "shown": shown}


def _fields_config(config: dict) -> dict:
    """The config as :func:`~cynaps_data.types.pairwise.data_records` reads its fields."""
    candidates = config["candidates"]
    ids = config.get("ids")
    return {
        "prompt": config.get("prompt"),
        "candidates": [candidates] if isinstance(candidates, str) else candidates,
        "ids": [ids] if isinstance(ids, str) else ids,
    }


TYPE = Ranking()

__all__ = ["Ranking", "TYPE", "candidates_of"]
