"""The ``ranking`` annotation type end to end (issue 16): N candidates per task (a list field of
Label Studio ``List``-style items, or named fields), orders best first, Borda consensus with
Kendall's W, a sandbox workforce of Plackett–Luce annotators, typed exports, pairs for TRL and
the leaderboard, Label Studio ``ranker`` both ways, bad orders refused (422), and the widget
ranking by number keys in a real browser.
"""

from __future__ import annotations

import io
import os
import pickle
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
import requests

import cynaps_data as cynaps
from cynaps_data import preferences
from cynaps_data.consensus.preferences import item_score, kendall_w, ranking_pairs
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings
from cynaps_data.types import get_type

RANKING = get_type("ranking")
CONFIG = {"prompt": "query", "candidates": "results", "ids": None}
QUALITY = {"min_annotators": 3, "consensus_threshold": 0.5, "enable_expert_review": True}
ENGINES = ["ant", "bee", "cat", "dog", "eel", "fox"]


def result_data(n: int) -> pd.DataFrame:
    """``n`` queries, each with 3 or 4 results (List-style items with ids) from the engines."""
    rows = []
    for i in range(n):
        k = 3 + i % 2
        picked = [ENGINES[(i + j * 5) % len(ENGINES)] for j in range(k)]  # distinct
        rows.append(
            {
                "query": f"query {i}",
                "results": [{"id": e, "text": f"{e} result for query {i}"} for e in picked],
            }
        )
    return pd.DataFrame(rows)


# -- the type on its own -----------------------------------------------------------------------
def test_config_and_values() -> None:
    config = RANKING.validate_config(CONFIG)
    assert config == CONFIG
    fields = RANKING.validate_config({"candidates": ["r1", "r2", "r3"], "ids": ["i1", "i2", "i3"]})
    assert fields["prompt"] == "prompt"
    for bad, message in (
        ({}, "labels.candidates is required"),
        ({"candidates": ["r1"]}, "2-20 fields"),
        ({"candidates": ["r1", "r1"]}, "different fields"),
        ({"candidates": "r", "sort": 1}, "labels.sort"),
        ({"candidates": ["a", "b"], "ids": ["x"]}, "labels.ids"),
    ):
        with pytest.raises(ValueError, match=message):
            RANKING.validate_config(bad)
    data = {"query": "q", "results": [{"id": "x", "text": "1"}, {"id": "y", "text": "2"}, "plain"]}
    assert RANKING.validate_value([2, 0, 1], config, data) == {"order": [2, 0, 1]}
    assert RANKING.validate_value({"order": ["y", 2, "x"], "shown": [0, 1, 2]}, config, data) == {
        "order": [1, 2, 0],
        "shown": [0, 1, 2],
    }
    for bad, message in (
        ([0, 1], "each of the 3 candidates"),
        ([0, 0, 1], "each of the 3 candidates"),
        ([0, 1, 5], "permutation"),
        (["x", "y", "zz"], r"label.order\[2\]"),
        ([0, 1, True], r"label.order\[2\]"),
        ("0,1,2", "ranking label"),
        ({"order": [0, 1, 2], "best": 0}, "label.best"),
    ):
        with pytest.raises(ValueError, match=message):
            RANKING.validate_value(bad, config, data)
    with pytest.raises(ValueError, match="'results'"):
        RANKING.validate_value([0, 1], config, {"query": "q"})
    # Label Studio's ranker region: ids of the List's items in the new order
    studio = {"type": "ranker", "value": {"ranker": {"rank": ["y", "x", "2"]}}}
    assert RANKING.validate_value(RANKING.from_label_studio(studio, config), config, data) == {
        "order": [1, 0, 2]
    }
    region = RANKING.to_label_studio({"order": [2, 0, 1], "shown": [0, 2, 1]}, config)
    assert region["type"] == "ranker" and region["value"]["ranker"] == {"rank": ["2", "0", "1"]}
    assert RANKING.validate_value(RANKING.from_label_studio(region, config), config, data) == {
        "order": [2, 0, 1],
        "shown": [0, 2, 1],
    }


def test_consensus_is_borda_with_kendalls_w() -> None:
    config = RANKING.validate_config(CONFIG)
    q = {**QUALITY, "max_annotators": 4}
    agreed = RANKING.decide([[0, 1, 2], [0, 2, 1], {"order": [0, 1, 2]}], q, 3, config)
    assert agreed.status == "completed" and agreed.final_label == {"order": [0, 1, 2]}
    assert agreed.agreement == pytest.approx(kendall_w([[0, 1, 2], [0, 2, 1], [0, 1, 2]], 3))
    assert kendall_w([[0, 1, 2]] * 3, 3) == 1.0
    assert kendall_w([[0, 1], [1, 0]], 2) == 0.0
    split = RANKING.decide([[0, 1, 2], [2, 1, 0], [1, 0, 2]], q, 3, config)
    assert split.status == "disputed"
    summary = RANKING.summarize([[0, 1, 2], [0, 2, 1]], config)
    assert summary["mean_ranks"] == [1.0, 2.5, 2.5] and summary["top_counts"] == {"0": 2}
    assert ranking_pairs([2, 0, 1]) == [(2, 0), (2, 1), (0, 1)]
    assert ranking_pairs([2, 0, 1], "adjacent") == [(2, 0), (0, 1)]
    assert ranking_pairs([2, 0, 1], "best_worst") == [(2, 1)]


def test_simulated_rankers_follow_the_scores_and_shuffle_the_display() -> None:
    config = RANKING.validate_config(CONFIG)
    data = {"query": "q", "results": [{"id": e, "text": e} for e in ENGINES]}
    truth = RANKING.pseudo_truth(orjson.dumps(data).decode(), config)
    best = max(ENGINES, key=item_score)
    assert ENGINES[truth["order"][0]] == best

    def top_rate(accuracy: float) -> float:
        answers = [
            RANKING.simulate(truth, config, accuracy, random.Random(i), data) for i in range(300)
        ]
        for a in answers:
            assert RANKING.validate_value(a, config, data) == a
        assert len({tuple(a["shown"]) for a in answers}) > 50
        return float(np.mean([a["order"][0] == truth["order"][0] for a in answers]))

    assert top_rate(0.95) > top_rate(0.6)


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Iterator[tuple]:
    db = tmp_path_factory.mktemp("ranking") / "cynaps.db"
    workforce = WorkforceSettings(
        annotators=3, experts=1, seconds_per_judgement=0.02, accuracy=(0.8, 0.95), seed=7
    )
    with (
        LocalPlatform(db, workforce=workforce) as crowd,
        cynaps.Client(api_key=crowd.create_customer(), base_url=crowd.base_url) as client,
    ):
        if True:
            project = client.projects.create(
                name="Search", annotation_type="ranking", labels=CONFIG, quality_settings=QUALITY
            )
            df = result_data(16)
            assert project.upload_dataframe(df, progress=False).created == 16
            project.pay_deposit(payment_method="credits")
            project.start()
            project.wait(timeout=180, poll_interval=0.2, progress=False)
            yield client, project, df


def test_a_ranking_project_runs_end_to_end(finished: tuple, tmp_path) -> None:
    import datasets

    client, project, df = finished
    wide = project.to_arrow()
    assert wide.schema.field("label").type == pa.list_(pa.int64())
    assert wide.schema.field("agreement").type == pa.float64()
    frame = project.to_pandas()
    for task, row in frame.iterrows():
        orders = orjson.loads(row["orders"])
        assert len(orders) == row["n_annotations"] == len(row["annotator_ids"])
        n = len(df.iloc[task - frame.index[0]]["results"])
        assert sorted(row["label"]) == list(range(n))
        assert row["agreement"] == pytest.approx(kendall_w(orders, n))
        assert (
            orjson.loads(row["ranked_ids"])[0]
            == df.iloc[task - frame.index[0]]["results"][row["label"][0]]["id"]
        )
    # every sink
    plain = frame.reset_index()
    plain.to_parquet(tmp_path / "r.parquet")
    assert (
        pd.read_parquet(tmp_path / "r.parquet")["label"].map(list).tolist()
        == plain["label"].tolist()
    )
    plain.to_feather(tmp_path / "r.feather")
    assert pickle.loads(pickle.dumps(plain))["orders"].equals(plain["orders"])
    assert (
        pd.read_csv(io.StringIO(plain.to_csv(index=False)))["orders"].tolist()
        == plain["orders"].tolist()
    )
    ds = datasets.Dataset.from_pandas(plain)
    assert ds["label"] == plain["label"].tolist()
    assert project.to_dataset().features["label"] == datasets.Sequence(datasets.Value("int64"))
    again = project.to_pandas(method="borda")
    by_votes = frame["label_source"] == "consensus"  # the others an expert decided
    assert by_votes.sum() >= 8
    assert (
        again.loc[by_votes, "borda_order"].map(orjson.loads).tolist()
        == frame.loc[by_votes, "label"].tolist()
    )

    # Label Studio both ways
    studio = project.export(format="label_studio")
    assert studio[0]["annotations"][0]["result"][0]["type"] == "ranker"
    copy = client.projects.create(
        name="Search copy", annotation_type="ranking", labels=CONFIG, quality_settings=QUALITY
    )
    assert copy.import_label_studio(studio)["created"] == 16
    copied = copy.to_pandas()
    assert copied["orders"].tolist() == frame["orders"].tolist()
    assert copied["label"].tolist() == frame["label"].tolist()


def test_rankings_become_trl_pairs_and_a_leaderboard(finished: tuple) -> None:
    _client, project, df = finished
    frame = project.to_pandas()
    done = frame[frame["label"].notna()]
    n_pairs = sum(len(x) * (len(x) - 1) // 2 for x in done["label"])
    ds = preferences.to_trl(project)
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == n_pairs
    assert len(preferences.to_trl(project, pairs="best_worst")) == len(done)
    first = done.iloc[0]
    items = df.iloc[done.index[0] - frame.index[0]]["results"]
    assert ds[0]["chosen"] == items[first["label"][0]]["text"]
    assert ds[0]["prompt"] == df.iloc[done.index[0] - frame.index[0]]["query"]
    board = preferences.leaderboard(project)
    assert set(board.index) == set(ENGINES)
    corr = np.corrcoef(board["score"], [item_score(e) for e in board.index])[0, 1]
    assert corr > 0.7, board
    bias = preferences.position_bias(project)
    assert bias["left_rate"].between(0, 1).all()


def test_bad_orders_are_a_422(platform: LocalPlatform) -> None:
    customer = platform.create_customer()

    def call(method: str, path: str, key: str = customer, **kw) -> requests.Response:
        return requests.request(
            method,
            platform.base_url + path,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            **kw,
        )

    body = {"name": "Bad ranks", "annotation_type": "ranking", "labels": CONFIG}
    quality = {**QUALITY, "min_annotators": 1}
    pid = call("POST", "/v1/projects", json={**body, "quality_settings": quality}).json()["id"]
    task = {"data": {"query": "q", "results": ["one", "two", "three"]}}
    call("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [task]})
    call("POST", f"/v1/projects/{pid}/deposit/quote")
    call("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    annotator = call("POST", "/v1/annotators", json={"name": "Ranker"}).json()["api_key"]
    task_id = call("GET", "/v1/annotator/next", annotator).json()["task_id"]
    judge = f"/v1/annotator/tasks/{task_id}/judgements"
    for label, words in (([0, 1], "3 candidates"), ([0, 1, 3], "permutation"), ("a", "ranking")):
        r = call("POST", judge, annotator, json={"label": label})
        assert r.status_code == 422 and words in r.json()["error"]["message"], r.text
    assert call("POST", judge, annotator, json={"label": [2, 0, 1]}).status_code in (200, 201)


# -- the widget in a real browser ----------------------------------------------------------------
CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


def test_annotator_ranks_with_number_keys(platform: LocalPlatform, page) -> None:
    """The candidates are listed in a shuffled order (recorded as ``shown``); pressing the
    numbers best first ranks them (the last is placed by itself), Backspace undoes, Enter
    submits the order in data positions."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(platform.base_url) else r.abort(),
    )
    page.set_default_timeout(10_000)
    customer = platform.create_customer("Ranking customer")

    def ok(method: str, path: str, key: str = customer, **kw) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    quality = {**QUALITY, "min_annotators": 1}
    body = {"name": "Rank the answers", "annotation_type": "ranking", "labels": CONFIG}
    pid = ok("POST", "/v1/projects", json={**body, "quality_settings": quality})["id"]
    results = ["<b>zero</b>", "one", "two", "three"]
    ok(
        "POST",
        f"/v1/projects/{pid}/tasks/batch",
        json={"tasks": [{"data": {"query": "q", "results": results}}]},
    )
    ok("POST", f"/v1/projects/{pid}/deposit/quote")
    ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    ok("POST", f"/v1/projects/{pid}/start")
    annotator = ok("POST", "/v1/annotators", json={"name": "Rank judge"})["api_key"]

    page.goto(platform.base_url + "/ui/")
    page.fill("#signin-key", annotator)
    page.click("#signin-form button[type=submit]")
    items = page.locator(".ranking-item")
    expect(items).to_have_count(4)
    expect(page.locator("#data")).to_be_hidden()
    assert page.locator(".ranking-widget b").count() == 0  # markup stays text
    shown = [int(items.nth(i).get_attribute("data-candidate")) for i in range(4)]
    assert sorted(shown) == [0, 1, 2, 3]
    page.keyboard.press("4")
    page.keyboard.press("1")
    page.keyboard.press("Backspace")
    page.keyboard.press("2")
    expect(page.locator("#submit")).to_be_disabled()
    page.keyboard.press("1")  # the fourth is placed by itself
    expect(page.locator("#submit")).to_be_enabled()
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    label = ok("GET", f"/v1/projects/{pid}/export")[0]["judgements"][0]["label"]
    expected = [shown[3], shown[1], shown[0], shown[2]]
    assert label == {"order": expected, "shown": shown}
