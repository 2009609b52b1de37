"""Attacks on the ``rating``, ``multi_label`` and ``text`` types with the values real users send
(numpy scalars, nullable pandas dtypes, missing values, odd parameters): each test pins a bug
that was found, against the real platform where the bug shows end to end.
"""

from __future__ import annotations

import io

import numpy as np
import orjson
import pandas as pd
import pytest

import cynaps_data as cynaps
from cynaps_data.consensus.multilabel import share_consensus
from cynaps_data.consensus.rating import aggregate_ratings, rating_alpha, rating_consensus
from cynaps_data.consensus.text import (
    TextMedoid,
    TextROVER,
    text_agreement,
    text_alpha,
    word_error_rate,
)
from cynaps_data.errors import ValidationError
from cynaps_data.types import get_type

from .conftest import Person, make_project

RATING = get_type("rating")
MULTI = get_type("multi_label")
TEXT = get_type("text")
QUALITY = {
    "min_annotators": 2,
    "consensus_threshold": 0.66,
    "enable_expert_review": False,
    "max_annotators": 2,
}


def _run(platform, client, project, answers: dict[str, list]) -> None:
    """Pay, start, and have team annotators answer: annotator k gives the task whose ``text``
    is ``t`` the answer ``answers[t][k]``."""
    project.calculate_deposit()
    project.pay_deposit(payment_method="credits")
    project.start()
    for k in range(len(next(iter(answers.values())))):
        person = Person(platform, name=f"Annotator {k}", team_of=client)
        while (task := person.next(project.id)) is not None:
            response = person.submit(task["task_id"], answers[task["data"]["text"]][k])
            assert response.status_code == 201, response.text


# -- text: missing values must stay missing in the typed export ------------------------------------
def test_text_export_keeps_missing_gold_and_expert_label_missing(platform, client, tmp_path):
    """A task without gold and tasks without an expert verdict: ``gold``/``expert_label`` are
    missing (NaN/None), never the text "None" — which ``astype("str")`` made of them on pandas
    2.2 (a supported version: pandas>=2.2), so the string survived into Parquet, CSV and
    ``datasets`` as if an annotator had typed "None"."""
    project = make_project(client, annotation_type="text", labels=None, quality_settings=QUALITY)
    frame = pd.DataFrame(
        {"text": ["first", "second"], "gold": pd.Series(["hello", None], dtype=object)}
    )
    project.upload_dataframe(frame, gold_column="gold", progress=False)
    _run(platform, client, project, {"first": ["hello"] * 2, "second": ["<b>x</b> 😀"] * 2})
    wide = project.to_pandas()
    assert wide["gold"].isna().tolist() == [False, True]
    assert wide["expert_label"].isna().all()
    assert wide["label"].tolist() == ["hello", "<b>x</b> 😀"]
    for column in ("gold", "label", "expert_label"):
        assert "None" not in wide[column].dropna().tolist(), column
    wide.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back["gold"].isna().tolist() == [False, True]
    csv = pd.read_csv(io.StringIO(wide.to_csv()))
    assert csv["gold"].isna().tolist() == [False, True]


def test_text_to_pandas_columns_on_object_strings() -> None:
    """The hook itself, on the object columns pandas 2.x reads Arrow strings into."""
    config = TEXT.validate_config(None)
    frame = pd.DataFrame(
        {
            "label": pd.Series(["a", None], dtype=object),
            "gold": pd.Series([None, "None"], dtype=object),
            "expert_label": pd.Series([None, None], dtype=object),
        }
    )
    out = TEXT.to_pandas_columns(frame, config)
    assert out["label"].isna().tolist() == [False, True]
    assert out["gold"].isna().tolist() == [True, False]  # a typed "None" stays a text
    assert out["gold"].iloc[1] == "None"
    assert out["expert_label"].isna().all()


# -- offline text aggregation: clear errors, not AttributeError / bare pandas errors ---------------
def test_text_aggregators_name_a_bad_normalizer() -> None:
    frame = pd.DataFrame({"task": [1, 1], "worker": ["a", "b"], "text": ["hi", "hi"]})
    for call in (
        lambda: TextROVER(normalizer="words").fit(frame),
        lambda: TextMedoid(normalizer=None).fit(frame),
        lambda: text_agreement(frame, normalizer="words"),
        lambda: text_alpha(frame, normalizer="words"),
        lambda: word_error_rate(pd.Series(["a"]), pd.Series(["a"]), normalizer="words"),
    ):
        with pytest.raises(ValidationError, match="normalizer must be a TextNormalizer") as info:
            call()
        assert info.value.param == "normalizer"


def test_word_error_rate_refuses_lists_and_repeated_tasks() -> None:
    with pytest.raises(ValidationError, match="hyp must be a pandas Series"):
        word_error_rate(["a b"], pd.Series(["a c"]))
    with pytest.raises(ValidationError, match="ref must be a pandas Series"):
        word_error_rate(pd.Series(["a b"]), ["a c"])
    with pytest.raises(ValidationError, match="hyp has more than one text for task 1"):
        word_error_rate(pd.Series(["a", "b"], index=[1, 1]), pd.Series(["a c"], index=[1]))
    assert word_error_rate(pd.Series(["a b"], index=[1]), pd.Series(["a c"], index=[1])) == (
        0.5,
        0.5,
    )


# -- multi_label ----------------------------------------------------------------------------------
def test_share_consensus_checks_its_threshold() -> None:
    """A NaN or out-of-range threshold silently gave every task the empty set."""
    frame = pd.DataFrame(
        {"task": [1, 1], "worker": ["a", "b"], "labels": [["x"], ["x", "y"]]},
    )
    for bad in (float("nan"), 2, -0.1, "0.5", None, True):
        with pytest.raises(ValidationError, match="threshold must be a number in") as info:
            share_consensus(frame, threshold=bad)
        assert info.value.param == "threshold"
    assert share_consensus(frame, threshold=1.0).labels.tolist() == [["x"]]
    assert share_consensus(frame, threshold=np.float64(0.5)).labels.tolist() == [["x", "y"]]


def test_multi_label_config_accepts_numpy_counts(client) -> None:
    """``min_labels=df.n.min()`` (a numpy int) was refused as "must be an integer in 0..2"."""
    config = MULTI.validate_config(
        {"labels": ["a", "b"], "min_labels": np.int64(1), "max_labels": np.int64(2)}
    )
    assert config == {"labels": ["a", "b"], "min_labels": 1, "max_labels": 2}
    assert orjson.loads(orjson.dumps(config)) == config
    assert all(type(config[k]) is int for k in ("min_labels", "max_labels"))
    with pytest.raises(ValueError, match="labels.min_labels"):
        MULTI.validate_config({"labels": ["a", "b"], "min_labels": np.int64(3)})


# -- rating ---------------------------------------------------------------------------------------
def test_rating_config_is_plain_json_with_numpy_numbers() -> None:
    """A numpy tolerance came back as numpy (orjson cannot write it); numpy ints were refused."""
    config = RATING.validate_config({"min": 1, "max": 5, "tolerance": np.float64(0.5)})
    assert type(config["tolerance"]) is float
    orjson.dumps(config)
    config = RATING.validate_config({"min": 1, "max": 5, "tolerance": np.int64(2)})
    assert config["tolerance"] == 2 and type(config["tolerance"]) is int
    for bad in (np.bool_(True), True, np.float64("nan"), -1, "1"):
        with pytest.raises(ValueError, match="labels.tolerance"):
            RATING.validate_config({"min": 1, "max": 5, "tolerance": bad})


def test_text_config_accepts_a_numpy_max_length() -> None:
    config = TEXT.validate_config({"max_length": np.int64(50)})
    assert config["max_length"] == 50 and type(config["max_length"]) is int
    with pytest.raises(ValueError, match="labels.max_length"):
        TEXT.validate_config({"max_length": np.int64(0)})


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([True, False, True, True]),
        pd.array([True, False, True, None], dtype="boolean"),
        pd.Series([3, True, 4, 5], dtype=object),
    ],
    ids=["bool", "boolean", "object"],
)
def test_offline_rating_functions_refuse_booleans(values) -> None:
    """True/False were silently rated 1/0 (a boolean column is not a rating scale)."""
    frame = pd.DataFrame({"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"], "value": values})
    if frame["value"].isna().any():
        frame = frame.fillna({"value": True})
    for call in (
        lambda: aggregate_ratings(frame, "mean"),
        lambda: aggregate_ratings(frame, "auto"),
        lambda: rating_consensus(frame, tolerance=1),
        lambda: rating_alpha(frame, "interval"),
    ):
        with pytest.raises(ValidationError, match="holds booleans, not ratings") as info:
            call()
        assert info.value.param == "value"
    # numbers (also as numeric strings and nullable ints) still work
    ok = frame.assign(value=pd.array([3, 4, 5, 5], dtype="Int64"))
    assert aggregate_ratings(ok, "mean").scores_.tolist() == [3.5, 5.0]


# -- fixed outside the type modules -------------------------------------------------------------
def test_multi_label_predictions_as_label_sets(client) -> None:
    project = make_project(
        client, annotation_type="multi_label", labels=["x", "y"], quality_settings=QUALITY
    )
    """A multi-label prediction is a list of labels (failed before: read as a list of
    predictions, each refused); a list of such sets is still several predictions."""
    frame = pd.DataFrame({"text": ["a", "b"], "pred": [["x"], ["x", "y"]]})
    assert project.upload_dataframe(frame, prediction_column="pred", progress=False).created == 2
    many = pd.DataFrame({"text": ["c"], "pred": [[["x"], ["y"]]]})
    assert project.upload_dataframe(many, prediction_column="pred", progress=False).created == 1
    bad = pd.DataFrame({"text": ["d"], "pred": [["x", "nope"]]})
    with pytest.raises(cynaps.errors.ValidationError, match="pred"):
        project.upload_dataframe(bad, prediction_column="pred", progress=False)


def test_label_studio_bad_rating_names_the_problem(client) -> None:
    """Failed before: the type's own error was swallowed ("no rating result to import")."""
    project = make_project(
        client, annotation_type="rating", labels={"min": 1, "max": 5}, quality_settings=QUALITY
    )
    region = {"from_name": "r", "to_name": "text", "type": "rating", "value": {"rating": 3.5}}
    records = [{"id": 1, "data": {"text": "a"}, "annotations": [{"result": [region]}]}]
    with pytest.raises(cynaps.errors.ValidationError, match="integer"):
        project.import_label_studio(records)


def test_labels_as_numpy_or_pandas_arrays(client) -> None:
    """``labels=df["label"].unique()`` (a numpy object array), a ``pd.Index`` or a
    categorical's categories are lists of labels (failed before: a bare TypeError from the
    JSON encoder); a null among them is the platform's 422 naming ``labels``."""
    frame = pd.DataFrame({"label": ["cat", "dog", "cat"]})
    for labels in (
        frame["label"].unique(),
        pd.Index(["cat", "dog"]),
        frame["label"].astype("category").cat.categories,
        np.array(["cat", "dog"]),
    ):
        project = make_project(client, labels=labels, quality_settings=QUALITY)
        assert project.labels == ["cat", "dog"]
    with pytest.raises(cynaps.errors.ValidationError, match="labels"):
        make_project(client, labels=pd.array(["cat", None], dtype="string"))
