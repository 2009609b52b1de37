"""The ``text`` annotation type (issue 13): free text, transcriptions, short answers.

The hooks on their own (config, values, Label Studio shape, decision, summary, sandbox answers),
then end to end on a real platform with a sandbox workforce (create, upload a DataFrame, status,
pandas / Parquet / feather / pickle / CSV / ``datasets``, Label Studio out and back in, client
re-aggregation), and bad judgements refused with a 422 that names the field, nothing stored.
"""

from __future__ import annotations

import io
import os
import pickle
import random
from collections.abc import Iterator
from typing import Any

import orjson
import pandas as pd
import pytest
import requests

import cynaps_data as cynaps
from cynaps_data import errors
from cynaps_data.consensus.text import DEFAULT_NORMALIZER, TextROVER
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings
from cynaps_data.types import get_type

TEXT = get_type("text")
CONFIG = TEXT.validate_config({"max_length": 120, "field": "audio"})
QUALITY = {"min_annotators": 3, "consensus_threshold": 0.66, "enable_expert_review": True}
SENTENCES = [
    "He hoped there would be stew for dinner.",
    "Stuff it into you, his belly counselled him.",
    "After early nightfall the yellow lamps would light up.",
    "Hello Bertie, any good in your mind?",
    "Number ten, fresh nelly is waiting on you.",
    "The music came nearer and he recalled the words.",
]


# -- the hooks ------------------------------------------------------------------------------------
def test_config_defaults_and_errors_name_the_setting() -> None:
    default = {"max_length": 2000, "placeholder": "Type the answer", "field": None}
    assert TEXT.validate_config(None) == default
    assert TEXT.validate_config({}) == default
    assert TEXT.validate_config({"max_length": 5, "field": "audio"})["field"] == "audio"
    for bad, where in [
        ({"max_length": 0}, "labels.max_length"),
        ({"max_length": 100_001}, "labels.max_length"),
        ({"max_length": True}, "labels.max_length"),
        ({"max_length": "10"}, "labels.max_length"),
        ({"field": ""}, "labels.field"),
        ({"placeholder": 3}, "labels.placeholder"),
        ({"maxlength": 10}, "labels.maxlength"),
        (["a", "b"], "labels must be an object"),
    ]:
        with pytest.raises(ValueError, match=where):
            TEXT.validate_config(bad)


def test_values_kept_as_typed_and_bad_ones_refused() -> None:
    assert TEXT.validate_value("  Hello,\nworld ", CONFIG) == "  Hello,\nworld "
    assert TEXT.validate_value("", CONFIG) == ""
    assert TEXT.validate_value({"text": ["one", "two"]}, CONFIG) == "one\ntwo"
    assert TEXT.validate_value("x" * 120, CONFIG) == "x" * 120
    for bad, message in [
        ("x" * 121, r"121 characters long; this project allows at most 120 \(labels.max_length\)"),
        ("a\x00b", "NUL"),
        (7, "must be a string"),
        (["a"], "must be a string"),
        (None, "must be a string"),
        ({"text": []}, "textarea"),
        ({"text": [1]}, "textarea"),
        ("\ud800", "not valid Unicode"),
    ]:
        with pytest.raises(ValueError, match=message):
            TEXT.validate_value(bad, CONFIG)


def test_label_studio_textarea_both_ways() -> None:
    region = TEXT.to_label_studio("Hello world", CONFIG)
    assert region == {"type": "textarea", "value": {"text": ["Hello world"]}}
    assert TEXT.from_label_studio(region, CONFIG) == "Hello world"
    with pytest.raises(ValueError, match="textarea"):
        TEXT.from_label_studio({"type": "choices", "value": {"choices": ["a"]}}, CONFIG)


def test_decision_exact_share_then_medoid_then_dispute() -> None:
    q = {**QUALITY, "max_annotators": 4}
    exact = TEXT.decide(["Hello world.", "hello, world", "hello word"], q, 3)
    assert (exact.status, exact.final_label, exact.label_source) == (
        "completed",
        "Hello world.",
        "consensus",
    )
    assert exact.agreement == pytest.approx((1 + 0.5 + 0.5) / 3)
    close = TEXT.decide(["a b c d e f", "a b c d e g", "a b c d x f"], q, 3)
    assert (close.status, close.final_label) == ("completed", "a b c d e f")  # the medoid
    assert close.agreement == pytest.approx((5 + 5 + 4) / 18)  # pairs 1-2, 1-3, 2-3
    far = ["the cat sat", "a dog ran off", "birds sing"]
    assert TEXT.decide(far, q, 3).status == "disputed"
    no_review = {**q, "enable_expert_review": False}
    assert TEXT.decide(far, no_review, 3).status == "pending"
    assert TEXT.decide(far, no_review, 3).needed == 4
    last = TEXT.decide([*far, "the cat ran"], no_review, 4)
    assert (last.status, last.label_source, last.final_label) == (
        "completed",
        "majority",
        "the cat ran",
    )
    # a tied exact share is no consensus: two answers against two
    assert TEXT.decide(["a", "a", "b", "b"], {**q, "consensus_threshold": 0.5}, 4).status == (
        "disputed"
    )


def test_summary_counts_normalised_answers_top_ten() -> None:
    votes = ["Yes!", "yes", "no"] + [f"answer {i}" for i in range(12)]
    summary = TEXT.summarize(votes, None)
    assert summary["answers"][:2] == [{"text": "yes", "count": 2}, {"text": "no", "count": 1}]
    assert len(summary["answers"]) == 10 and summary["n_distinct"] == 14
    assert TEXT.summarize([], CONFIG) == {"answers": [], "n_distinct": 0}


def test_sandbox_answers_are_noisy_per_annotator_and_deterministic() -> None:
    truth = SENTENCES[2]
    assert TEXT.simulate(truth, CONFIG, 1.0, random.Random(1)) == truth
    answers = [TEXT.simulate(truth, CONFIG, 0.7, random.Random(seed)) for seed in range(200)]
    assert answers == [TEXT.simulate(truth, CONFIG, 0.7, random.Random(s)) for s in range(200)]
    norm = DEFAULT_NORMALIZER
    exact = sum(norm(a) == norm(truth) for a in answers) / len(answers)
    assert 0.05 < exact < 0.9  # noisy, but not noise only
    careful = [TEXT.simulate(truth, CONFIG, 0.95, random.Random(s)) for s in range(200)]
    assert sum(norm(a) == norm(truth) for a in careful) / 200 > exact
    assert all(len(a) <= CONFIG["max_length"] for a in answers)
    pseudo = TEXT.pseudo_truth('{"audio": "https://x.org/a.wav", "n": 3}', CONFIG)
    assert pseudo == TEXT.pseudo_truth('{"audio": "https://x.org/a.wav", "n": 3}', CONFIG)
    assert pseudo.endswith(".") and 5 <= len(pseudo.split()) <= 10
    assert TEXT.pseudo_truth('{"text": "read me"}', CONFIG) == "read me"


# -- end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Iterator[LocalPlatform]:
    """A platform of its own with a sandbox workforce (3 annotators, 1 expert)."""
    db = tmp_path_factory.mktemp("text") / "cynaps.db"
    workforce = WorkforceSettings(
        annotators=3, experts=1, seconds_per_judgement=0.02, accuracy=(0.85, 0.95), seed=11
    )
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


def round_trips(frame: pd.DataFrame, tmp_path) -> None:
    """The frame survives the sinks with default arguments (CSV stringifies the lists)."""
    import datasets

    frame.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert back["label"].tolist() == frame["label"].tolist()
    assert [list(c) for c in back["candidates"]] == frame["candidates"].tolist()
    frame.reset_index().to_feather(tmp_path / "f.feather")
    assert pd.read_feather(tmp_path / "f.feather")["label"].tolist() == frame["label"].tolist()
    assert pickle.loads(pickle.dumps(frame)).equals(frame)
    csv = pd.read_csv(io.StringIO(frame.to_csv()))
    assert csv["label"].fillna("").tolist() == frame["label"].fillna("").tolist()
    ds = datasets.Dataset.from_pandas(frame)
    # pandas 3's ``str`` columns arrive as Arrow large_string
    assert ds.features["label"] in (datasets.Value("string"), datasets.Value("large_string"))
    assert ds[0]["candidates"] == frame["candidates"].iloc[0]


def test_text_project_end_to_end(crowd: LocalPlatform, tmp_path) -> None:
    import datasets

    frame_in = pd.DataFrame(
        {
            "audio": [f"https://audio.example/clip{i}.flac" for i in range(8)],
            "n": range(8),
            "transcript": [SENTENCES[i % 6] if i < 6 else None for i in range(8)],
        }
    )
    with cynaps.Client(api_key=crowd.create_customer(), base_url=crowd.base_url) as client:
        with pytest.raises(errors.ValidationError, match="labels.max_length"):
            client.projects.create(name="bad", annotation_type="text", labels={"max_length": 0})
        project = client.projects.create(
            name="Transcribe",
            annotation_type="text",
            labels={"max_length": 120, "field": "audio"},
            quality_settings=QUALITY,
        )
        assert project.labels == CONFIG
        result = project.upload_dataframe(frame_in, gold_column="transcript", progress=False)
        assert result.created == 8
        # the price is the type's: 8 x (3 x 30.00 + 5.00 expert reserve)
        assert project.calculate_deposit().amount == "760.00"
        project.pay_deposit(payment_method="credits")
        project.start()
        project.wait(timeout=120, poll_interval=0.2, progress=False)
        status = project.get_status()
        assert status.is_complete and status.completed == 8

        frame = project.to_pandas()
        assert frame["label"].dtype == "str" and frame["gold"].dtype == "str"
        assert frame["agreement"].dtype == "float64" and frame["confidence"].dtype == "float64"
        assert all(isinstance(x, str) for x in frame["label"])
        assert frame["gold"].tolist()[:6] == [SENTENCES[i] for i in range(6)]
        assert pd.isna(frame["gold"].iloc[6])
        assert all(
            isinstance(c, list) and len(c) == n and all(isinstance(t, str) for t in c)
            for c, n in zip(frame["candidates"], frame["n_annotations"], strict=True)
        )
        cols = list(frame.columns)
        assert cols.index("candidates") > cols.index("n_annotations")
        # careful annotators (0.85-0.95) and an expert: the final text is the truth, normalised
        norm = DEFAULT_NORMALIZER
        right = sum(
            norm(a) == norm(g) for a, g in zip(frame["label"], frame["gold"], strict=True) if g == g
        )
        assert right >= 5, frame[["label", "gold", "label_source", "agreement"]]
        assert frame["agreement"].between(0, 1).all() and frame["confidence"].between(0, 1).all()
        round_trips(frame, tmp_path)

        ds = project.to_dataset()
        for name in ("label", "gold", "expert_label"):
            assert ds.features[name] == datasets.Value("string"), name
        assert ds.features["candidates"].feature == datasets.Value("string")
        assert ds["label"] == frame["label"].tolist()
        csv_text = project.export(format="csv")
        assert len(pd.read_csv(io.StringIO(csv_text))) == 8  # the lists as text, readable
        path = project.to_parquet(str(tmp_path / "p.parquet"))
        assert pd.read_parquet(path)["label"].tolist() == frame["label"].tolist()

        long = project.to_pandas("long")
        assert all(isinstance(x, str) for x in long["label"])
        records = project.export(format="json")
        first = records[0]
        assert first["annotations"][0]["result"]["value"] == frame["label"].iloc[0]
        assert {"answers", "n_distinct", "agreement"} <= set(first["consensus"])

        # client re-aggregation through the type: ROVER (the default) and the medoid
        votes = long[long["role"] == "annotator"][["task", "worker", "label"]]
        rover = project.to_pandas(method="auto")
        added = ["auto_label", "auto_agreement", "auto_confidence"]
        assert list(rover.columns[-3:]) == added
        assert rover["auto_label"].dtype == "str" and rover["auto_confidence"].dtype == "float64"
        direct = TEXT.aggregate(votes, "auto", CONFIG)
        assert rover["auto_label"].tolist() == direct["auto_label"].reindex(frame.index).tolist()
        round_trips(rover, tmp_path)
        medoid = project.to_pandas(method="medoid")
        for task, text in medoid["medoid_label"].items():
            assert text in frame.loc[task, "candidates"]
        own = project.to_pandas(method=TextROVER(weighted=False))
        assert own["textrover_label"].notna().all()
        with pytest.raises(errors.ValidationError, match="gamma"):
            TEXT.aggregate(votes, "rover", CONFIG, gamma=-1)
        with pytest.raises(errors.ValidationError, match="method"):
            project.to_pandas(method="ds")
        with pytest.raises(errors.ValidationError, match="bad parameters"):
            project.to_pandas(method="rover", nope=1)

        # Label Studio out and back in: the same judgements, the same decisions
        ls = project.export(format="label_studio")
        assert ls[0]["annotations"][0]["result"][0]["type"] == "textarea"
        assert isinstance(ls[0]["annotations"][0]["result"][0]["value"]["text"], list)
        copy = client.projects.create(
            name="Copy", annotation_type="text", labels=CONFIG, quality_settings=QUALITY
        )
        imported = copy.import_label_studio(ls)
        assert imported["created"] == 8
        assert imported["judgements"] == len(long)
        other = copy.to_pandas()
        key = frame["n"].to_dict()
        key_copy = other["n"].to_dict()

        def judgements(lf: pd.DataFrame, keys: dict) -> set:
            return {(keys[r.task], r.worker, r.label, str(r.role)) for r in lf.itertuples()}

        assert judgements(copy.to_pandas("long"), key_copy) == judgements(long, key)
        by_n = other.set_index("n")
        for row in frame.itertuples():
            assert by_n.loc[row.n, "label"] == row.label
            assert by_n.loc[row.n, "gold"] == row.gold or pd.isna(row.gold)


# -- bad judgements: a 422 naming the field, nothing stored ---------------------------------------
def test_bad_judgements_are_refused_and_nothing_is_stored(platform) -> None:
    customer = platform.create_customer("Text 422 customer")
    client = cynaps.Client(api_key=customer, base_url=platform.base_url, max_retries=0)
    project = client.projects.create(
        name="Short answers",
        annotation_type="text",
        labels={"max_length": 10},
        quality_settings={**QUALITY, "min_annotators": 1},
    )
    with pytest.raises(errors.ValidationError, match=r"tasks\[1\]\.gold.*labels.max_length"):
        project.upload_tasks(
            [{"data": {"q": "2+2?"}, "gold": "4"}, {"data": {"q": "x"}, "gold": "x" * 11}]
        )
    assert project.upload_tasks([{"data": {"q": "2+2?"}}]).created == 1  # nothing half-written
    project.pay_deposit(payment_method="credits")
    project.start()
    key = requests.post(  # the customer's own annotator: sees this customer's tasks only
        f"{platform.base_url}/v1/annotators",
        headers={"Authorization": f"Bearer {customer}"},
        json={"name": "Text annotator"},
        timeout=10,
    ).json()["api_key"]
    headers = {"Authorization": f"Bearer {key}"}
    task = requests.get(f"{platform.base_url}/v1/annotator/next", headers=headers, timeout=10)
    task_id = task.json()["task_id"]
    assert task.json()["labels"] == {
        "max_length": 10,
        "placeholder": "Type the answer",
        "field": None,
    }
    url = f"{platform.base_url}/v1/annotator/tasks/{task_id}/judgements"
    for bad, message in [
        ("x" * 11, "11 characters long"),
        (4, "must be a string"),
        (["4"], "must be a string"),
        ({"text": []}, "textarea"),
        ("4\x00", "NUL"),
        (None, "must be a string"),
    ]:
        r = requests.post(url, headers=headers, json={"label": bad}, timeout=10)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        # (NUL is refused by the platform's body check before the type sees it)
        assert error["param"] in ("label", "body.label") and message in error["message"], error
    assert project.get_status().judgements == 0
    ok = requests.post(url, headers=headers, json={"label": {"text": ["four"]}}, timeout=10)
    assert ok.status_code in (200, 201), ok.text
    record = project.export(format="json")[0]
    assert record["annotations"][0]["result"]["value"] == "four"
    assert orjson.loads(orjson.dumps(record["consensus"]))["answers"] == [
        {"text": "four", "count": 1}
    ]
    client.close()


# -- the widget in a real browser (as tests/test_types_seam.py) -----------------------------------
CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")
AUDIO_URL = "https://audio.example/clip.wav"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


def wav(seconds: float = 0.2, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV file (what the stand-in audio host serves)."""
    import struct

    n = int(seconds * rate)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + 2 * n,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        2 * rate,
        2,
        16,
        b"data",
        2 * n,
    )
    return header + b"\x00\x00" * n


def test_text_widget_by_keyboard_annotate_and_review(platform: LocalPlatform, page) -> None:
    """The annotate page shows the configured field's audio (an <audio controls> element with the
    task's URL as its src) and a text box: typing, Shift+Enter for a new line, Enter submits.
    The review page lists the normalised answers of a disputed task and decides it the same way.
    The audio host cannot exist here: the browser's request to it is answered by the test."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    def route(r) -> None:
        if r.request.url.startswith(platform.base_url):
            r.continue_()
        elif r.request.url == AUDIO_URL:
            r.fulfill(status=200, body=wav(), headers={"Content-Type": "audio/wav"})
        else:
            r.abort()

    page.route("**/*", route)
    page.set_default_timeout(10_000)
    customer = platform.create_customer("Text customer")

    def ok(method: str, path: str, key: str = customer, **kw) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def project(min_annotators: int, data: dict) -> str:
        body = {
            "name": "Transcribe",
            "annotation_type": "text",
            "labels": {"max_length": 200, "field": "audio", "placeholder": "Type what you hear"},
            "quality_settings": {**QUALITY, "min_annotators": min_annotators},
        }
        pid = ok("POST", "/v1/projects", json=body)["id"]
        ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": data}]})
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

    # a disputed task for the expert: two answers far apart (agreement 0 < 0.66)
    disputed = project(2, {"audio": AUDIO_URL, "speaker": "<b>two</b>"})
    for name, answer in (("Voter A", "The cat sat."), ("Voter B", "a dog ran off")):
        key = ok("POST", "/v1/annotators", json={"name": name})["api_key"]
        task = ok("GET", "/v1/annotator/next", key)
        ok("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": answer})
    assert ok("GET", f"/v1/projects/{disputed}/status")["disputed"] == 1
    single = project(1, {"audio": AUDIO_URL, "speaker": "<img src=x onerror=alert(1)>"})
    annotator = ok("POST", "/v1/annotators", json={"name": "Transcriber"})["api_key"]

    sign_in(annotator, "/ui/")
    audio = page.locator("#labels audio")
    expect(audio).to_have_count(1)
    assert audio.evaluate("a => [a.src, a.controls]") == [AUDIO_URL, True]
    box = page.locator("#labels textarea")
    expect(box).to_be_focused()
    expect(box).to_have_attribute("placeholder", "Type what you hear")
    assert box.evaluate("t => t.maxLength") == 200
    expect(page.locator("#data")).to_contain_text("<img src=x onerror=alert(1)>")  # as text
    expect(page.locator("#submit")).to_be_disabled()
    task_id = page.locator("#task-id").inner_text()
    page.keyboard.type("Hello there,")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("General Kenobi")
    expect(box).to_have_value("Hello there,\nGeneral Kenobi")
    expect(page.locator("#labels .text-count")).to_have_text("27 / 200")
    expect(page.locator("#submit")).to_be_enabled()
    if os.environ.get("CYNAPS_WIDGET_SCREENSHOT"):  # docs/img/widget-text.png is taken so
        page.set_viewport_size({"width": 900, "height": 700})
        page.screenshot(path=os.environ["CYNAPS_WIDGET_SCREENSHOT"], full_page=True)
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text(f"Saved task {task_id}")
    expect(page.locator("#empty")).to_be_visible()
    record = ok("GET", f"/v1/projects/{single}/export")[0]
    assert record["annotations"][0]["result"]["value"] == "Hello there,\nGeneral Kenobi"

    expert = ok("POST", "/v1/annotators", json={"name": "Text expert", "role": "expert"})
    sign_in(expert["api_key"], "/ui/review")
    expect(page.locator("#votes tr")).to_have_count(2)
    expect(page.locator("#agreement")).to_have_text("0%")
    expect(page.locator("#distribution .share")).to_have_count(2)
    expect(page.locator("#distribution")).to_contain_text("the cat sat")
    expect(page.locator("#labels textarea")).to_be_focused()
    page.keyboard.type("The cat sat.")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    record = ok("GET", f"/v1/projects/{disputed}/export")[0]
    assert record["annotations"][0]["result"]["value"] == "The cat sat."
    assert record["consensus"]["label_source"] == "expert"
