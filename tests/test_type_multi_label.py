"""The ``multi_label`` annotation type (issue 13): a set of the project's labels per answer.

End to end on a real platform with a sandbox workforce (create, upload a DataFrame, consensus,
status, exports and their round trips, Label Studio both ways), bad judgements as 422s that
store nothing, the platform rule against the consensus engine's functions, the simulated
annotator, and the widget in a real browser driven by the keyboard.
"""

from __future__ import annotations

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
from cynaps_data.consensus import krippendorff_alpha_sets, set_agreement, share_consensus
from cynaps_data.io import multi_hot
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings
from cynaps_data.types import get_type

LABELS = ["animal", "vehicle", "person", "outdoor"]
QUALITY = {"min_annotators": 3, "consensus_threshold": 0.5, "enable_expert_review": True}
ML = get_type("multi_label")
CONFIG = ML.validate_config(LABELS)


# -- the type's own rules ------------------------------------------------------------------------
def test_config_is_normalised_and_checked() -> None:
    assert CONFIG == {"labels": LABELS, "min_labels": 0, "max_labels": None}
    full = {"labels": ["a", "b", "c"], "min_labels": 1, "max_labels": 2}
    assert ML.validate_config(full) == full
    for bad, match in [
        ({"labels": ["a", "a"]}, r"labels\[1\] repeats"),
        ({"labels": ["a"], "min_labels": 2}, "min_labels"),
        ({"labels": ["a", "b"], "max_labels": 0}, "max_labels"),
        ({"labels": ["a"], "colour": 1}, "labels.colour"),
        ("a", "list of labels"),
    ]:
        with pytest.raises(ValueError, match=match):
            ML.validate_config(bad)


def test_values_are_sorted_sets_of_known_labels() -> None:
    config = ML.validate_config({"labels": LABELS, "min_labels": 1, "max_labels": 2})
    assert ML.validate_value(["outdoor", "animal"], config) == ["animal", "outdoor"]
    assert ML.validate_value({"choices": ["person"]}, config) == ["person"]  # Label Studio
    assert ML.validate_value([], CONFIG) == []
    for bad, match in [
        ("animal", "must be a list"),
        (["cat"], r"label\[0\] 'cat' is not one"),
        (["animal", "animal"], r"label\[1\] repeats"),
        ([], "at least 1"),
        (["animal", "vehicle", "person"], "at most 2"),
        ([1], r"label\[0\] 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            ML.validate_value(bad, config)


def test_decision_follows_the_engines_share_rule_and_jaccard() -> None:
    """``decide`` (plain Python per task) equals share_consensus + set_agreement on random
    answers, and disputes below the threshold."""
    rng = random.Random(3)
    quality = {**QUALITY, "max_annotators": 5}
    for _ in range(200):
        n = rng.randint(2, 5)
        votes = [[lab for lab in LABELS if rng.random() < 0.4] for _ in range(n)]
        decision = ML.decide(votes, quality, n)
        frame = pd.DataFrame({"task": 0, "worker": range(n), "labels": votes})
        jaccard = set_agreement(frame, labels=LABELS)["jaccard"].iloc[0]
        assert decision.agreement == pytest.approx(jaccard)
        expected = share_consensus(frame, threshold=0.5, labels=LABELS).labels.iloc[0]
        smallest, largest = min(map(len, votes)), max(map(len, votes))
        fits = smallest <= len(expected) <= largest  # otherwise cut/filled to the answers' sizes
        if fits and decision.status == "completed":
            assert decision.final_label == expected
        if jaccard < 0.5:
            assert decision.status == "disputed" and decision.final_label is None
        else:
            assert decision.status == "completed" and decision.label_source == "consensus"
    no_review = {**quality, "enable_expert_review": False, "max_annotators": 3}
    split = [["animal"], ["vehicle"], ["animal", "person"]]
    assert ML.decide(split, {**no_review, "max_annotators": 4}, 3).needed == 4
    final = ML.decide(split, no_review, 3)
    assert (final.status, final.final_label, final.label_source) == (
        "completed",
        ["animal"],
        "majority",
    )
    assert ML.decide([[], []], quality, 2).final_label == []
    assert ML.decide([["person"]], {**quality, "min_annotators": 1}, 1).agreement == 1.0


def test_wide_columns_agree_with_the_engine() -> None:
    """The bulk export's vectorised agreement equals set_agreement's Jaccard; shares, lists and
    nulls line up with the votes (tasks with 0-5 answers, empty answers included)."""
    import orjson

    from cynaps_data.types import VoteArrays

    rng = np.random.default_rng(4)
    counts = rng.integers(0, 6, size=300)
    pos = np.repeat(np.arange(300), counts)
    sets = [[lab for lab in LABELS if rng.random() < 0.3] for _ in pos]
    texts = pa.array([orjson.dumps(x).decode() for x in sets])
    final = pa.array(['["animal"]' if c else "" for c in counts])
    votes = VoteArrays(300, pos, texts, counts, final, pa.array([""] * 300), final)
    cols = ML.wide_columns(votes, CONFIG)
    frame = pd.DataFrame({"task": pos, "worker": np.arange(len(pos)), "labels": sets})
    ref = set_agreement(frame, labels=LABELS)
    agreement = cols["agreement"].to_numpy(zero_copy_only=False)
    several = ref.index[ref["n"] >= 2].to_numpy()
    assert np.allclose(agreement[several], ref.loc[several, "jaccard"], atol=1e-12)
    assert np.isnan(agreement[counts == 0]).all() and (agreement[counts == 1] == 1.0).all()
    shares = cols["vote_share"].to_pylist()
    for t in (0, 1, 2, 3):
        mine = [s for s, p in zip(sets, pos, strict=True) if p == t]
        expect = {lab: sum(lab in s for s in mine) / len(mine) for lab in LABELS} if mine else None
        assert shares[t] == expect
    assert cols["label"].to_pylist() == [["animal"] if c else None for c in counts]
    assert cols["gold"].null_count == 300
    assert ML.long_label(texts, CONFIG).to_pylist() == sets


def test_simulated_annotators_miss_and_add_at_their_own_rates() -> None:
    truth = ML.pseudo_truth('{"text": "x"}', CONFIG)
    assert truth == ML.pseudo_truth('{"text": "x"}', CONFIG) and len(truth) <= 2
    sizes = {len(ML.pseudo_truth(f'{{"n": {i}}}', CONFIG)) for i in range(50)}
    assert sizes == {0, 1, 2}
    truth = ["animal", "outdoor"]

    def rates(accuracy: float) -> tuple[float, float]:
        rng = random.Random(11)
        answers = [ML.simulate(truth, CONFIG, accuracy, rng) for _ in range(4000)]
        missed = np.mean([sum(t not in a for t in truth) / 2 for a in answers])
        added = np.mean([sum(x in a for x in ("vehicle", "person")) / 2 for a in answers])
        return float(missed), float(added)

    good, poor = rates(0.95), rates(0.7)
    assert good[0] == pytest.approx(0.075, abs=0.02) and good[1] == pytest.approx(0.025, abs=0.01)
    assert poor[0] == pytest.approx(0.45, abs=0.03) and poor[1] == pytest.approx(0.15, abs=0.02)
    bounded = ML.validate_config({"labels": LABELS, "min_labels": 1, "max_labels": 1})
    rng = random.Random(2)
    assert all(len(ML.simulate([], bounded, 0.5, rng)) == 1 for _ in range(100))


# -- end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Iterator[LocalPlatform]:
    """A platform of its own: 3 sandbox annotators (accuracy 0.85-0.95) and 1 expert."""
    db = tmp_path_factory.mktemp("multi_label") / "cynaps.db"
    workforce = WorkforceSettings(
        annotators=3, experts=1, seconds_per_judgement=0.02, accuracy=(0.85, 0.95), seed=5
    )
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


def _gold(i: int) -> list[str]:
    return [lab for j, lab in enumerate(LABELS) if (i >> j) & 1 and j < 3]


def _same_values(a: pd.Series, b: pd.Series) -> bool:
    norm = [[None if v is None else list(v) for v in s.tolist()] for s in (a, b)]
    return norm[0] == norm[1]


def test_multi_label_project_end_to_end(crowd: LocalPlatform, tmp_path) -> None:
    with cynaps.Client(api_key=crowd.create_customer(), base_url=crowd.base_url) as client:
        with pytest.raises(cynaps.errors.ValidationError, match="min_labels"):
            client.projects.create(
                name="bad",
                annotation_type="multi_label",
                labels={"labels": LABELS, "min_labels": 9},
            )
        project = client.projects.create(
            name="Tags", annotation_type="multi_label", labels=LABELS, quality_settings=QUALITY
        )
        assert project.labels == CONFIG  # the plain list, normalised to the object form
        n = 16
        frame = pd.DataFrame(
            {
                "text": [f"picture {i}" for i in range(n)],
                "gold": [_gold(i) if i % 2 == 0 else None for i in range(n)],
            }
        )
        with pytest.raises(cynaps.errors.CynapsError, match="not one of the project"):
            project.upload_dataframe(
                pd.DataFrame({"text": ["x"], "gold": [["cat"]]}), gold_column="gold"
            )
        assert project.upload_dataframe(frame, gold_column="gold").created == n
        # the type's price: 16 x (3 x 20.00 + the 5.00 expert fee)
        assert project.calculate_deposit().amount == "1040.00"
        project.pay_deposit(payment_method="credits")
        project.start()
        project.wait(timeout=180, poll_interval=0.2, progress=False)
        status = project.get_status()
        assert status.is_complete and status.completed == n and status.disputed == 0, status

        wide = project.to_arrow()
        for column in ("label", "gold", "expert_label"):
            assert wide.schema.field(column).type == pa.list_(pa.string()), column
        assert wide.schema.field("vote_share").type == pa.struct(
            [(lab, pa.float64()) for lab in LABELS]
        )
        rows = wide.to_pylist()
        long_votes = project.to_pandas("long")
        assert all(r["status"] == "completed" and r["n_annotations"] >= 3 for r in rows)
        for i, r in enumerate(rows):
            if i % 2 == 0:
                assert r["gold"] == _gold(i)
            assert r["label"] == sorted(r["label"], key=LABELS.index)
            shares = r["vote_share"]
            assert sum(shares.values()) * r["n_annotations"] == pytest.approx(
                sum(len(v) for v in _votes(long_votes, r["task"]))
            )
            if r["label_source"] == "consensus":
                voted = _votes(long_votes, r["task"])
                by_share = [lab for lab in LABELS if shares[lab] >= 0.5 - 1e-12]
                if min(map(len, voted)) <= len(by_share) <= max(map(len, voted)):
                    assert r["label"] == by_share
                quality = {**QUALITY, "max_annotators": 5}
                assert r["label"] == ML.decide(voted, quality, len(voted)).final_label
                assert r["agreement"] >= 0.5 - 1e-12  # the platform's rule (floats summed)
            else:
                assert r["label_source"] == "expert" and r["expert_label"] == r["label"]
        golden = [r for i, r in enumerate(rows) if i % 2 == 0]
        exact = np.mean([r["label"] == r["gold"] for r in golden])
        assert exact >= 0.75, [(r["label"], r["gold"]) for r in golden]

        long = project.to_arrow("long")
        assert long.schema.field("label").type == pa.list_(pa.string())

        df = project.to_pandas()
        assert isinstance(df["label"].iloc[0], list)
        share_columns = [f"vote_share.{lab}" for lab in LABELS]
        assert all(df[c].dtype == "float64" for c in share_columns)
        hot = multi_hot(df)
        assert list(hot.columns) == LABELS and hot.dtypes.eq("float64").all()
        assert hot.to_numpy().tolist() == [
            [float(lab in v) for lab in LABELS] for v in df["label"].tolist()
        ]
        # the frame survives every format with default arguments
        path = tmp_path / "tags.parquet"
        df.to_parquet(path)
        back = pd.read_parquet(path)
        assert _same_values(back["label"], df["label"])
        df.reset_index().to_feather(tmp_path / "tags.feather")
        back = pd.read_feather(tmp_path / "tags.feather")
        assert _same_values(back["gold"], df["gold"])
        assert _same_values(pickle.loads(pickle.dumps(df))["label"], df["label"])
        df.to_csv(tmp_path / "tags.csv")
        back = pd.read_csv(tmp_path / "tags.csv", index_col="task")
        assert (multi_hot(back, labels=LABELS).to_numpy() == hot.to_numpy()).all()
        # Label Studio: choices both ways, same judgements
        records = project.export(format="label_studio")
        region = records[0]["annotations"][0]["result"][0]
        assert region["type"] == "choices" and isinstance(region["value"]["choices"], list)
        copy = client.projects.create(
            name="Tags copy", annotation_type="multi_label", labels=LABELS, quality_settings=QUALITY
        )
        result = copy.import_label_studio(records)
        assert result["created"] == n
        a, b = project.to_pandas("long"), copy.to_pandas("long")
        key = ["role", "label"]

        def judged(long: pd.DataFrame, wide: pd.DataFrame) -> list:
            text = wide["text"].to_dict()
            return sorted(
                (text[t], role, tuple(label))
                for t, role, label in zip(long["task"], *(long[k] for k in key), strict=True)
            )

        assert judged(a, df) == judged(b, copy.to_pandas())
        assert sorted(map(tuple, copy.to_pandas()["label"])) == sorted(map(tuple, df["label"]))

        import datasets

        ds = datasets.Dataset.from_pandas(df)
        assert ds[0]["label"] == df["label"].iloc[0]
        # datasets: a sequence of class labels over the project's labels
        dataset = project.to_dataset()
        feature = dataset.features["label"]
        inner = getattr(feature, "feature", None)
        assert isinstance(inner, datasets.ClassLabel) and inner.names == LABELS
        assert [inner.int2str(x) for x in dataset[0]["label"]] == df["label"].iloc[0]

        # client-side re-aggregation: the default model and binary relevance
        for method in ("auto", "mv", "ds", "ebcc"):
            again = project.to_pandas(method=method)
            assert again[f"{method}_proba.animal"].dtype == "float64"
            agree = np.mean(
                [a == b for a, b in zip(again[f"{method}_label"], df["label"], strict=True)]
            )
            assert agree >= 0.6, method
            if method == "auto":  # the added columns survive Parquet and datasets too
                again.to_parquet(tmp_path / "auto.parquet")
                back = pd.read_parquet(tmp_path / "auto.parquet")
                assert _same_values(back["auto_label"], again["auto_label"])
                assert datasets.Dataset.from_pandas(again)[0]["auto_label"] == list(
                    again["auto_label"].iloc[0]
                )
        with pytest.raises(cynaps.errors.ValidationError):
            project.to_pandas(method="glad")

        # agreement metrics of the type on the exported votes
        votes = project.to_pandas("long")
        votes = votes[votes["role"] == "annotator"]
        alpha = krippendorff_alpha_sets(
            pd.DataFrame(
                {"task": votes["task"], "worker": votes["worker"], "labels": votes["label"]}
            ),
            labels=LABELS,
        )
        assert 0.3 < alpha <= 1.0


def _votes(long: pd.DataFrame, task: int) -> list:
    mine = long[(long["task"] == task) & (long["role"] == "annotator")]
    return mine["label"].tolist()


# -- bad judgements --------------------------------------------------------------------------------
def test_bad_judgements_are_422_naming_the_field_and_store_nothing(platform: LocalPlatform) -> None:
    customer = platform.create_customer("Multi-label 422")

    def call(method: str, path: str, key: str = customer, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)

    body = {
        "name": "tags 422",
        "annotation_type": "multi_label",
        "labels": {"labels": LABELS, "min_labels": 1, "max_labels": 2},
        "quality_settings": QUALITY,
    }
    pid = call("POST", "/v1/projects", json=body).json()["id"]
    call("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": {"text": "x"}}]})
    call("POST", f"/v1/projects/{pid}/deposit/quote")
    call("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    key = call("POST", "/v1/annotators", json={"name": "tagger"}).json()["api_key"]
    task = call("GET", "/v1/annotator/next", key).json()
    path = f"/v1/annotator/tasks/{task['task_id']}/judgements"
    for bad, words in [
        ("animal", "must be a list"),  # wrong shape
        ({"animal": True}, "must be a list"),
        (["cat"], "'cat' is not one"),  # unknown label
        (["animal", "animal"], "repeats"),
        ([], "at least 1"),  # below min_labels
        (["animal", "vehicle", "person"], "at most 2"),  # above max_labels
        (LABELS * 50, "entries"),  # oversize
    ]:
        r = call("POST", path, key, json={"label": bad})
        assert r.status_code == 422, (bad, r.text)
        error = r.json()["error"]
        assert error["param"] == "label" and words in error["message"], (bad, error)
    assert call("GET", f"/v1/projects/{pid}/export").json()[0]["judgements"] == []
    r = call("POST", path, key, json={"label": ["person", "animal"]})
    assert r.status_code in (200, 201), r.text
    record = call("GET", f"/v1/projects/{pid}/export").json()[0]
    assert [j["label"] for j in record["judgements"]] == [["animal", "person"]]


# -- the widget in a real browser (as tests/test_types_seam.py) ----------------------------------
CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "widget-multi_label.png"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


def test_widget_toggles_with_number_keys_and_enter_submits(platform: LocalPlatform, page) -> None:
    """Annotators toggle labels with 1-9 (a second press removes it) and submit with Enter, the
    empty set included; an expert decides a disputed task with the same widget and sees the
    per-label vote shares."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(platform.base_url) else r.abort(),
    )
    page.set_default_timeout(10_000)
    customer = platform.create_customer("Multi-label browser")

    def ok(method: str, path: str, key: str = customer, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def project(min_annotators: int, texts: list[str]) -> str:
        body = {"name": texts[0], "annotation_type": "multi_label", "labels": LABELS}
        quality = {**QUALITY, "min_annotators": min_annotators}
        pid = ok("POST", "/v1/projects", json={**body, "quality_settings": quality})["id"]
        tasks = [{"data": {"text": t}} for t in texts]
        ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": tasks})
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

    disputed = project(2, ["a dog in a car"])  # answers {animal} and {vehicle}: Jaccard 0
    for name, answer in (("Tagger A", ["animal"]), ("Tagger B", ["vehicle"])):
        key = ok("POST", "/v1/annotators", json={"name": name})["api_key"]
        task = ok("GET", "/v1/annotator/next", key)
        ok("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": answer})
    assert ok("GET", f"/v1/projects/{disputed}/status")["disputed"] == 1
    single = project(1, ["a cyclist on a mountain road", "an empty room"])
    annotator = ok("POST", "/v1/annotators", json={"name": "Tagger C"})["api_key"]

    sign_in(annotator, "/ui/")
    toggles = page.locator("#labels button.label")
    expect(toggles).to_have_count(4)
    expect(page.locator("#submit")).to_be_enabled()  # min_labels 0: the empty set is an answer
    first = page.locator("#task-id").inner_text()
    for key in ("1", "3", "4", "1"):  # animal on, person on, outdoor on, animal off
        page.keyboard.press(key)
    expect(toggles.nth(0)).to_have_attribute("aria-pressed", "false")
    expect(toggles.nth(2)).to_have_attribute("aria-pressed", "true")
    expect(toggles.nth(3)).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".multi-label-hint")).to_contain_text("2 selected")
    if os.environ.get("CYNAPS_WIDGET_SCREENSHOTS"):  # set to refresh docs/img (not in CI)
        page.screenshot(path=str(SCREENSHOT))
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(f'Saved task {first}: ["person","outdoor"]')
    second = page.locator("#task-id").inner_text()
    assert second != first
    page.keyboard.press("Enter")  # nothing toggled: "none of them"
    expect(page.locator("#status")).to_have_text(f"Saved task {second}: []")
    expect(page.locator("#empty")).to_be_visible()
    records = {r["id"]: r for r in ok("GET", f"/v1/projects/{single}/export")}
    assert records[int(first)]["annotations"][0]["result"]["value"] == ["person", "outdoor"]
    assert records[int(second)]["annotations"][0]["result"]["value"] == []

    expert = ok("POST", "/v1/annotators", json={"name": "Tag expert", "role": "expert"})
    sign_in(expert["api_key"], "/ui/review")
    expect(page.locator("#votes tr")).to_have_count(2)
    expect(page.locator("#distribution .share")).to_have_count(2)  # animal 50 %, vehicle 50 %
    expect(page.locator("#distribution")).to_contain_text("50%")
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    record = ok("GET", f"/v1/projects/{disputed}/export")[0]
    assert record["annotations"][0]["result"]["value"] == ["animal", "vehicle"]
    assert record["consensus"]["label_source"] == "expert"
    assert record["consensus"]["vote_share"] == {
        "animal": 0.5,
        "vehicle": 0.5,
        "person": 0.0,
        "outdoor": 0.0,
    }
