"""Attacks on the ``spans`` and ``boxes`` types end to end: inputs real users send (numpy and
float numbers, unhashable labels, boxes that round to nothing, Label Studio lists mixed with
plain boxes, very long documents) must be a clear 422 naming the item or work, and the
exports' helpers (COCO, token classification) must survive the sinks' round trips."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
import requests

import cynaps_data as cynaps
from cynaps_data.consensus.spans import span_support
from cynaps_data.io import token_classification
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.types import VoteArrays, get_type
from cynaps_data.types.boxes import to_coco

from .conftest import Person, annotate, make_project, png_bytes

SPANS = get_type("spans")
BOXES = get_type("boxes")
SPAN_LABELS = ["PER", "LOC"]
BOX_LABELS = ["car", "dog"]
ONE = {"min_annotators": 1, "consensus_threshold": 0.5, "enable_expert_review": False}
THREE = {**ONE, "min_annotators": 3, "max_annotators": 3}


def S(start, end, label):
    return {"start": start, "end": end, "label": label}


def B(x, y, w, h, label="car"):
    return {"x": x, "y": y, "width": w, "height": h, "label": label}


def _started(client: cynaps.Client, annotation_type: str, labels, frame, quality=ONE):
    project = make_project(
        client, annotation_type=annotation_type, labels=labels, quality_settings=quality
    )
    project.upload_dataframe(frame, progress=False)
    project.calculate_deposit()
    project.pay_deposit(payment_method="credits")
    project.start()
    return project


@pytest.fixture
def box_task(platform: LocalPlatform, client: cynaps.Client):
    """A started boxes project with one 40 x 30 PNG task, its annotator and the task."""
    project = _started(client, "boxes", BOX_LABELS, pd.DataFrame({"image": [png_bytes(40, 30)]}))
    person = Person(platform, name="Boxer", team_of=client)
    return project, person, person.next(project.id)


# -- boxes: bad answers are 422s naming the item, and store nothing -------------------------------
@pytest.mark.parametrize(
    ("label", "words"),
    [
        ([B(1, 1, 5, 5, ["car"])], "boxes[0].label ['car'] is not one of"),
        ([B(1, 1, 5, 5), B(1, 1, 5, 5, {"name": "car"})], "boxes[1].label {'name': 'car'}"),
        ([B(1, 1, 0.004, 5)], "boxes[0] has no area"),
        (
            [{"type": "rectanglelabels", "value": "x"}],
            "result[0].value must be an object",
        ),
        (
            [
                {
                    "type": "rectanglelabels",
                    "original_width": 40,
                    "original_height": 30,
                    "value": {
                        "x": 1,
                        "y": 1,
                        "width": 5,
                        "height": 5,
                        "rectanglelabels": [["car"]],
                    },
                }
            ],
            "boxes[0].label ['car'] is not one of",
        ),
        (
            [
                {
                    "type": "rectanglelabels",
                    "original_width": 40,
                    "original_height": 30,
                    "value": {
                        "x": 10,
                        "y": 10,
                        "width": 10,
                        "height": 10,
                        "rectanglelabels": ["car"],
                    },
                },
                B(20, 20, 5, 5, "dog"),
            ],
            "result[1] is not a Label Studio region",
        ),
    ],
)
def test_bad_boxes_are_422_naming_the_item(box_task, label, words) -> None:
    project, person, task = box_task
    r = person.submit(task["task_id"], label)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["param"] == "label" and words in error["message"], error
    assert project.get_status().judgements == 0


def test_numpy_numbers_are_numbers_for_boxes_as_for_spans() -> None:
    config = BOXES.validate_config(BOX_LABELS)
    data = {"image": {"width": 40, "height": 30}}
    value = [B(np.int64(1), np.float32(1.5), np.float64(10), np.int32(5), np.str_("car"))]
    assert BOXES.validate_value(value, config, data) == [B(1.0, 1.5, 10.0, 5.0)]
    spans = SPANS.validate_value([S(np.int64(0), np.int32(3), np.str_("PER"))], SPANS_CONFIG)
    assert spans == [S(0, 3, "PER")] and type(spans[0]["label"]) is str
    # an int too large for a float is no number of pixels (not an OverflowError)
    with pytest.raises(ValueError, match=r"boxes\[0\]\.height must be a finite number"):
        BOXES.validate_value([B(1, 1, 5, 10**400)], config)


SPANS_CONFIG = SPANS.validate_config(SPAN_LABELS)


def test_integral_float_offsets_are_offsets_and_others_name_the_field(
    platform: LocalPlatform, client: cynaps.Client
) -> None:
    """JSON and pandas make 3.0 of 3 (a column with a gap is float): offsets that are whole
    numbers are taken as ints; 2.5, NaN and inf are errors naming the field."""
    text = "Ana met Bob"
    assert SPANS.validate_value([S(0.0, 3.0, "PER")], SPANS_CONFIG, {"text": text}) == [
        {**S(0, 3, "PER"), "text": "Ana"}
    ]
    for bad, field in [(2.5, "end"), (float("nan"), "end"), (float("inf"), "end")]:
        with pytest.raises(ValueError, match=rf"spans\[0\]\.{field} must be an integer"):
            SPANS.validate_value([S(0, bad, "PER")], SPANS_CONFIG, {"text": text})
    project = _started(client, "spans", SPAN_LABELS, pd.DataFrame({"text": [text]}))
    person = Person(platform, name="Tagger", team_of=client)
    task = person.next(project.id)
    r = person.submit(task["task_id"], [S(8.0, 11.0, "PER")])
    assert r.status_code == 201, r.text
    assert project.to_pandas()["label"].iloc[0][0]["text"] == "Bob"


# -- very long documents -------------------------------------------------------------------------
def _long_answers(n_spans: int = 3000) -> tuple[str, list[list[dict]]]:
    text = " ".join(f"w{i}" for i in range(n_spans))
    offsets, at = [], 0
    for word in text.split(" "):
        offsets.append((at, at + len(word)))
        at += len(word) + 1
    rng = np.random.default_rng(0)
    answers = [
        [S(s, e, SPAN_LABELS[int(rng.integers(2))]) for s, e in offsets if rng.random() < 0.9]
        for _ in range(3)
    ]
    return text, answers


def test_a_long_document_is_decided_and_exported_in_near_linear_time() -> None:
    """3 answers of ~1,350 spans each: the decision (run in the request of the last
    judgement), the review summary and the export's columns (the supports) take well under a
    second each (they were quadratic in the spans: ~5 s here, minutes for 5,000 spans)."""
    text, answers = _long_answers(1500)
    votes = [SPANS.validate_value(a, SPANS_CONFIG, {"text": text}) for a in answers]
    quality = {**THREE, "enable_expert_review": True}
    for config in (SPANS_CONFIG, SPANS.validate_config({**SPANS_CONFIG, "allow_overlap": True})):
        began = time.perf_counter()
        decision = SPANS.decide(votes, quality, 3, config)
        SPANS.summarize(votes, config)
        assert time.perf_counter() - began < 1.5
        assert decision.status in ("completed", "disputed")
    final = SPANS.decide(votes, THREE, 3, SPANS_CONFIG).final_label
    assert final and len(final) > 700
    arrays = VoteArrays(
        1,
        np.array([0, 0, 0]),
        pa.array([orjson.dumps(v).decode() for v in votes]),
        np.array([3]),
        pa.array([orjson.dumps(final).decode()]),
        pa.array([""]),
        pa.array([""]),
    )
    began = time.perf_counter()
    columns = SPANS.wide_columns(arrays, SPANS_CONFIG)
    assert time.perf_counter() - began < 1.0
    supports = [s["support"] for s in columns["label"].to_pylist()[0]]
    assert supports == [span_support(s, votes) for s in final[:50]] + supports[50:]


# -- exports' helpers after the sinks ------------------------------------------------------------
def test_to_coco_reads_a_frame_back_from_parquet_and_csv(
    platform: LocalPlatform, client: cynaps.Client, tmp_path
) -> None:
    frame = pd.DataFrame({"image": [png_bytes(40, 30), png_bytes(50, 20)]})
    project = _started(client, "boxes", BOX_LABELS, frame)
    ids = project.to_pandas(fetch_images=False).index.tolist()
    annotate(platform, client, project, {ids[0]: [[B(1, 1, 10, 10)]], ids[1]: [[]]})
    df = project.to_pandas(fetch_images=False)
    want = to_coco(df)
    assert len(want["images"]) == 2 and len(want["annotations"]) == 1
    df.to_parquet(tmp_path / "b.parquet")
    assert to_coco(pd.read_parquet(tmp_path / "b.parquet"), config=project.labels) == want
    df.to_csv(tmp_path / "b.csv")
    back = pd.read_csv(tmp_path / "b.csv", index_col="task")
    assert to_coco(back, config=project.labels) == want
    relabelled = df.assign(label=[[B(1, 1, 10, 10, "cat")], []])
    with pytest.raises(cynaps.errors.ValidationError, match=r"task \d+.*'cat' is not one of"):
        to_coco(relabelled)


def test_token_classification_names_a_span_label_outside_the_labels() -> None:
    frame = pd.DataFrame(
        {"text": ["Ana met Bob"], "label": [[S(0, 3, "PER"), S(8, 11, "ORG")]]},
        index=pd.Index([5], name="task"),
    )
    with pytest.raises(cynaps.errors.ValidationError, match=r"label\[5\].*'ORG'"):
        token_classification(frame, labels=SPAN_LABELS)


def test_spans_raw_http_float_offset(platform: LocalPlatform, client: cynaps.Client) -> None:
    """The annotator API takes the same JSON numbers (3.0) a browser's JSON.stringify may send."""
    _started(client, "spans", SPAN_LABELS, pd.DataFrame({"text": ["Ana met Bob"]}))
    key = platform.create_member("annotator", "raw", owner_key=client.settings.api_key)
    headers = {"Authorization": f"Bearer {key}"}
    task = requests.get(f"{platform.base_url}/v1/annotator/next", headers=headers, timeout=10)
    url = f"{platform.base_url}/v1/annotator/tasks/{task.json()['task_id']}/judgements"
    r = requests.post(
        url,
        data=b'{"label": [{"start": 0.0, "end": 3e0, "label": "PER"}]}',
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 201, r.text


def test_an_absurd_image_size_is_unknown_and_the_project_still_exports(
    client: cynaps.Client,
) -> None:
    """A task whose own width is 1e20 made every export of the project fail (int64 out of
    range): such a size is no size, and a task whose image size is unknown is refused at
    upload (it could never be boxed), naming it, with nothing stored."""
    project = make_project(client, annotation_type="boxes", labels=BOX_LABELS)
    good = {"image": "https://img.example/a.jpg", "width": 64, "height": 48}
    absurd = {"image": "https://img.example/b.jpg", "width": 1e20, "height": 10}
    with pytest.raises(cynaps.errors.ValidationError, match=r"tasks\[1\]\.data: .*unknown"):
        project.upload_tasks([good, absurd])
    with pytest.raises(cynaps.errors.ValidationError, match=r"tasks\[1\]\.data: .*unknown"):
        project.upload_dataframe(pd.DataFrame([good, absurd]), progress=False)
    assert project.to_pandas(fetch_images=False).empty
    project.upload_tasks([good])
    frame = project.to_pandas(fetch_images=False)
    assert frame["width"].tolist() == [64] and frame["height"].dtype == "Int64"
    with pytest.raises(ValueError, match="size of the task's image 'image'.*unknown"):
        BOXES.validate_value([B(1, 1, 5, 5)], project.labels, {"image": "u", "width": 2**40})
