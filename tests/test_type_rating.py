"""The ``rating`` annotation type end to end (issue 13): a 1..5 scale with point labels and a
tolerance of 1, a sandbox workforce rating from gold, platform consensus (median, disputes to
the expert), typed exports (pandas Int64 / Parquet / feather / pickle / CSV / ``datasets``),
Label Studio both ways, client re-aggregation and bad judgements refused with a 422.
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
from cynaps_data.consensus import rating_alpha
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings
from cynaps_data.types import get_type

SCALE = {"min": 1, "max": 5, "labels": {"1": "poor", "5": "excellent"}, "tolerance": 1}
QUALITY = {"min_annotators": 3, "consensus_threshold": 0.66, "enable_expert_review": True}
RATING = get_type("rating")


# -- the type on its own -----------------------------------------------------------------------
def test_config_is_checked_and_normalised() -> None:
    assert RATING.validate_config({"min": 0, "max": 10}) == {
        "min": 0,
        "max": 10,
        "labels": {},
        "tolerance": 1,
    }
    assert RATING.validate_config({"max": 5, "min": 1, "labels": {5: "top", "1": "low"}})[
        "labels"
    ] == {"1": "low", "5": "top"}
    bad = [
        (["a", "b"], "rating scale"),
        ({"min": 1}, "labels.max is required"),
        ({"min": 1.5, "max": 5}, "labels.min must be an integer"),
        ({"min": True, "max": 5}, "labels.min must be an integer"),
        ({"min": 5, "max": 5}, "below"),
        ({"min": -100, "max": 101}, "202 points"),
        ({"min": 1, "max": 5, "labels": {"6": "x"}}, r"labels.labels\['6'\]"),
        ({"min": 1, "max": 5, "labels": {"one": "x"}}, r"labels.labels\['one'\]"),
        ({"min": 1, "max": 5, "labels": {"1": ""}}, "non-empty"),
        ({"min": 1, "max": 5, "tolerance": -1}, "tolerance"),
        ({"min": 1, "max": 5, "scale": 3}, "labels.scale"),
    ]
    for config, message in bad:
        with pytest.raises(ValueError, match=message):
            RATING.validate_config(config)


def test_values_are_ints_on_the_scale() -> None:
    config = RATING.validate_config(SCALE)
    assert [RATING.validate_value(v, config) for v in (3, np.int64(2), 4.0, {"rating": 5})] == [
        3,
        2,
        4,
        5,
    ]
    assert all(type(RATING.validate_value(v, config)) is int for v in (np.int32(1), 5.0))
    for bad in (True, 3.5, 0, 6, "3", None, [3], {"rating": 6}, {"stars": 3}, float("nan")):
        with pytest.raises(ValueError, match="rating"):
            RATING.validate_value(bad, config)
    # Label Studio's rating runs 1..maxRating: on a 0..10 scale its 1 is our 0
    zero = RATING.validate_config({"min": 0, "max": 10})
    assert RATING.validate_value({"rating": 1}, zero) == 0
    assert RATING.to_label_studio(10, zero) == {"type": "rating", "value": {"rating": 11}}
    assert RATING.from_label_studio(RATING.to_label_studio(7, zero), zero) == 7


def test_decision_is_the_median_and_disputes_beyond_the_tolerance() -> None:
    config = RATING.validate_config(SCALE)
    q = {**QUALITY, "max_annotators": 5}
    agreed = RATING.decide([3, 4, 3], q, 3, config=config)
    assert (agreed.status, agreed.final_label, agreed.label_source) == ("completed", 3, "consensus")
    assert agreed.agreement == pytest.approx(1 - (1 / 3) / 2)  # spread 1/3 over half-width 2
    assert RATING.decide([2, 3], q, 2, config=config).final_label == 3  # 2.5 rounds half up
    assert RATING.decide([1, 3, 3], q, 3, config=config).status == "disputed"  # range 2 > 1
    wide = RATING.validate_config({**SCALE, "tolerance": 2})
    assert RATING.decide([1, 3, 3], q, 3, config=wide).status == "completed"
    no_review = {**q, "enable_expert_review": False}
    more = RATING.decide([1, 5, 3], no_review, 3, config=config)
    assert (more.status, more.needed) == ("pending", 4)
    last = RATING.decide([1, 5, 3, 3, 4], no_review, 5, config=config)
    assert (last.status, last.final_label, last.label_source) == ("completed", 3, "majority")


def test_simulated_raters_are_biased_noisy_and_stay_on_the_scale() -> None:
    config = RATING.validate_config(SCALE)
    careful = [RATING.simulate(3, config, 0.95, random.Random(i)) for i in range(400)]
    careless = [RATING.simulate(3, config, 0.6, random.Random(i)) for i in range(400)]
    assert set(careful) | set(careless) <= {1, 2, 3, 4, 5}
    assert np.mean(np.array(careful) == 3) > 0.8 > np.mean(np.array(careless) == 3)
    # the bias is the annotator's own: one accuracy leans one way on every task
    lean = [
        np.mean([RATING.simulate(3, config, a, random.Random(i)) for i in range(300)]) - 3
        for a in (0.61, 0.62, 0.63, 0.64)
    ]
    assert max(lean) - min(lean) > 0.2
    points = {RATING.pseudo_truth(f'{{"n": {i}}}', config) for i in range(50)}
    assert points == {1, 2, 3, 4, 5}
    assert RATING.pseudo_truth('{"n": 1}', config) == RATING.pseudo_truth('{"n": 1}', config)


def test_client_aggregation_methods() -> None:
    config = RATING.validate_config(SCALE)
    votes = pd.DataFrame(
        {
            "task": [1, 1, 1, 2, 2, 2, 3, 3, 3],
            "worker": ["a", "b", "c"] * 3,
            "label": [4, 5, 5, 1, 2, 1, 3, 3, 5],
        }
    )
    auto = RATING.aggregate(votes, "auto", config)
    assert list(auto.columns) == ["auto_score", "auto_lower", "auto_upper", "auto_label"]
    assert (auto["auto_lower"] < auto["auto_score"]).all()
    assert (auto["auto_score"] < auto["auto_upper"]).all()
    assert str(auto["auto_label"].dtype) == "Int64"
    median = RATING.aggregate(votes, "median", config)
    assert median["median_score"].tolist() == [5.0, 1.0, 3.0]
    assert median["median_label"].tolist() == [5, 1, 3]
    mean = RATING.aggregate(votes, "mean", config)
    assert mean["mean_label"].tolist() == [5, 1, 4]  # 4.67, 1.33, 3.67 rounded
    with pytest.raises(cynaps.errors.ValidationError, match="method"):
        RATING.aggregate(votes, "ds", config)
    with pytest.raises(cynaps.errors.ValidationError):
        RATING.aggregate(votes, "auto", config, no_such_param=1)


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Iterator[LocalPlatform]:
    """A platform with a sandbox workforce: 3 annotators of accuracy 0.85-0.95 and an expert."""
    db = tmp_path_factory.mktemp("rating") / "cynaps.db"
    workforce = WorkforceSettings(
        annotators=3, experts=1, seconds_per_judgement=0.02, accuracy=(0.85, 0.95), seed=11
    )
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


def roundtrips(frame: pd.DataFrame, tmp_path) -> None:
    """The frame survives Parquet, feather, pickle, CSV and Dataset.from_pandas as is."""
    import datasets

    plain = frame.reset_index()
    plain.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert str(back["label"].dtype) == "Int64" and back["label"].tolist() == plain["label"].tolist()
    assert back["ratings"].map(list).tolist() == plain["ratings"].tolist()
    plain.to_feather(tmp_path / "f.feather")
    assert pd.read_feather(tmp_path / "f.feather")["score"].tolist() == plain["score"].tolist()
    assert pickle.loads(pickle.dumps(plain))["label"].equals(plain["label"])
    text = plain.to_csv(index=False)
    assert pd.read_csv(io.StringIO(text))["label"].tolist() == plain["label"].astype(float).tolist()
    ds = datasets.Dataset.from_pandas(plain)
    assert ds.features["label"] == datasets.Value("int64")
    assert ds.features["score"] == datasets.Value("float64")


@pytest.fixture(scope="module")
def finished(crowd: LocalPlatform) -> Iterator[tuple]:
    """A 15-task 1..5 project with gold, rated by the sandbox workforce to completion."""
    with cynaps.Client(api_key=crowd.create_customer(), base_url=crowd.base_url) as client:
        with pytest.raises(cynaps.errors.ValidationError, match="labels.max"):
            client.projects.create(name="bad", annotation_type="rating", labels={"min": 1})
        project = client.projects.create(
            name="Quality", annotation_type="rating", labels=SCALE, quality_settings=QUALITY
        )
        assert project.labels == SCALE
        gold = [1 + (i * 3) % 5 for i in range(15)]
        df = pd.DataFrame({"text": [f"headline {i}" for i in range(15)], "gold": gold})
        with pytest.raises(cynaps.errors.CynapsError, match="outside the scale"):
            project.upload_dataframe(df.assign(gold=7), gold_column="gold", progress=False)
        assert project.upload_dataframe(df, gold_column="gold", progress=False).created == 15
        # 15 × (3 × 10.00 + 5.00 expert reserve)
        assert project.calculate_deposit().amount == "525.00"
        project.pay_deposit(payment_method="credits")
        project.start()
        project.wait(timeout=120, poll_interval=0.2, progress=False)
        yield client, project, project.to_arrow().to_pylist(), gold


def test_a_rating_project_runs_end_to_end(finished: tuple) -> None:
    import datasets

    client, project, rows, gold = finished
    status = project.get_status()
    assert status.is_complete and status.completed == 15
    wide = project.to_arrow()
    for column in ("label", "gold", "expert_label"):
        assert wide.schema.field(column).type == pa.int64(), column
    for column in ("score", "spread", "agreement", "confidence"):
        assert wide.schema.field(column).type == pa.float64(), column
    assert wide.schema.field("ratings").type == pa.list_(pa.int64())
    names = wide.column_names
    after = names.index("n_annotations") + 1
    assert names[after : after + 3] == ["score", "spread", "ratings"]
    assert [r["gold"] for r in rows] == gold
    for r in rows:
        ratings = r["ratings"]
        assert len(ratings) == r["n_annotations"] >= 3
        assert r["score"] == float(np.median(ratings))
        assert r["spread"] == pytest.approx(np.mean(np.abs(np.array(ratings) - r["score"])))
        if r["label_source"] == "consensus":
            assert max(ratings) - min(ratings) <= 1
            assert r["label"] == int(np.floor(r["score"] + 0.5))
        else:
            assert r["label_source"] == "expert" and r["label"] == r["expert_label"]
    near = sum(abs(r["label"] - r["gold"]) <= 1 for r in rows)
    assert near >= 13, rows

    ds = project.to_dataset()
    assert ds.features["label"] == datasets.Value("int64")
    assert ds.features["gold"] == datasets.Value("int64")
    assert ds.features["score"] == datasets.Value("float64")
    assert ds["label"] == [r["label"] for r in rows]

    long = project.to_pandas("long")
    votes = long[long["role"] == "annotator"]
    assert votes["label"].between(1, 5).all()
    alpha = rating_alpha(votes.rename(columns={"label": "value"}), "interval")
    assert alpha > 0.5  # raters of 0.85-0.95 accuracy agree well

    records = project.export(format="json")
    assert records[0]["annotations"][0]["type"] == "rating"
    assert records[0]["annotations"][0]["result"]["value"] == rows[0]["label"]
    consensus = records[0]["consensus"]
    assert sum(consensus["rating_counts"].values()) == rows[0]["n_annotations"]
    assert consensus["mean"] == pytest.approx(np.mean(rows[0]["ratings"]))

    # Label Studio both ways: the same judgements in a new project
    studio = project.export(format="label_studio")
    region = studio[0]["annotations"][0]["result"][0]
    assert region["type"] == "rating" and set(region["value"]) == {"rating"}
    copy = client.projects.create(
        name="Quality copy", annotation_type="rating", labels=SCALE, quality_settings=QUALITY
    )
    assert copy.import_label_studio(studio)["created"] == 15
    copied = copy.to_arrow().to_pylist()
    assert [r["ratings"] for r in copied] == [r["ratings"] for r in rows]
    assert [r["label"] for r in copied] == [r["label"] for r in rows]
    assert [r["gold"] for r in copied] == gold


def test_the_pandas_export_is_typed_and_survives_every_format(finished: tuple, tmp_path) -> None:
    _client, project, rows, _gold = finished
    frame = project.to_pandas()
    for column in ("label", "gold", "expert_label"):
        assert str(frame[column].dtype) == "Int64", column
    assert frame["score"].dtype == "float64" and frame["spread"].dtype == "float64"
    assert frame["ratings"].tolist() == [r["ratings"] for r in rows]
    roundtrips(frame, tmp_path)
    project.to_parquet(tmp_path / "export.parquet")
    back = pd.read_parquet(tmp_path / "export.parquet")
    assert back["label"].tolist() == [r["label"] for r in rows]
    again = project.to_pandas(method="auto")
    assert {"auto_score", "auto_lower", "auto_upper", "auto_label"} <= set(again.columns)
    assert str(again["auto_label"].dtype) == "Int64"
    assert (again["auto_label"] - again["label"]).abs().max() <= 1


def test_bad_ratings_are_a_422_naming_the_field_and_nothing_is_stored(
    platform: LocalPlatform,
) -> None:
    base = platform.base_url
    customer = platform.create_customer()

    def call(method: str, path: str, key: str = customer, **kw) -> requests.Response:
        return requests.request(
            method, base + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw
        )

    body = {"name": "Bad", "annotation_type": "rating", "labels": {"min": 1, "max": 5}}
    bad_scale = call("POST", "/v1/projects", json={**body, "labels": {"min": 3, "max": 1}})
    assert bad_scale.status_code == 422 and "labels.min" in bad_scale.json()["error"]["message"]
    quality = {**QUALITY, "min_annotators": 1}  # the good rating completes it (shared platform)
    pid = call("POST", "/v1/projects", json={**body, "quality_settings": quality}).json()["id"]
    call("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": {"text": "x"}}]})
    call("POST", f"/v1/projects/{pid}/deposit/quote")
    call("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    annotator = call("POST", "/v1/annotators", json={"name": "Rater"}).json()["api_key"]
    task_id = call("GET", "/v1/annotator/next", annotator).json()["task_id"]
    judge = f"/v1/annotator/tasks/{task_id}/judgements"
    for label, words in (
        (6, "outside the scale 1..5"),
        (3.5, "3.5"),
        ("3", "integer"),
        (True, "integer"),
        (None, "integer"),
        ([3], "integer"),
        ({"rating": 0}, "outside the scale"),
    ):
        r = call("POST", judge, annotator, json={"label": label})
        assert r.status_code == 422, (label, r.text)
        error = r.json()["error"]
        assert words in error["message"], (label, error)
        assert error.get("param") == "label" or "label" in error["message"], error
    assert call("GET", f"/v1/projects/{pid}/export").json()[0]["judgements"] == []
    ok = call("POST", judge, annotator, json={"label": 4.0})
    assert ok.status_code in (200, 201), ok.text
    stored = call("GET", f"/v1/projects/{pid}/export").json()[0]["judgements"]
    assert [j["label"] for j in stored] == [4]


def test_the_projects_tolerance_and_scale_decide_on_the_platform(platform: LocalPlatform) -> None:
    """Ratings 1 and 4 agree under a tolerance of 3 (the default 1 would dispute them), and the
    agreement is measured on the project's 1..9 scale (1 - 1.5 / 4), through the submit path
    and through a Label Studio import."""

    def call(method: str, path: str, key: str, **kw) -> Any:
        r = requests.request(
            method,
            platform.base_url + path,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            **kw,
        )
        assert r.status_code in (200, 201), r.text
        return r.json()

    customer = platform.create_customer()
    scale = {"min": 1, "max": 9, "tolerance": 3}
    body = {"name": "Wide", "annotation_type": "rating", "labels": scale}
    quality = {**QUALITY, "min_annotators": 2}
    pid = call("POST", "/v1/projects", customer, json={**body, "quality_settings": quality})["id"]
    call("POST", f"/v1/projects/{pid}/tasks/batch", customer, json={"tasks": [{"data": {"t": 1}}]})
    call("POST", f"/v1/projects/{pid}/deposit/quote", customer)
    call("POST", f"/v1/projects/{pid}/deposit/pay", customer, json={"payment_method": "credits"})
    call("POST", f"/v1/projects/{pid}/start", customer)
    for name, rating in (("Tol low", 1), ("Tol high", 4)):
        key = call("POST", "/v1/annotators", customer, json={"name": name})["api_key"]
        task = call("GET", "/v1/annotator/next", key)
        call(
            "POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": rating}
        )
    record = call("GET", f"/v1/projects/{pid}/export", customer)[0]
    assert record["consensus"]["status"] == "completed"
    assert record["consensus"]["label_source"] == "consensus"
    assert record["annotations"][0]["result"]["value"] == 3  # median 2.5, rounded half up
    assert record["consensus"]["agreement"] == pytest.approx(1 - 1.5 / 4)

    with cynaps.Client(api_key=customer, base_url=platform.base_url) as client:
        copy = client.projects.create(
            name="Wide copy", annotation_type="rating", labels=scale, quality_settings=quality
        )
        studio = client.projects.get(pid).export(format="label_studio")
        copy.import_label_studio(studio)
        imported = copy.export(format="json")[0]
        assert imported["consensus"]["status"] == "completed"
        assert imported["annotations"][0]["result"]["value"] == 3


# -- the widget in a real browser (as tests/test_ui_browser.py) ---------------------------------
CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")
#: set to write docs/img/widget-rating.png from the browser test
SCREENSHOT_ENV = "CYNAPS_WIDGET_SCREENSHOTS"
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


def test_annotator_and_expert_rate_with_the_keyboard(platform: LocalPlatform, page) -> None:
    """The annotate page draws the scale (point labels shown), a digit picks, Enter submits;
    a 0..10 scale takes its digits literally; the review page shows a disputed task's rating
    counts and the expert decides with the same keys."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(platform.base_url) else r.abort(),
    )
    page.set_default_timeout(10_000)
    customer = platform.create_customer("Rating customer")

    def ok(method: str, path: str, key: str = customer, **kw) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def project(min_annotators: int, text: str, scale: dict = SCALE) -> str:
        quality = {**QUALITY, "min_annotators": min_annotators}
        body = {"name": text, "annotation_type": "rating", "labels": scale}
        pid = ok("POST", "/v1/projects", json={**body, "quality_settings": quality})["id"]
        ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": {"text": text}}]})
        ok("POST", f"/v1/projects/{pid}/deposit/quote")
        ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
        ok("POST", f"/v1/projects/{pid}/start")
        return pid

    def sign_in(key: str, path: str) -> None:
        if page.url.startswith("http"):
            page.evaluate("sessionStorage.clear()")
        page.goto(platform.base_url + path)
        page.fill("#signin-key", key)
        page.click("#signin-form button[type=submit]")

    # a disputed task for the expert: 1 and 5 (range 4 > tolerance 1)
    disputed = project(2, "a headline everyone reads differently")
    for name, rating in (("Rater low", 1), ("Rater high", 5)):
        key = ok("POST", "/v1/annotators", json={"name": name})["api_key"]
        task = ok("GET", "/v1/annotator/next", key)
        ok("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": rating})
    assert ok("GET", f"/v1/projects/{disputed}/status")["disputed"] == 1
    single = project(1, "Stocks rally on good news")
    annotator = ok("POST", "/v1/annotators", json={"name": "Rating annotator"})["api_key"]

    sign_in(annotator, "/ui/")
    points = page.locator("#labels button.rating-point")
    expect(points).to_have_count(5)
    expect(points.nth(0)).to_contain_text("poor")
    expect(points.nth(4)).to_contain_text("excellent")
    expect(page.locator("#submit")).to_be_disabled()
    task_id = page.locator("#task-id").inner_text()
    page.keyboard.press("2")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#labels button[data-point='4']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#submit")).to_be_enabled()
    if os.environ.get(SCREENSHOT_ENV):
        page.set_viewport_size({"width": 900, "height": 560})
        page.screenshot(path=str(DOCS_IMG / "widget-rating.png"))
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(f"Saved task {task_id}: 4")
    record = ok("GET", f"/v1/projects/{single}/export")[0]
    assert record["annotations"][0]["result"]["value"] == 4

    # a 0..10 scale: the digit is the point itself; a click picks too
    ten = project(1, "Rate from 0 to 10", {"min": 0, "max": 10})
    page.reload()
    expect(points).to_have_count(11)
    page.keyboard.press("0")
    expect(page.locator("#labels button[data-point='0']")).to_have_attribute("aria-pressed", "true")
    page.locator("#labels button[data-point='10']").click()
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    assert ok("GET", f"/v1/projects/{ten}/export")[0]["annotations"][0]["result"]["value"] == 10

    expert = ok("POST", "/v1/annotators", json={"name": "Rating expert", "role": "expert"})
    sign_in(expert["api_key"], "/ui/review")
    expect(page.locator("#votes tr")).to_have_count(2)
    expect(page.locator("#distribution meter")).to_have_count(2)  # the voted points 1 and 5
    expect(page.locator("#distribution")).to_contain_text("mean 3.00")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    record = ok("GET", f"/v1/projects/{disputed}/export")[0]
    assert record["annotations"][0]["result"]["value"] == 3
    assert record["consensus"]["label_source"] == "expert"
    assert record["consensus"]["rating_counts"] == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 1}
