"""Attacks on the ``pairwise`` and ``ranking`` types and the pairwise models with what real users
send: Label Studio shapes with the wrong JSON types, nullable pandas columns, numpy scalars as
parameters, one model on both sides of a pair, Label Studio rankers over numeric item ids, and
task data whose fields mix JSON types. Each test failed before its fix (or names the fix it
waits for)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cynaps_data as cynaps
from cynaps_data import preferences
from cynaps_data.consensus.pairwise import AnnotatorBradleyTerry, BradleyTerry, aggregate_pairwise
from cynaps_data.errors import ValidationError
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.types import get_type

from .conftest import Person, annotate, make_project, started_project

PAIRWISE = get_type("pairwise")
RANKING = get_type("ranking")
ONE_VOTE = {"min_annotators": 1, "consensus_threshold": 0.5, "enable_expert_review": False}
TWO_VOTES = {**ONE_VOTE, "min_annotators": 2, "max_annotators": 2}


def comparisons(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["worker", "left", "right", "label"])


# -- pairwise judgements -----------------------------------------------------------------------
def test_label_studio_selected_of_the_wrong_json_type_is_a_422_not_a_500(
    platform: LocalPlatform, client: cynaps.Client
) -> None:
    """Failed before the fix: ``{"selected": ["left"]}`` raised ``TypeError: unhashable type``
    in the type (a 500 "the platform failed"), and nothing tells the sender what is wrong."""
    project = started_project(
        client,
        [{"prompt": "p", "response_a": "x", "response_b": "y"}],
        annotation_type="pairwise",
        labels={},
        quality_settings=ONE_VOTE,
    )
    person = Person(platform, team_of=client)
    task = person.next(project.id)
    for label in ({"selected": ["left"]}, {"selected": {"side": "left"}}, {"selected": None}):
        r = person.submit(task["task_id"], label)
        assert r.status_code == 422, (label, r.status_code, r.text)
        assert "selected" in r.json()["error"]["message"]
    assert project.export(format="json")[0]["judgements"] == []  # nothing half-written
    assert person.submit(task["task_id"], {"selected": "right"}).status_code == 201


# -- the leaderboard ---------------------------------------------------------------------------
def test_a_pair_with_one_item_on_both_sides_does_not_break_the_leaderboard(
    platform: LocalPlatform, client: cynaps.Client
) -> None:
    """One arena task had the same model on both sides. Failed before the fix: the whole
    project's leaderboard and annotator skills were a ValidationError "left == right ... in
    row(s) 0, 1" — rows of an internal comparisons table the user never saw."""
    config = {"candidates": ["response_a", "response_b"], "ids": ["model_a", "model_b"]}
    tasks = [
        {"prompt": "p0", "response_a": "x0", "response_b": "y0", "model_a": "m", "model_b": "m"},
        {"prompt": "p1", "response_a": "x1", "response_b": "y1", "model_a": "m", "model_b": "n"},
        {"prompt": "p2", "response_a": "x2", "response_b": "y2", "model_a": "n", "model_b": "o"},
    ]
    project = started_project(
        client, tasks, annotation_type="pairwise", labels=config, quality_settings=TWO_VOTES
    )
    ids = project.to_pandas().index.tolist()
    annotate(platform, client, project, {t: ["a", "a"] for t in ids})
    table = preferences.comparisons(project)
    assert (table["left"] != table["right"]).all()
    assert sorted(set(table["task"])) == ids[1:]
    board = preferences.leaderboard(project)
    assert board.index.tolist() == ["m", "n", "o"]
    assert preferences.annotator_skills(project)["n_comparisons"].sum() == len(table)
    # the pair still trains a model: its contents differ
    pairs = preferences.preference_pairs(project)
    assert pairs["chosen"].tolist() == ["x0", "x1", "x2"]


def test_ties_as_pandas_na_are_ties() -> None:
    """A nullable ``string`` column marks a tie with ``pd.NA`` (as ``read_parquet`` with
    ``dtype_backend="numpy_nullable"`` gives it). Failed before the fix: ``TypeError: boolean
    value of NA is ambiguous`` from the label check."""
    rows = [("w", "a", "b", "a"), ("w", "b", "c", None), ("v", "a", "c", "c")]
    plain = comparisons(rows)
    nullable = plain.astype("string")
    assert nullable["label"].isna().sum() == 1
    expected = aggregate_pairwise(plain, "bt")
    got = aggregate_pairwise(nullable, "bt")
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy())
    robust = AnnotatorBradleyTerry().fit(nullable)
    assert set(robust.scores_.index) == {"a", "b", "c"}
    with pytest.raises(ValidationError, match="label"):  # a real bad label still names itself
        aggregate_pairwise(nullable.assign(label=pd.array(["a", pd.NA, "z"], "string")))


def test_model_parameters_accept_numpy_scalars_and_refuse_the_rest() -> None:
    """Parameters straight from numpy/pandas (a grid of ``np.float32``, ``np.int64`` from a
    frame). Failed before the fix: ``prior=np.float32(0.5)`` was refused as "not a positive
    number", ``prior=True`` accepted as 1, and ``tol="x"`` a bare ``ValueError`` from numpy."""
    frame = comparisons([("w", "a", "b", "a"), ("w", "b", "c", "b"), ("w", "c", "a", "a")])
    reference = BradleyTerry(prior=0.5, level=0.9).fit(frame).scores_
    for prior in (np.float32(0.5), np.float64(0.5)):
        model = BradleyTerry(prior=prior, level=np.float32(0.9), n_iter=np.int64(50))
        np.testing.assert_allclose(model.fit(frame).scores_, reference, rtol=1e-6)
    AnnotatorBradleyTerry(skill_prior=np.int64(20), tol=np.float32(1e-6)).fit(frame)
    for params, name in (
        ({"prior": True}, "prior"),
        ({"tol": "x"}, "tol"),
        ({"tol": float("nan")}, "tol"),
        ({"n_iter": True}, "n_iter"),
        ({"level": np.bool_(True)}, "level"),
    ):
        with pytest.raises(ValidationError, match=name) as info:
            aggregate_pairwise(frame, "bt", **params)
        assert info.value.param == name


def test_unhashable_ids_name_their_column() -> None:
    """Failed before the fix: ``TypeError: unhashable type: 'list'`` from pandas."""
    with pytest.raises(ValidationError, match="worker"):
        aggregate_pairwise(comparisons([(["w"], "a", "b", "a")]))
    with pytest.raises(ValidationError, match="left"):
        aggregate_pairwise(comparisons([("w", ["a"], "b", "b")]), "bt")


# -- rankings and Label Studio -----------------------------------------------------------------
def test_label_studio_ranker_over_numeric_item_ids() -> None:
    """Label Studio's ``List`` items with numeric ids (``{"id": 10}``): its ranker names them
    as strings. Failed before the fix: digit strings were taken for positions ("must be a
    permutation" for ids 10, or the wrong order, silently, for ids 1 and 0 swapped)."""
    config = RANKING.validate_config({"prompt": "q", "candidates": "results"})
    data = {"q": "x", "results": [{"id": 1, "text": "a"}, {"id": 0, "text": "b"}, {"id": 10}]}
    studio = {"type": "ranker", "value": {"ranker": {"rank": ["0", "10", "1"]}}}
    value = RANKING.validate_value(RANKING.from_label_studio(studio, config), config, data)
    assert value == {"order": [1, 2, 0]}
    # our export names the items by id, so the round trip is exact
    region = RANKING.label_studio_result({"order": [1, 2, 0], "shown": [2, 1, 0]}, config, data)
    assert region[0]["value"]["ranker"] == {"rank": ["0", "10", "1"]}
    back = RANKING.validate_value(RANKING.from_label_studio(region[0], config), config, data)
    assert back == {"order": [1, 2, 0], "shown": [2, 1, 0]}


def test_a_label_studio_ranking_file_with_numeric_ids_imports_and_round_trips(
    client: cynaps.Client,
) -> None:
    """End to end: a Label Studio export of a ranking project (``List`` items with numeric
    ids, ranker results naming them) imports with the right orders, and our own Label Studio
    export of it imports again unchanged. Failed before the fix: the import took the ids for
    positions (task 1 came back reversed, task 2 was a "permutation" error)."""
    config = {"prompt": "q", "candidates": "results"}

    def studio_task(i: int, items: list[dict], ranks: list[list[str]]) -> dict:
        return {
            "id": 100 + i,
            "data": {"q": f"query {i}", "results": items},
            "annotations": [
                {
                    "id": 10 * i + k,
                    "completed_by": k + 1,
                    "result": [
                        {
                            "from_name": "rank",
                            "to_name": "results",
                            "type": "ranker",
                            "value": {"ranker": {"rank": rank}},
                        }
                    ],
                }
                for k, rank in enumerate(ranks)
            ],
        }

    first = [{"id": 1, "text": "one"}, {"id": 0, "text": "zero"}]
    second = [{"id": 5, "text": "five"}, {"id": 7, "text": "seven"}, {"id": 9, "text": "nine"}]
    records = [
        studio_task(0, first, [["1", "0"], ["1", "0"]]),
        studio_task(1, second, [["9", "5", "7"], ["9", "7", "5"]]),
    ]
    project = make_project(
        client, annotation_type="ranking", labels=config, quality_settings=TWO_VOTES
    )
    assert project.import_label_studio(records)["created"] == 2
    frame = project.to_pandas()
    assert frame["orders"].tolist() == ["[[0,1],[0,1]]", "[[2,0,1],[2,1,0]]"]
    assert frame["ranked_ids"].tolist()[0] == '["1","0"]'
    copy = make_project(
        client, annotation_type="ranking", labels=config, quality_settings=TWO_VOTES
    )
    assert copy.import_label_studio(project.export(format="label_studio"))["created"] == 2
    copied = copy.to_pandas()
    assert copied["orders"].tolist() == frame["orders"].tolist()
    assert copied["label"].tolist() == frame["label"].tolist()


# -- task data mixing JSON types -------------------------------------------------------------
def test_item_ids_and_texts_survive_a_data_column_of_mixed_json_types(
    platform: LocalPlatform, client: cynaps.Client
) -> None:
    config = {"candidates": ["response_a", "response_b"], "ids": ["model_a", "model_b"]}
    tasks = [
        {"prompt": "p1", "response_a": "Hello", "response_b": {"text": "Hi"}, "model_a": 1,
         "model_b": "gpt"},
        {"prompt": "p2", "response_a": "Yo", "response_b": "Hey", "model_a": "gpt",
         "model_b": 1},
    ]  # fmt: skip
    project = started_project(
        client, tasks, annotation_type="pairwise", labels=config, quality_settings=ONE_VOTE
    )
    frame = project.to_pandas()
    # a field whose values mix JSON types is one text column: strings as they are, other
    # values as their JSON text (failed before: every value as JSON text, '"gpt"' quoted)
    assert frame["model_b"].tolist() == ["gpt", "1"]
    assert frame["response_b"].tolist() == ['{"text":"Hi"}', "Hey"]
    ids = frame.index.tolist()
    annotate(platform, client, project, {ids[0]: ["b"], ids[1]: ["a"]})
    assert set(preferences.comparisons(project)["label"]) == {"gpt"}
    assert preferences.to_trl(project)["chosen"] == ['{"text":"Hi"}', "Yo"]


def test_a_tie_is_not_a_win_for_an_item_called_tie(
    platform: LocalPlatform, client: cynaps.Client
) -> None:
    """Item ids are the user's: a model may be called ``"tie"``. Failed before the fix: a tie
    between ``"tie"`` and ``"b"`` became the comparison label ``"tie"``, which the models read
    as a win for the item ``"tie"`` (and the leaderboard ranked it first)."""
    config = {"candidates": ["response_a", "response_b"], "ids": ["model_a", "model_b"]}
    tasks = [
        {"prompt": f"p{i}", "response_a": f"x{i}", "response_b": f"y{i}", "model_a": "tie",
         "model_b": "b"}
        for i in range(2)
    ]  # fmt: skip
    project = started_project(
        client, tasks, annotation_type="pairwise", labels=config, quality_settings=TWO_VOTES
    )
    ids = project.to_pandas().index.tolist()
    annotate(platform, client, project, {t: ["tie", "tie"] for t in ids})
    assert preferences.comparisons(project)["label"].isna().all()
    board = preferences.leaderboard(project, "bt")
    assert board["score"].to_numpy() == pytest.approx([0.0, 0.0], abs=1e-9)


def test_a_task_without_its_candidates_is_refused_at_upload(client: cynaps.Client) -> None:
    """A pairwise task lacking a candidate (or a ranking task without its list) could never
    be judged: every judgement on it was a 422, so it sat in the queue with its deposit
    locked. Now the upload is refused, naming the task and the field, with nothing stored,
    on the JSON path and the DataFrame (Arrow) path."""
    config = {"candidates": ["response_a", "response_b"], "ids": ["model_a", "model_b"]}
    project = make_project(client, annotation_type="pairwise", labels=config)
    good = {"response_a": "x", "response_b": "y", "model_a": "m1", "model_b": "m2"}
    no_b = {"response_a": "x", "response_b": None, "model_a": "m1", "model_b": "m2"}
    no_id = {"response_a": "x", "response_b": "y", "model_a": "m1"}
    with pytest.raises(cynaps.errors.ValidationError, match=r"tasks\[1\]\.data: .*'response_b'"):
        project.upload_tasks([good, no_b])
    with pytest.raises(cynaps.errors.ValidationError, match=r"tasks\[1\]\.data: .*'model_b'"):
        project.upload_dataframe(pd.DataFrame([good, no_id]), progress=False)
    assert project.to_pandas().empty
    ranking = make_project(client, annotation_type="ranking", labels={"candidates": "responses"})
    with pytest.raises(cynaps.errors.ValidationError, match=r"tasks\[0\]\.data: .*'responses'"):
        ranking.upload_tasks([{"responses": ["only one"]}])
    assert ranking.upload_tasks([{"responses": ["a", "b"]}]).created == 1
