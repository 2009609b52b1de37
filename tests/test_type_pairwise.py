"""The ``pairwise`` annotation type end to end (issue 16): two candidates per task with stable
item ids, a sandbox workforce of position-biased Bradley–Terry annotators, platform consensus
(vote shares, disputes to the expert), typed exports with chosen/rejected, TRL preference
datasets, a leaderboard across tasks, Label Studio both ways and bad judgements refused (422).
"""

from __future__ import annotations

import io
import os
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests

import cynaps_data as cynaps
from cynaps_data import preferences
from cynaps_data.consensus.preferences import item_score
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings
from cynaps_data.types import get_type

PAIRWISE = get_type("pairwise")
CONFIG = {
    "prompt": "prompt",
    "candidates": ["response_a", "response_b"],
    "ids": ["model_a", "model_b"],
    "allow_tie": True,
    "strength": False,
    "reason": False,
}
QUALITY = {"min_annotators": 3, "consensus_threshold": 0.66, "enable_expert_review": True}
MODELS = ["alpha", "bravo", "charlie", "delta", "echo"]
DATA = {"prompt": "Say hi", "response_a": "Hello!", "response_b": "Hi.", "model_a": "m1"}


def pair_data(n: int) -> pd.DataFrame:
    """``n`` prompts, each answered by two of :data:`MODELS` (every pair of models comes up)."""
    rows = []
    pairs = [(a, b) for i, a in enumerate(MODELS) for b in MODELS[i + 1 :]]
    for i in range(n):
        a, b = pairs[i % len(pairs)]
        if i % 2:
            a, b = b, a
        rows.append(
            {
                "prompt": f"Question {i}: explain item {i}.",
                "response_a": f"{a} answers question {i}.",
                "response_b": f"{b} answers question {i}.",
                "model_a": a,
                "model_b": b,
            }
        )
    return pd.DataFrame(rows)


# -- the type on its own -----------------------------------------------------------------------
def test_config_is_checked_and_normalised() -> None:
    assert PAIRWISE.validate_config(None) == {
        "prompt": "prompt",
        "candidates": ["response_a", "response_b"],
        "ids": None,
        "allow_tie": True,
        "strength": False,
        "reason": False,
    }
    composite = PAIRWISE.validate_config({"ids": [["model_a", "rid_a"], "id_b"], "prompt": None})
    assert composite["ids"] == [["model_a", "rid_a"], "id_b"] and composite["prompt"] is None
    bad = [
        (["a", "b"], "labels must be an object"),
        ({"candidates": ["x"]}, "labels.candidates"),
        ({"candidates": ["x", "x"]}, "two different fields"),
        ({"candidates": ["x", 3]}, r"labels.candidates\[1\]"),
        ({"ids": ["a"]}, "labels.ids"),
        ({"ids": [[], "b"]}, r"labels.ids\[0\]"),
        ({"allow_tie": "yes"}, "labels.allow_tie"),
        ({"colour": 1}, "labels.colour"),
    ]
    for config, message in bad:
        with pytest.raises(ValueError, match=message):
            PAIRWISE.validate_config(config)


def test_values_are_choices_with_their_display_order() -> None:
    config = PAIRWISE.validate_config(CONFIG)
    data = {**DATA, "model_b": "m2"}
    assert PAIRWISE.validate_value("a", config, data) == {"choice": "a"}
    assert PAIRWISE.validate_value({"shown": "ba", "choice": "tie"}, config) == {
        "choice": "tie",
        "shown": "ba",
    }
    no_tie = PAIRWISE.validate_config({**CONFIG, "allow_tie": False})
    with pytest.raises(ValueError, match="no ties"):
        PAIRWISE.validate_value("tie", no_tie)
    rich = PAIRWISE.validate_config({**CONFIG, "strength": True, "reason": True})
    value = {"reason": "more polite", "shown": "ab", "strength": "much", "choice": "b"}
    assert list(PAIRWISE.validate_value(value, rich)) == ["choice", "strength", "reason", "shown"]
    for bad, message in (
        ("left", "label.choice"),
        (None, "pairwise label"),
        (1, "pairwise label"),
        ({"choice": "a", "shown": "aa"}, "label.shown"),
        ({"choice": "a", "strength": "much"}, "label.strength is not asked"),
        ({"choice": "a", "reason": "why"}, "label.reason is not asked"),
        ({"choice": "a", "colour": 1}, "label.colour"),
    ):
        with pytest.raises(ValueError, match=message):
            PAIRWISE.validate_value(bad, config)
    with pytest.raises(ValueError, match="empty for a tie"):
        PAIRWISE.validate_value({"choice": "tie", "strength": "much"}, rich)
    with pytest.raises(ValueError, match="slightly"):
        PAIRWISE.validate_value({"choice": "a", "strength": "very"}, rich)
    # the task's data must hold both candidates
    with pytest.raises(ValueError, match="candidate b field 'response_b'"):
        PAIRWISE.validate_value("a", config, {"response_a": "x"})


def test_label_studio_pairwise_both_ways() -> None:
    config = PAIRWISE.validate_config(CONFIG)
    left = PAIRWISE.to_label_studio({"choice": "a"}, config)
    assert left == {"type": "pairwise", "value": {"selected": "left"}}
    right = PAIRWISE.to_label_studio({"choice": "b", "shown": "ba"}, config)
    assert right["value"]["selected"] == "right"
    assert PAIRWISE.from_label_studio(right, config) == {"choice": "b", "shown": "ba"}
    tie = PAIRWISE.to_label_studio({"choice": "tie"}, config)
    assert PAIRWISE.validate_value(PAIRWISE.from_label_studio(tie, config), config) == {
        "choice": "tie"
    }
    # Label Studio's own region (no extras) and the value shape directly
    studio = {
        "from_name": "pw",
        "to_name": "t1,t2",
        "type": "pairwise",
        "value": {"selected": "right"},
    }
    assert PAIRWISE.from_label_studio(studio, config) == {"choice": "b"}
    assert PAIRWISE.validate_value({"selected": "left"}, config) == {"choice": "a"}
    with pytest.raises(ValueError, match="left' or 'right"):
        PAIRWISE.validate_value({"selected": "middle"}, config)
    with pytest.raises(ValueError, match="pairwise"):
        PAIRWISE.from_label_studio({"type": "rating", "value": {"rating": 3}}, config)


def test_decision_is_the_vote_share_and_disputes_go_to_the_expert() -> None:
    config = PAIRWISE.validate_config(CONFIG)
    q = {**QUALITY, "max_annotators": 5}
    agreed = PAIRWISE.decide(["a", {"choice": "a", "shown": "ba"}, "b"], q, 3, config)
    assert (agreed.status, agreed.final_label, agreed.label_source) == (
        "completed",
        {"choice": "a"},
        "consensus",
    )
    assert agreed.agreement == pytest.approx(2 / 3)
    assert PAIRWISE.decide(["a", "b", "tie"], q, 3, config).status == "disputed"
    assert PAIRWISE.decide(["a"], q, 3, config).status == "pending"
    no_review = {**q, "enable_expert_review": False}
    more = PAIRWISE.decide(["a", "b", "tie"], no_review, 3, config)
    assert (more.status, more.needed) == ("pending", 4)
    last = PAIRWISE.decide(["a", "b", "a", "b", "tie"], no_review, 5, config)
    assert last.final_label == {"choice": "tie"} and last.label_source == "majority"
    no_tie = PAIRWISE.validate_config({**CONFIG, "allow_tie": False})
    last = PAIRWISE.decide(
        ["b", "a", "a", "b", "b", "a"], {**no_review, "max_annotators": 6}, 6, no_tie
    )
    assert last.final_label == {"choice": "b"}  # the side voted first


def test_summary_reports_shares_and_position_bias() -> None:
    config = PAIRWISE.validate_config({**CONFIG, "strength": True, "reason": True})
    votes = [
        {"choice": "a", "shown": "ab", "strength": "much"},
        {"choice": "a", "shown": "ab", "strength": "slightly", "reason": "clearer"},
        {"choice": "b", "shown": "ba"},
        {"choice": "tie", "shown": "ba"},
    ]
    summary = PAIRWISE.summarize(votes, config)
    assert summary["choice_shares"] == {"a": 0.5, "b": 0.25, "tie": 0.25}
    bias = summary["position_bias"]
    assert bias["n_decisive"] == 3 and bias["left_rate"] == 1.0  # every decisive vote: left
    assert bias["p_value"] == pytest.approx(0.25)  # 2 * (1/2)^3
    assert summary["strength_counts"] == {"a": {"much": 1, "slightly": 1}}
    assert summary["reasons"] == ["clearer"]


def test_export_columns_from_the_votes() -> None:
    import orjson

    from cynaps_data.types.base import VoteArrays

    config = PAIRWISE.validate_config({**CONFIG, "strength": True, "reason": True})
    votes = [
        {"choice": "a", "strength": "much", "reason": 'says "shown":"ba"', "shown": "ab"},
        {"choice": "b", "shown": "ab"},
        "a",  # a plain string (as stored before normalisation) still counts
        {"choice": "tie", "shown": "ba"},
    ]
    texts = pa.array([orjson.dumps(v).decode() for v in votes])
    arrays = VoteArrays(
        3,
        np.array([0, 0, 0, 2]),
        texts,
        np.array([3, 0, 1]),
        pa.array(['{"choice":"a"}', "", '{"choice":"tie"}']),
        pa.array(["", '{"choice":"b"}', ""]),
        pa.array(["", "", '{"choice":"tie"}']),
    )
    cols = {k: v.to_pylist() for k, v in PAIRWISE.wide_columns(arrays, config).items()}
    assert cols["label"] == ["a", None, "tie"] and cols["gold"] == [None, "b", None]
    assert cols["expert_label"] == [None, None, "tie"]
    assert cols["share_a"][0] == pytest.approx(2 / 3) and cols["share_a"][1] is None
    assert cols["margin"][0] == pytest.approx(1 / 3) and cols["margin"][2] is None
    assert cols["confidence"] == [pytest.approx(2 / 3), None, 1.0]
    assert cols["left_rate"][0] == 0.5  # a shown left and won; b shown right and won
    assert cols["choices"] == [["a", "b", "a"], [], ["tie"]]
    assert cols["shown"] == [["ab", "ab", None], [], ["ba"]]
    assert cols["strengths"] == [["much", None, None], [], [None]]
    assert cols["reasons"][0][0] == 'says "shown":"ba"'
    assert PAIRWISE.long_label(texts, config).to_pylist() == ["a", "b", "a", "tie"]


def test_simulated_annotators_follow_the_score_gap_and_their_position_bias() -> None:
    config = PAIRWISE.validate_config({**CONFIG, "allow_tie": False})

    def data(a: str, b: str) -> dict:
        return {"prompt": "p", "response_a": a, "response_b": b, "model_a": a, "model_b": b}

    ranked = sorted(MODELS, key=item_score, reverse=True)
    far = data(ranked[0], ranked[-1])
    import orjson

    truth = PAIRWISE.pseudo_truth(orjson.dumps(far).decode(), config)
    assert truth == {"choice": "a"}  # the best model is candidate a here
    assert PAIRWISE.pseudo_truth(orjson.dumps(far).decode(), config) == truth

    def right_rate(d: dict, accuracy: float) -> float:
        answers = [
            PAIRWISE.simulate(truth, config, accuracy, random.Random(i), d) for i in range(600)
        ]
        assert {a["shown"] for a in answers} == {"ab", "ba"}
        return float(np.mean([a["choice"] == "a" for a in answers]))

    assert right_rate(far, 0.95) > right_rate(far, 0.65) > 0.5
    gaps = {(x, y): abs(item_score(x) - item_score(y)) for x in MODELS for y in MODELS if x != y}
    close = min(gaps, key=gaps.get)
    wide = max(gaps, key=gaps.get)
    assert right_rate(data(*wide), 0.8) > right_rate(data(*close), 0.8)

    # position bias: each accuracy has its own lean toward the left candidate
    def left_rate(accuracy: float) -> float:
        d = data(*close)
        answers = [
            PAIRWISE.simulate(truth, config, accuracy, random.Random(i), d) for i in range(600)
        ]
        return float(np.mean([a["choice"] == a["shown"][0] for a in answers]))

    leans = [left_rate(a) for a in (0.6, 0.61, 0.62, 0.63, 0.64, 0.65)]
    assert max(leans) - min(leans) > 0.15, leans


def test_client_aggregation_over_choices() -> None:
    config = PAIRWISE.validate_config(CONFIG)
    votes = pd.DataFrame(
        {
            "task": [1, 1, 1, 2, 2, 2],
            "worker": ["x", "y", "z"] * 2,
            "label": ["a", "a", "b", "b", "b", "tie"],
        }
    )
    out = PAIRWISE.aggregate(votes, "mv", config)
    assert list(out.columns) == [
        "mv_label",
        "mv_confidence",
        "mv_proba.a",
        "mv_proba.b",
        "mv_proba.tie",
    ]
    assert out["mv_label"].tolist() == ["a", "b"]
    with pytest.raises(cynaps.errors.ValidationError, match="method"):
        PAIRWISE.aggregate(votes, "bradley_terry", config)
    empty = PAIRWISE.aggregate(votes.iloc[:0], "auto", config)
    assert empty.empty and "auto_label" in empty.columns


# -- TRL: the columns and types of https://huggingface.co/docs/trl/dataset_formats ------------
#: TRL's documented preference formats: column -> "string" or "messages" (a list of
#: {"role", "content"} dicts, declared as a list of structs of two strings) or "bool"
TRL_FORMATS = {
    "standard": {"prompt": "string", "chosen": "string", "rejected": "string"},
    "implicit": {"chosen": "string", "rejected": "string"},
    "conversational": {"prompt": "messages", "chosen": "messages", "rejected": "messages"},
    "conversational_implicit": {"chosen": "messages", "rejected": "messages"},
    "unpaired": {"prompt": "string", "completion": "string", "label": "bool"},
    "conversational_unpaired": {"prompt": "messages", "completion": "messages", "label": "bool"},
}


def check_trl_format(ds: Any, fmt: str) -> None:
    import datasets

    expected = TRL_FORMATS[fmt]
    assert list(ds.features) == list(expected), (fmt, ds.features)
    for column, kind in expected.items():
        feature = ds.features[column]
        if kind == "string":
            assert feature == datasets.Value("string"), (fmt, column)
            assert all(isinstance(x, str) for x in ds[column])
        elif kind == "bool":
            assert feature == datasets.Value("bool")
        else:
            inner = feature.feature if hasattr(feature, "feature") else feature[0]
            assert dict(inner) == {
                "content": datasets.Value("string"),
                "role": datasets.Value("string"),
            }, (fmt, column, feature)
            for messages in ds[column]:
                assert messages and all(set(m) == {"role", "content"} for m in messages)
                assert all(m["role"] in ("user", "assistant", "system") for m in messages)
    if fmt.startswith("conversational") and "prompt" in expected:
        assert ds[0]["prompt"][0]["role"] == "user"
        assert ds[0][next(c for c in expected if c != "prompt")][-1]["role"] == "assistant"
    if fmt.endswith("unpaired"):
        assert ds["label"][::2] == [True] * (len(ds) // 2)
        assert ds["label"][1::2] == [False] * (len(ds) // 2)


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Iterator[LocalPlatform]:
    """A platform with a sandbox workforce: 4 annotators of accuracy 0.75-0.95 and an expert."""
    db = tmp_path_factory.mktemp("pairwise") / "cynaps.db"
    workforce = WorkforceSettings(
        annotators=4, experts=1, seconds_per_judgement=0.02, accuracy=(0.75, 0.95), seed=5
    )
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


@pytest.fixture(scope="module")
def finished(crowd: LocalPlatform) -> Iterator[tuple]:
    """30 prompts answered by two of five models each, judged to completion."""
    with cynaps.Client(api_key=crowd.create_customer(), base_url=crowd.base_url) as client:
        with pytest.raises(cynaps.errors.ValidationError, match="labels.candidates"):
            client.projects.create(
                name="bad", annotation_type="pairwise", labels={"candidates": ["x"]}
            )
        project = client.projects.create(
            name="Arena", annotation_type="pairwise", labels=CONFIG, quality_settings=QUALITY
        )
        assert project.labels == CONFIG
        df = pair_data(30)
        with pytest.raises(cynaps.errors.CynapsError, match="label.choice"):
            project.upload_dataframe(df.assign(gold="left"), gold_column="gold", progress=False)
        assert project.upload_dataframe(df, progress=False).created == 30
        assert (
            project.calculate_deposit().amount == "1950.00"
        )  # 30 × (3 × 20.00 + 5.00 expert reserve)
        project.pay_deposit(payment_method="credits")
        project.start()
        project.wait(timeout=180, poll_interval=0.2, progress=False)
        yield client, project, df


def test_a_pairwise_project_runs_end_to_end(finished: tuple) -> None:
    client, project, df = finished
    assert project.get_status().is_complete
    wide = project.to_arrow()
    for column in ("label", "gold", "expert_label"):
        assert wide.schema.field(column).type == pa.string(), column
    for column in ("agreement", "confidence", "share_a", "share_b", "share_tie", "margin"):
        assert wide.schema.field(column).type == pa.float64(), column
    assert wide.schema.field("choices").type == pa.list_(pa.string())
    frame = project.to_pandas()
    assert len(frame) == 30
    for task, row in frame.iterrows():
        choices = row["choices"]
        assert (
            len(choices) == len(row["shown"]) == len(row["annotator_ids"]) == row["n_annotations"]
        )
        assert set(row["shown"]) <= {"ab", "ba"}
        assert row["share_a"] == pytest.approx(choices.count("a") / len(choices))
        if row["label"] in ("a", "b"):
            win, lose = (0, 1) if row["label"] == "a" else (1, 0)
            data = df.iloc[task - frame.index[0]]
            assert row["chosen_id"] == data[["model_a", "model_b"][win]]
            assert row["rejected_id"] == data[["model_a", "model_b"][lose]]
            assert row["chosen"] == data[["response_a", "response_b"][win]]
            assert row["margin"] == pytest.approx(
                (choices.count(row["label"]) - choices.count("ab"[lose])) / len(choices)
            )
        if row["label_source"] == "consensus":
            assert row["agreement"] >= 0.66
    # the sandbox's pseudo truth: the model with the higher hidden score mostly wins
    decided = frame[frame["label"].isin(["a", "b"])]
    right = sum(
        item_score(r["chosen_id"]) > item_score(r["rejected_id"]) for _, r in decided.iterrows()
    )
    assert right / len(decided) >= 0.7, (right, len(decided))

    records = project.export(format="json")
    consensus = records[0]["consensus"]
    assert set(consensus["choice_shares"]) == {"a", "b", "tie"}
    assert consensus["position_bias"]["n_decisive"] <= consensus["n_annotations"]

    # Label Studio both ways: the same judgements (display orders included) in a new project
    studio = project.export(format="label_studio")
    region = studio[0]["annotations"][0]["result"][0]
    assert region["type"] in ("pairwise", "choices")
    copy = client.projects.create(
        name="Arena copy", annotation_type="pairwise", labels=CONFIG, quality_settings=QUALITY
    )
    assert copy.import_label_studio(studio)["created"] == 30
    copied = copy.to_pandas()
    assert copied["choices"].tolist() == frame["choices"].tolist()
    assert copied["shown"].tolist() == frame["shown"].tolist()
    assert copied["label"].tolist() == frame["label"].tolist()


def test_the_pandas_export_survives_every_sink(finished: tuple, tmp_path) -> None:
    import datasets

    _client, project, _df = finished
    frame = project.to_pandas().reset_index()
    frame.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert back["label"].tolist() == frame["label"].tolist()
    assert back["choices"].map(list).tolist() == frame["choices"].tolist()
    assert back["chosen_id"].tolist() == frame["chosen_id"].tolist()
    frame.to_feather(tmp_path / "f.feather")
    assert pd.read_feather(tmp_path / "f.feather")["margin"].equals(frame["margin"])
    assert pickle.loads(pickle.dumps(frame))["chosen"].equals(frame["chosen"])
    csv = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    assert csv["rejected_id"].fillna("").tolist() == frame["rejected_id"].fillna("").tolist()
    ds = datasets.Dataset.from_pandas(frame)
    # pandas 3's ``str`` columns arrive as Arrow large_string
    assert ds.features["label"] in (datasets.Value("string"), datasets.Value("large_string"))
    assert ds["chosen_id"] == frame["chosen_id"].tolist()
    assert ds.features["share_a"] == datasets.Value("float64")
    with_method = project.to_pandas(method="auto")
    assert {"auto_label", "auto_confidence", "auto_proba.a"} <= set(with_method.columns)
    with_method.reset_index().to_parquet(tmp_path / "m.parquet")
    typed = project.to_dataset()
    assert typed.features["choices"] == datasets.Sequence(datasets.Value("string"))


def test_trl_datasets_have_the_documented_columns(finished: tuple, tmp_path) -> None:
    _client, project, df = finished
    frame = project.to_pandas()
    decided = frame[frame["label"].isin(["a", "b"])]
    for fmt in TRL_FORMATS:
        ds = preferences.to_trl(project, fmt)
        check_trl_format(ds, fmt)
        assert len(ds) == len(decided) * (2 if fmt.endswith("unpaired") else 1)
    standard = preferences.to_trl(frame)
    assert standard["chosen"] == decided["chosen"].tolist()
    assert standard["prompt"] == df.loc[decided.index - frame.index[0], "prompt"].tolist()
    implicit = preferences.to_trl(frame, "implicit")
    assert implicit[0]["chosen"] == standard[0]["prompt"] + "\n\n" + standard[0]["chosen"]
    strict = preferences.to_trl(frame, min_agreement=1.0, margin=True)
    assert len(strict) == int((decided["agreement"] >= 1.0).sum())
    assert set(strict["margin"]) <= {1.0}
    standard.to_parquet(tmp_path / "trl.parquet")  # the dataset's own sink
    with pytest.raises(cynaps.errors.ValidationError, match="format"):
        preferences.to_trl(frame, "sharegpt")


def test_the_trl_dataset_is_what_trl_reads(finished: tuple) -> None:
    trl = pytest.importorskip(
        "trl.data_utils", reason="trl is not installed (optional; the column test above runs)"
    )
    _client, project, _df = finished
    standard = preferences.to_trl(project)
    conversational = preferences.to_trl(project, "conversational")
    assert not trl.is_conversational(standard[0])
    assert trl.is_conversational(conversational[0])
    unpaired = preferences.to_trl(project, "unpaired")
    assert trl.unpair_preference_dataset(standard).column_names == unpaired.column_names


def test_leaderboard_and_annotator_position_bias(finished: tuple) -> None:
    _client, project, _df = finished
    board = preferences.leaderboard(project)
    assert set(board.index) == set(MODELS)
    assert list(board.columns[:6]) == ["score", "se", "ci_low", "ci_high", "rank", "n_comparisons"]
    assert board["rank"].is_monotonic_increasing
    truth = pd.Series({m: item_score(m) for m in MODELS})
    corr = np.corrcoef(board["score"], truth[board.index])[0, 1]
    assert corr > 0.7, (board, truth)
    table = preferences.comparisons(project)
    assert len(table) == project.to_pandas()["n_annotations"].sum()
    assert (
        (table["label"] == table["left"])
        | (table["label"] == table["right"])
        | (table["label"] == "tie")
    ).all()
    plain = preferences.leaderboard(project, "bt")
    assert set(plain.index) == set(MODELS)
    assert np.corrcoef(plain["score"], truth[plain.index])[0, 1] > 0.7
    skills = preferences.annotator_skills(project)
    assert list(skills.columns) == ["skill", "bias", "p_left", "n_comparisons"]
    assert (skills["skill"] > 0).all()  # the sandbox's annotators follow the scores
    bias = preferences.position_bias(project)
    assert list(bias.columns) == ["n_decisive", "left_rate", "p_value"]
    assert set(bias.index) == set(skills.index)
    assert bias["n_decisive"].sum() == (table["label"] != "tie").sum()
    assert bias["left_rate"].between(0, 1).all()


def test_bad_choices_are_a_422_and_nothing_is_stored(platform: LocalPlatform) -> None:
    customer = platform.create_customer()

    def call(method: str, path: str, key: str = customer, **kw) -> requests.Response:
        return requests.request(
            method,
            platform.base_url + path,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            **kw,
        )

    labels = {**CONFIG, "allow_tie": False, "ids": None}
    body = {"name": "Bad pairs", "annotation_type": "pairwise", "labels": labels}
    quality = {**QUALITY, "min_annotators": 1}
    pid = call("POST", "/v1/projects", json={**body, "quality_settings": quality}).json()["id"]
    tasks = {"tasks": [{"data": {"prompt": "p", "response_a": "x", "response_b": "y"}}]}
    call("POST", f"/v1/projects/{pid}/tasks/batch", json=tasks)
    call("POST", f"/v1/projects/{pid}/deposit/quote")
    call("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    annotator = call("POST", "/v1/annotators", json={"name": "Judge"}).json()["api_key"]
    task_id = call("GET", "/v1/annotator/next", annotator).json()["task_id"]
    judge = f"/v1/annotator/tasks/{task_id}/judgements"
    for label, words in (
        ("tie", "no ties"),
        ("c", "label.choice"),
        ({"choice": "a", "shown": "left"}, "label.shown"),
        ({"choice": "a", "strength": "much"}, "label.strength"),
        (None, "pairwise label"),
        (["a"], "pairwise label"),
    ):
        r = call("POST", judge, annotator, json={"label": label})
        assert r.status_code == 422, (label, r.text)
        assert words in r.json()["error"]["message"], (label, r.json())
    assert call("GET", f"/v1/projects/{pid}/export").json()[0]["judgements"] == []
    ok = call("POST", judge, annotator, json={"label": {"choice": "b", "shown": "ba"}})
    assert ok.status_code in (200, 201), ok.text
    record = call("GET", f"/v1/projects/{pid}/export").json()[0]
    assert [j["label"] for j in record["judgements"]] == [{"choice": "b", "shown": "ba"}]
    assert record["annotations"][0]["result"]["value"] == {"choice": "b"}


# -- the widget in a real browser (as tests/test_type_rating.py) --------------------------------
CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_ENV = "CYNAPS_WIDGET_SCREENSHOTS"
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


def test_annotator_chooses_with_the_keyboard_and_sides_are_recorded(
    platform: LocalPlatform, page
) -> None:
    """The pair is drawn side by side in a random order (the page's data box hidden), key 2
    picks the right one, 3 a tie, Enter submits; the stored choice names the candidate by its
    data place and records the order it was shown in. Text is text: markup is not parsed."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(platform.base_url) else r.abort(),
    )
    page.set_default_timeout(10_000)
    customer = platform.create_customer("Pairwise customer")

    def ok(method: str, path: str, key: str = customer, **kw) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    long_a = "\n".join(f"Line {i} of a long answer from the first model." for i in range(80))
    data = [
        {
            "prompt": "Write a short greeting for a <b>new</b> user.",
            "response_a": long_a,
            "response_b": "<img src=x onerror=alert(1)> Welcome aboard!\n" + long_a[:2000],
            "model_a": "alpha",
            "model_b": "bravo",
        },
        {
            "prompt": "Second",
            "response_a": "one",
            "response_b": "two",
            "model_a": "a",
            "model_b": "b",
        },
    ]
    quality = {**QUALITY, "min_annotators": 1}
    body = {"name": "Which is better?", "annotation_type": "pairwise", "labels": CONFIG}
    pid = ok("POST", "/v1/projects", json={**body, "quality_settings": quality})["id"]
    ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": d} for d in data]})
    ok("POST", f"/v1/projects/{pid}/deposit/quote")
    ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    ok("POST", f"/v1/projects/{pid}/start")
    annotator = ok("POST", "/v1/annotators", json={"name": "Pair judge"})["api_key"]

    page.goto(platform.base_url + "/ui/")
    page.fill("#signin-key", annotator)
    page.click("#signin-form button[type=submit]")
    widget = page.locator(".pairwise-widget")
    expect(widget).to_be_visible()
    expect(page.locator("#data")).to_be_hidden()
    expect(page.locator(".pairwise-prompt")).to_contain_text("a <b>new</b> user")
    assert page.locator(".pairwise-widget img").count() == 0  # the markup stayed text
    shown = widget.get_attribute("data-shown")
    assert shown in ("ab", "ba")
    right_text = page.locator(".pairwise-column[data-side=right] .pairwise-pane").inner_text()
    assert right_text.startswith("Line 0") == (shown[1] == "a")
    expect(page.locator("#submit")).to_be_disabled()
    page.keyboard.press("3")
    expect(page.locator(".pairwise-choice[data-choice=tie]")).to_have_attribute(
        "aria-pressed", "true"
    )
    page.keyboard.press("2")
    right = shown[1]
    expect(page.locator(f".pairwise-choice[data-choice={right}]")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#submit")).to_be_enabled()
    if os.environ.get(SCREENSHOT_ENV):
        page.set_viewport_size({"width": 1000, "height": 700})
        page.screenshot(path=str(DOCS_IMG / "widget-pairwise.png"))
    # long texts scroll together: scrolling one pane moves the other
    panes = page.locator(".pairwise-pane")
    panes.nth(0).evaluate("el => { el.scrollTop = el.scrollHeight; }")
    page.wait_for_function("() => document.querySelectorAll('.pairwise-pane')[1].scrollTop > 0")
    task_id = page.locator("#task-id").inner_text()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text(f"Saved task {task_id}")
    first = ok("GET", f"/v1/projects/{pid}/export")[0]
    assert first["judgements"][0]["label"] == {"choice": right, "shown": shown}
    # the next task: 1 picks the left one
    expect(page.locator("#task-id")).not_to_have_text(task_id)
    shown2 = page.locator(".pairwise-widget").get_attribute("data-shown")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    second = ok("GET", f"/v1/projects/{pid}/export")[1]
    assert second["judgements"][0]["label"] == {"choice": shown2[0], "shown": shown2}
