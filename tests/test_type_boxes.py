"""The ``boxes`` annotation type (issue 15): labelled bounding boxes on an image.

The hooks on their own (config, values inside the image, Label Studio ``rectanglelabels``, the
decision, the summary, sandbox answers), the image header sizes, then end to end on a real
platform with a sandbox workforce (create, upload images as assets, status, pandas / Parquet /
feather / pickle / CSV / ``datasets`` with the image feature, COCO JSON, Label Studio out and
back in), bad boxes refused with a 422 naming the item, and the widget in Chromium.
"""

from __future__ import annotations

import io
import os
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import requests

import cynaps_data as cynaps
from cynaps_data import errors
from cynaps_data.imagesize import image_size
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings
from cynaps_data.types import get_type
from cynaps_data.types.boxes import to_coco

BOXES = get_type("boxes")
LABELS = ["person", "car", "dog"]
CONFIG = BOXES.validate_config({"labels": LABELS, "field": "image"})
QUALITY = {"min_annotators": 3, "consensus_threshold": 0.66, "enable_expert_review": True}
DATA = {"image": {"asset": "a" * 64, "url": "/v1/x", "width": 200, "height": 100}}
QUALITY_ALL = {**QUALITY, "max_annotators": 4}


def box(x: float, y: float, w: float, h: float, label: str = "person") -> dict:
    return {"x": float(x), "y": float(y), "width": float(w), "height": float(h), "label": label}


def png(width: int, height: int, seed: int = 0) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (200 - seed * 20 % 200, 220, 240))
    ImageDraw.Draw(image).rectangle((width // 4, height // 4, width // 2, height // 2), fill="red")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# -- the hooks ------------------------------------------------------------------------------------
def test_config_normalised_and_errors_name_the_setting() -> None:
    assert BOXES.validate_config(["a", "b"]) == {
        "labels": ["a", "b"],
        "field": "image",
        "min_size": 0,
    }
    assert (
        BOXES.validate_config({"labels": ["a"], "field": "photo", "min_size": 4})["min_size"] == 4
    )
    for bad, where in [
        ({"labels": []}, "labels.labels"),
        ({"labels": ["a", "a"]}, r"labels.labels\[1\]"),
        ({"labels": ["a", ""]}, r"labels.labels\[1\]"),
        ({"labels": ["a"], "field": ""}, "labels.field"),
        ({"labels": ["a"], "min_size": -1}, "labels.min_size"),
        ({"labels": ["a"], "min_size": True}, "labels.min_size"),
        ({"labels": ["a"], "colour": "red"}, "labels.colour"),
        ("a", "labels must be an object"),
    ]:
        with pytest.raises(ValueError, match=where):
            BOXES.validate_config(bad)


def test_values_inside_the_image_and_bad_boxes_name_the_item() -> None:
    good = [box(10, 5, 50, 40), box(150, 60, 50, 40, "dog")]
    assert BOXES.validate_value(good, CONFIG, DATA) == good
    assert BOXES.validate_value([], CONFIG, DATA) == []  # nothing to box
    # an edge rounding past the image by less than half a pixel is clamped to it
    assert BOXES.validate_value([box(-0.2, 0, 200.3, 100.4)], CONFIG, DATA) == [box(0, 0, 200, 100)]
    assert BOXES.validate_value([box(1, 2, 3.14159, 4)], CONFIG, DATA)[0]["width"] == 3.14
    # the data's own width/height fields (a URL image) give the size too
    url_data = {"image": "https://img.example/a.jpg", "width": 64, "height": 48}
    assert BOXES.validate_value([box(0, 0, 64, 48)], CONFIG, url_data) == [box(0, 0, 64, 48)]
    for bad, message in [
        ([good[0], box(180, 5, 50, 40)], r"boxes\[1\] ends at \(230, 45\), outside the 200 x 100"),
        ([box(-5, 5, 50, 40)], r"boxes\[0\] starts outside the image"),
        ([box(10, 5, -5, 40)], r"boxes\[0\] has a width or height of -5"),
        ([box(10, 5, 0, 40)], r"boxes\[0\] has a width or height of 0"),
        ([good[0], box(1, 1, 5, 5, "cow")], r"boxes\[1\]\.label 'cow' is not one of"),
        ([{**good[0], "z": 1}], r"boxes\[0\]\.z is not a box field"),
        ([{**good[0], "x": "1"}], r"boxes\[0\]\.x must be a finite number"),
        ([{**good[0], "x": float("nan")}], r"boxes\[0\]\.x must be a finite number"),
        ([{**good[0], "y": True}], r"boxes\[0\]\.y must be a finite number"),
        (["x"], r"boxes\[0\] must be an object"),
        ("cat", "must be a list of boxes"),
        (None, "must be a list of boxes"),
    ]:
        with pytest.raises(ValueError, match=message):
            BOXES.validate_value(bad, CONFIG, DATA)
    small = BOXES.validate_config({"labels": LABELS, "min_size": 8})
    with pytest.raises(ValueError, match=r"boxes\[0\] is 5 x 40 px.*labels.min_size = 8"):
        BOXES.validate_value([box(10, 5, 5, 40)], small, DATA)
    # the size must be known where the platform checks (data given), not on the client (none)
    with pytest.raises(ValueError, match="size of the task's image 'image'.*unknown"):
        BOXES.validate_value(good, CONFIG, {"image": "https://img.example/a.jpg"})
    with pytest.raises(ValueError, match="no image field 'image'"):
        BOXES.validate_value(good, CONFIG, {"photo": "x"})
    assert BOXES.validate_value([box(500, 500, 9, 9)], CONFIG) == [box(500, 500, 9, 9)]


def test_label_studio_rectanglelabels_both_ways_in_percent() -> None:
    value = [box(10, 5, 50, 40), box(150, 60, 50, 40, "dog")]
    result = BOXES.label_studio_result(value, CONFIG, DATA)
    assert [r["type"] for r in result] == ["rectanglelabels"] * 2
    first = result[0]
    assert (first["original_width"], first["original_height"], first["to_name"]) == (
        200,
        100,
        "image",
    )
    assert first["value"] == {
        "x": 5.0,
        "y": 5.0,
        "width": 25.0,
        "height": 40.0,
        "rotation": 0,
        "rectanglelabels": ["person"],
    }
    assert BOXES.from_label_studio_result(result, CONFIG, DATA) == value
    assert BOXES.validate_value(result, CONFIG, DATA) == value  # the LS shape is accepted too
    assert BOXES.label_studio_result([], CONFIG, DATA) == []
    assert BOXES.from_label_studio_result([{"type": "choices", "value": {}}], CONFIG, DATA) == []
    rotated = [{**first, "value": {**first["value"], "rotation": 30}}]
    with pytest.raises(ValueError, match=r"result\[0\] is rotated"):
        BOXES.from_label_studio_result(rotated, CONFIG, DATA)


def test_decision_merges_boxes_and_disputes_disagreement() -> None:
    a = [box(10, 10, 40, 40), box(100, 20, 60, 50, "car")]
    b = [box(12, 11, 40, 38), box(102, 22, 58, 50, "car")]
    c = [box(11, 9, 41, 41)]  # missed the car
    done = BOXES.decide([a, b, c], QUALITY_ALL, 3, CONFIG)
    assert (done.status, done.label_source) == ("completed", "consensus")
    assert [x["label"] for x in done.final_label] == ["person", "car"]  # car: 2 of 3 >= 0.66
    assert done.final_label[0] == box(11, 10, 41, 40)  # median edges: x 10,12,11 → 11; x2 → 52
    assert done.agreement == pytest.approx((1.0 + 2 / 3 + 2 / 3) / 3)
    far = [[box(0, 0, 10, 10)], [box(100, 50, 20, 20, "dog")], []]
    assert BOXES.decide(far, QUALITY_ALL, 3, CONFIG).status == "disputed"
    no_review = {**QUALITY_ALL, "enable_expert_review": False}
    assert BOXES.decide(far, no_review, 3, CONFIG).needed == 4
    last = BOXES.decide([*far, []], no_review, 4, CONFIG)
    assert (last.status, last.label_source, last.final_label) == ("completed", "majority", [])
    empty = BOXES.decide([[], [], []], QUALITY_ALL, 3, CONFIG)
    assert (empty.status, empty.final_label, empty.agreement) == ("completed", [], 1.0)
    assert BOXES.decide([a], QUALITY_ALL, 3, CONFIG).status == "pending"


def test_summary_keeps_the_merged_boxes_with_support() -> None:
    a = [box(10, 10, 40, 40), box(100, 20, 60, 50, "car")]
    summary = BOXES.summarize([a, a[:1]], None)
    assert summary["n_boxes"] == [2, 1]
    assert [(m["label"], m["support"]) for m in summary["merged"]] == [
        ("person", 1.0),
        ("car", 0.5),
    ]
    assert summary["f1"] == pytest.approx(2 / 3) and summary["mean_iou"] == 1.0
    assert BOXES.summarize([], CONFIG) == {
        "merged": [],
        "n_boxes": [],
        "f1": None,
        "mean_iou": None,
    }


def test_sandbox_misses_jitters_and_mislabels_per_annotator_deterministically() -> None:
    data = {"image": {"asset": "b" * 64, "url": "/v1/y", "width": 640, "height": 480}}
    truth = [box(100, 100, 200, 150), box(400, 50, 12, 10, "car"), box(300, 300, 120, 100, "dog")]
    assert BOXES.simulate(truth, CONFIG, 1.0, random.Random(1), data) == truth
    answers = [BOXES.simulate(truth, CONFIG, 0.7, random.Random(s), data) for s in range(300)]
    again = [BOXES.simulate(truth, CONFIG, 0.7, random.Random(s), data) for s in range(300)]
    assert answers == again
    for answer in answers:  # every simulated answer is a valid one
        assert BOXES.validate_value(answer, CONFIG, data) == answer

    def found(answer: list, target: dict) -> bool:
        from cynaps_data.consensus.boxes import iou_matrix

        ours = [b for b in answer if b["label"] == target["label"]]
        if not ours:
            return False
        xywh = [[b[k] for k in ("x", "y", "width", "height")] for b in ours]
        goal = [[target[k] for k in ("x", "y", "width", "height")]]
        import numpy as np

        return bool(iou_matrix(np.array(goal), np.array(xywh)).max() >= 0.5)

    big_hits = sum(found(a, truth[0]) for a in answers) / 300
    small_hits = sum(found(a, truth[1]) for a in answers) / 300
    assert small_hits < big_hits - 0.2  # small boxes are missed far more often
    assert 0.4 < big_hits < 0.99  # noisy, not noise only
    assert any(len(a) > 3 for a in answers)  # strays / splits happen
    assert any(
        b["label"] != "person" and found([{**b, "label": "person"}], truth[0])
        for a in answers
        for b in a
    )
    careful = [BOXES.simulate(truth, CONFIG, 0.95, random.Random(s), data) for s in range(300)]
    assert sum(found(a, truth[0]) for a in careful) / 300 > big_hits
    text = orjson.dumps(data).decode()
    pseudo = BOXES.pseudo_truth(text, CONFIG)
    assert pseudo == BOXES.pseudo_truth(text, CONFIG)
    assert BOXES.validate_value(pseudo, CONFIG, data) == pseudo
    sizes = {
        len(BOXES.pseudo_truth(orjson.dumps({**data, "n": i}).decode(), CONFIG)) for i in range(40)
    }
    assert 0 in sizes and max(sizes) >= 3


def test_image_size_from_the_header() -> None:
    from PIL import Image

    for fmt in ("PNG", "JPEG", "GIF", "WEBP"):
        out = io.BytesIO()
        Image.new("RGB", (321, 123)).save(out, fmt)
        assert image_size(out.getvalue()) == (321, 123), fmt
    assert image_size(b"<svg/>") is None and image_size(b"\x89PNG\r\n\x1a\n") is None


# -- end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Iterator[LocalPlatform]:
    """A platform of its own with a sandbox workforce (3 annotators, 1 expert)."""
    db = tmp_path_factory.mktemp("boxes") / "cynaps.db"
    workforce = WorkforceSettings(
        annotators=3, experts=1, seconds_per_judgement=0.02, accuracy=(0.85, 0.97), seed=5
    )
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


SIZES = [(320, 240), (200, 150), (640, 360), (300, 300), (256, 192), (180, 240)]


def plain(value: Any) -> Any:
    """numpy arrays inside values read back from Parquet/feather as plain lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def round_trips(frame: pd.DataFrame, tmp_path: Path) -> None:
    """The frame survives the sinks with default arguments (CSV stringifies the lists)."""
    import datasets

    frame.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert [plain(v) for v in back["label"]] == frame["label"].tolist()
    assert [plain(v) for v in back["objects"]] == frame["objects"].tolist()
    assert back["width"].tolist() == frame["width"].tolist()
    frame.reset_index().to_feather(tmp_path / "f.feather")
    feather = pd.read_feather(tmp_path / "f.feather")
    assert [plain(v) for v in feather["objects"]] == frame["objects"].tolist()
    assert pickle.loads(pickle.dumps(frame)).equals(frame)
    csv = pd.read_csv(io.StringIO(frame.to_csv()))
    assert len(csv) == len(frame) and csv["width"].tolist() == frame["width"].tolist()
    ds = datasets.Dataset.from_pandas(frame)
    assert ds[0]["objects"] == frame["objects"].iloc[0]
    assert ds[0]["label"] == frame["label"].iloc[0]


def test_boxes_project_end_to_end(crowd: LocalPlatform, tmp_path: Path) -> None:
    import datasets

    images = [png(w, h, i) for i, (w, h) in enumerate(SIZES)]
    gold = [
        [box(w / 4, h / 4, w / 4 + 1, h / 4 + 1, "car")] if i < 3 else None
        for i, (w, h) in enumerate(SIZES)
    ]
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "n": datasets.Value("int64"),
            "truth": datasets.List(
                {
                    **{c: datasets.Value("float64") for c in ("x", "y", "width", "height")},
                    "label": datasets.Value("string"),
                }
            ),
        }
    )

    def source(truth: list) -> datasets.Dataset:  # cppe-5's way: an Image feature
        rows = {"image": [{"bytes": b, "path": None} for b in images], "n": list(range(len(SIZES)))}
        return datasets.Dataset.from_dict({**rows, "truth": truth}, features=features)

    with cynaps.Client(api_key=crowd.create_customer(), base_url=crowd.base_url) as client:
        with pytest.raises(errors.ValidationError, match="labels.labels"):
            client.projects.create(name="bad", annotation_type="boxes", labels={"labels": []})
        project = client.projects.create(
            name="Detect",
            annotation_type="boxes",
            labels={"labels": LABELS},
            quality_settings=QUALITY,
        )
        assert project.labels == CONFIG
        # a gold box outside its image is refused naming the task and the box; nothing stored
        too_wide = source([[box(300, 0, 30, 10)], *gold[1:]])
        with pytest.raises(errors.ValidationError, match=r"boxes\[0\] ends at \(330, 10\)"):
            project.upload_dataset(too_wide, gold_column="truth", progress=False)
        assert project.get_status().total == 0
        result = project.upload_dataset(source(gold), gold_column="truth", progress=False)
        assert result.created == len(SIZES)
        project.pay_deposit(payment_method="credits")
        project.start()
        project.wait(timeout=120, poll_interval=0.2, progress=False)
        assert project.get_status().is_complete

        frame = project.to_pandas()
        assert frame["width"].dtype == "Int64"
        assert list(zip(frame["width"], frame["height"], strict=True)) == SIZES
        assert frame["label"].map(lambda v: isinstance(v, list)).all()
        for value, (w, h) in zip(frame["label"], SIZES, strict=True):
            assert (
                BOXES.validate_value(value, CONFIG, {"image": {"width": w, "height": h}}) == value
            )
        assert frame["gold"].iloc[0] == gold[0] and frame["gold"].iloc[4] is None
        objects = frame["objects"].iloc[0]
        assert set(objects) == {"bbox", "category", "area", "support", "confidence"}
        labels0 = frame["label"].iloc[0]
        assert objects["bbox"] == [[b["x"], b["y"], b["width"], b["height"]] for b in labels0]
        assert objects["category"] == [b["label"] for b in labels0]
        assert all(0 < s <= 1 for o in frame["objects"] for s in o["support"])
        assert frame["agreement"].between(0, 1).all()
        cols = list(frame.columns)
        assert cols.index("objects") > cols.index("n_annotations")
        round_trips(frame, tmp_path)

        # datasets: the image feature, objects with ClassLabel categories (cppe-5's shape)
        ds = project.to_dataset()
        assert isinstance(ds.features["image"], datasets.Image)
        assert ds.features["objects"]["category"].feature.names == LABELS
        row = ds[0]
        assert row["image"].size == SIZES[0]
        assert row["objects"]["category"] == [LABELS.index(c) for c in objects["category"]]
        assert row["objects"]["bbox"] == objects["bbox"]
        assert (row["width"], row["height"]) == SIZES[0]
        ready_for_detection_training(ds)

        # COCO JSON from the frame
        coco = to_coco(frame)
        assert [c["name"] for c in coco["categories"]] == LABELS
        assert [(i["width"], i["height"]) for i in coco["images"]] == SIZES
        n_boxes = sum(len(v) for v in frame["label"])
        assert len(coco["annotations"]) == n_boxes
        first = [a for a in coco["annotations"] if a["image_id"] == frame.index[0]]
        assert [a["bbox"] for a in first] == objects["bbox"]
        assert orjson.loads(orjson.dumps(coco)) == coco

        long = project.to_pandas("long")  # the long frame's box lists survive the sinks too
        long.to_parquet(tmp_path / "l.parquet")
        assert [plain(v) for v in pd.read_parquet(tmp_path / "l.parquet")["label"]] == (
            long["label"].tolist()
        )
        long.to_feather(tmp_path / "l.feather")
        assert pickle.loads(pickle.dumps(long)).equals(long)
        assert len(pd.read_csv(io.StringIO(long.to_csv()))) == len(long)
        assert datasets.Dataset.from_pandas(long)[0]["label"] == long["label"].iloc[0]

        # client re-aggregation across tasks: the reliability model (default) and matching
        votes = project.to_pandas("long").query("role == 'annotator'")[["task", "worker", "label"]]
        auto = project.to_pandas(method="auto", fetch_images=False)
        added = ["auto_label", "auto_objects", "auto_confidence"]
        assert list(auto.columns[-3:]) == added and auto["auto_confidence"].dtype == "float64"
        direct = BOXES.aggregate(votes, "reliability", CONFIG)
        assert (
            auto["auto_label"].tolist() == direct["reliability_label"].reindex(auto.index).tolist()
        )
        for value, objects_, (w, h) in zip(
            auto["auto_label"], auto["auto_objects"], SIZES, strict=True
        ):
            assert BOXES.validate_value(value, CONFIG, {"image": {"width": w, "height": h}}) == (
                value
            )
            assert objects_["category"] == [b["label"] for b in value]
            assert all(0 <= c <= 1 for c in objects_["confidence"])
        matching = project.to_pandas(method="matching", fetch_images=False)
        assert matching["matching_objects"].map(lambda o: o["support"] == o["confidence"]).all()
        auto.to_parquet(tmp_path / "a.parquet")  # the sinks keep the added columns too
        back = pd.read_parquet(tmp_path / "a.parquet")
        for name in added[:2]:
            assert [plain(v) for v in back[name]] == auto[name].tolist()
        assert back[added[2]].equals(auto[added[2]])
        auto.reset_index().to_feather(tmp_path / "a.feather")
        assert pd.read_csv(io.StringIO(auto.to_csv()))["auto_label"].notna().all()
        assert datasets.Dataset.from_pandas(auto.drop(columns=["image"])).num_rows == len(SIZES)
        assert BOXES.aggregate(votes.iloc[:0], "matching", CONFIG).empty
        with pytest.raises(errors.ValidationError, match="method"):
            project.to_pandas(method="ds")
        with pytest.raises(errors.ValidationError, match="bad parameters"):
            project.to_pandas(method="matching", nope=1)

        # Label Studio out and back in: the same judgements and decisions
        ls = project.export(format="label_studio")
        regions = [r for t in ls for a in t["annotations"] for r in a["result"]]
        assert regions and {r["type"] for r in regions} == {"rectanglelabels"}
        assert all(0 <= r["value"]["x"] <= 100 and r["original_width"] > 0 for r in regions)
        copy = client.projects.create(
            name="Copy", annotation_type="boxes", labels=CONFIG, quality_settings=QUALITY
        )
        imported = copy.import_label_studio(ls)
        assert imported["created"] == len(SIZES) and imported["judgements"] == len(long)
        key, key_copy = frame["n"].to_dict(), copy.to_pandas(fetch_images=False)["n"].to_dict()

        def judgements(lf: pd.DataFrame, keys: dict) -> set:
            return {
                (keys[r.task], r.worker, orjson.dumps(r.label), str(r.role))
                for r in lf.itertuples()
            }

        assert judgements(copy.to_pandas("long"), key_copy) == judgements(long, key)
        other = copy.to_pandas(fetch_images=False).set_index("n")
        for row in frame.itertuples():
            assert other.loc[row.n, "label"] == row.label


def ready_for_detection_training(ds: Any) -> None:
    """The dataset feeds a transformers object-detection image processor as the fine-tuning
    recipe does (COCO-format annotations from ``objects``), without downloading anything."""
    transformers = pytest.importorskip("transformers")
    processor = transformers.DetrImageProcessor()  # default settings: no hub access
    row = ds[0]
    objects = row["objects"]
    annotations = [
        {"image_id": 0, "category_id": c, "bbox": b, "area": a, "iscrowd": 0}
        for c, b, a in zip(objects["category"], objects["bbox"], objects["area"], strict=True)
    ]
    out = processor(
        images=[row["image"].convert("RGB")],
        annotations=[{"image_id": 0, "annotations": annotations}],
        return_tensors=None,
    )
    target = out["labels"][0]
    assert list(target["class_labels"]) == objects["category"]
    assert len(target["boxes"]) == len(objects["bbox"])


# -- bad boxes: a 422 naming the item, nothing stored ---------------------------------------------
def test_bad_boxes_are_refused_and_nothing_is_stored(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    customer = platform.create_customer("Boxes 422 customer")
    client = cynaps.Client(api_key=customer, base_url=platform.base_url, max_retries=0)
    project = client.projects.create(
        name="Boxes",
        annotation_type="boxes",
        labels={"labels": LABELS},
        quality_settings={**QUALITY, "min_annotators": 1},
    )
    frame = pd.DataFrame({"image": [png(120, 80)]})
    assert project.upload_dataframe(frame, progress=False).created == 1
    project.pay_deposit(payment_method="credits")
    project.start()
    key = requests.post(
        f"{platform.base_url}/v1/annotators",
        headers={"Authorization": f"Bearer {customer}"},
        json={"name": "Boxes annotator"},
        timeout=10,
    ).json()["api_key"]
    headers = {"Authorization": f"Bearer {key}"}
    task = requests.get(
        f"{platform.base_url}/v1/annotator/next", headers=headers, timeout=10
    ).json()
    assert (task["data"]["image"]["width"], task["data"]["image"]["height"]) == (120, 80)
    url = f"{platform.base_url}/v1/annotator/tasks/{task['task_id']}/judgements"
    ok_box = box(1, 1, 10, 10)
    for bad, message in [
        ([ok_box, box(100, 10, 30, 10)], "boxes[1] ends at (130, 20), outside the 120 x 80 image"),
        ([box(10, 10, -4, 10)], "boxes[0] has a width or height of -4"),
        ([ok_box, ok_box, box(1, 1, 5, 5, "cow")], "boxes[2].label 'cow' is not one of"),
        ([box(-3, 0, 5, 5)], "boxes[0] starts outside the image"),
        ("person", "must be a list of boxes"),
    ]:
        r = requests.post(url, headers=headers, json={"label": bad}, timeout=10)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["param"] in ("label", "body.label") and message in error["message"], error
    assert project.get_status().judgements == 0
    idle = project.to_pandas(fetch_images=False)  # before any vote: no label, no objects
    assert idle["objects"].tolist() == [None] and idle["label"].tolist() == [None]
    assert (idle["width"].iloc[0], idle["height"].iloc[0]) == (120, 80)
    idle.to_parquet(tmp_path / "idle.parquet")
    assert pd.read_parquet(tmp_path / "idle.parquet")["width"].tolist() == [120]
    import datasets

    assert datasets.Dataset.from_pandas(idle.drop(columns=["image"])).num_rows == 1
    ok = requests.post(url, headers=headers, json={"label": [ok_box]}, timeout=10)
    assert ok.status_code in (200, 201), ok.text
    record = project.export(format="json")[0]
    assert record["annotations"][0]["result"]["value"] == [ok_box]
    client.close()


# -- the widget in a real browser (as tests/test_type_rating.py) ----------------------------------
CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_ENV = "CYNAPS_WIDGET_SCREENSHOTS"
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
ORIGINAL = (1600, 1000)  # shown at about half its size: boxes must come back in original pixels


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


def test_boxes_widget_draw_relabel_delete_submit_and_review(platform: LocalPlatform, page) -> None:
    """An annotator draws two boxes with mouse drags on an image shown smaller than its original
    size, relabels the second by key, selects and deletes the first, submits with Enter: the
    export holds the second box in original pixels (within one pixel). The expert sees two
    annotators' boxes over the image and accepts the pre-drawn merged boxes with Enter."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(platform.base_url) else r.abort(),
    )
    page.set_default_timeout(15_000)
    page.set_viewport_size({"width": 1000, "height": 1500})
    customer = platform.create_customer("Boxes widget customer")
    client = cynaps.Client(api_key=customer, base_url=platform.base_url, max_retries=0)

    def ok(method: str, path: str, key: str = customer, **kw) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def project(min_annotators: int, name: str) -> Any:
        p = client.projects.create(
            name=name,
            annotation_type="boxes",
            labels={"labels": LABELS},
            quality_settings={**QUALITY, "min_annotators": min_annotators},
        )
        frame = pd.DataFrame({"image": [png(*ORIGINAL, seed=min_annotators)], "note": ["<b>x</b>"]})
        p.upload_dataframe(frame, progress=False)
        p.pay_deposit(payment_method="credits")
        p.start()
        return p

    def sign_in(key: str, path: str) -> None:
        if page.url.startswith("http"):
            page.evaluate("sessionStorage.clear()")
        page.goto(platform.base_url + path)
        page.fill("#signin-key", key)
        page.click("#signin-form button[type=submit]")

    # a disputed task for the expert: two annotators who boxed different things
    disputed = project(2, "Street scene")
    for name, answer in (
        ("Boxer A", [box(100, 100, 300, 200), box(900, 600, 200, 150, "car")]),
        ("Boxer B", [box(1200, 100, 200, 300, "dog")]),
    ):
        key = ok("POST", "/v1/annotators", json={"name": name})["api_key"]
        task = ok("GET", "/v1/annotator/next", key)
        ok("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": answer})
    assert disputed.get_status().disputed == 1
    single = project(1, "Parking lot")
    annotator = ok("POST", "/v1/annotators", json={"name": "Box drawer"})["api_key"]

    sign_in(annotator, "/ui/")
    overlay = page.locator("#labels svg.boxes-overlay")
    expect(page.locator("#submit")).to_be_enabled()  # the image is loaded; no box is an answer
    scale = float(page.locator("#labels .boxes-inner").get_attribute("data-scale"))
    assert 0.3 < scale < 0.7  # shown at about half size
    assert overlay.evaluate("s => s.getBoundingClientRect().width") == pytest.approx(
        ORIGINAL[0] * scale, abs=1
    )

    def drag(x0: float, y0: float, x1: float, y1: float) -> None:
        """A mouse drag between two points given in original image pixels."""
        overlay.scroll_into_view_if_needed()
        rect = overlay.evaluate("s => { const r = s.getBoundingClientRect(); return [r.x, r.y]; }")
        page.mouse.move(rect[0] + x0 * scale, rect[1] + y0 * scale)
        page.mouse.down()
        page.mouse.move(rect[0] + (x0 + x1) / 2 * scale, rect[1] + (y0 + y1) / 2 * scale, steps=4)
        page.mouse.move(rect[0] + x1 * scale, rect[1] + y1 * scale, steps=4)
        page.mouse.up()

    drag(100, 100, 500, 400)  # the first label (person) by default
    drag(800, 500, 1200, 900)
    boxes = page.locator("#labels svg rect.box")
    expect(boxes).to_have_count(2)
    page.keyboard.press("2")  # relabels the selected (just drawn) box: car
    expect(boxes.nth(1)).to_have_attribute("data-label", "car")
    expect(boxes.nth(0)).to_have_attribute("data-label", "person")
    expect(page.locator("#data")).to_contain_text("<b>x</b>")  # task data as text
    if os.environ.get(SCREENSHOT_ENV):
        page.screenshot(path=str(DOCS_IMG / "widget-boxes.png"), full_page=True)
    bounds = boxes.nth(0).bounding_box()
    page.mouse.click(bounds["x"] + bounds["width"] / 2, bounds["y"] + bounds["height"] / 2)
    page.keyboard.press("Delete")
    expect(boxes).to_have_count(1)
    expect(boxes.nth(0)).to_have_attribute("data-label", "car")
    task_id = page.locator("#task-id").inner_text()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text(f"Saved task {task_id}")
    expect(page.locator("#empty")).to_be_visible()
    value = single.export(format="json")[0]["annotations"][0]["result"]["value"]
    assert len(value) == 1 and value[0]["label"] == "car"
    for key, want in zip(("x", "y", "width", "height"), (800, 500, 400, 400), strict=True):
        assert value[0][key] == pytest.approx(want, abs=1), value
    frame = single.to_pandas(fetch_images=False)
    assert frame["objects"].iloc[0]["bbox"][0] == pytest.approx([800, 500, 400, 400], abs=1)
    assert (frame["width"].iloc[0], frame["height"].iloc[0]) == ORIGINAL

    expert = ok("POST", "/v1/annotators", json={"name": "Box expert", "role": "expert"})
    sign_in(expert["api_key"], "/ui/review")
    expect(page.locator("#distribution rect.vote-box")).to_have_count(3)
    expect(page.locator("#distribution .boxes-legend li")).to_have_count(2)
    expect(page.locator("#labels svg rect.box")).to_have_count(3)  # merged, pre-drawn
    if os.environ.get(SCREENSHOT_ENV):
        page.screenshot(path=str(DOCS_IMG / "widget-boxes-review.png"), full_page=True)
    expect(page.locator("#submit")).to_be_enabled()
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    record = disputed.export(format="json")[0]
    assert record["consensus"]["label_source"] == "expert"
    decided = record["annotations"][0]["result"]["value"]
    assert sorted(b["label"] for b in decided) == ["car", "dog", "person"]
    client.close()


def test_migration_adds_the_asset_size_to_an_existing_assets_table(tmp_path: Path) -> None:
    """A database made before 0010 whose ``assets`` table exists (made by ``create_all``)
    gains ``width``/``height``; its old rows keep null sizes."""
    import sqlalchemy as sa

    from cynaps_data.server.db import Database, upgrade

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(db.engine, "0008")
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE assets (project_id VARCHAR(40), sha256 VARCHAR(64), content_type"
                    " VARCHAR(40) NOT NULL, size BIGINT NOT NULL, created_at FLOAT NOT NULL,"
                    " PRIMARY KEY (project_id, sha256))"
                )
            )
            conn.execute(sa.text("INSERT INTO assets VALUES ('p', 'ab', 'image/png', 3, 1.0)"))
        upgrade(db.engine)
        with db.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT width, height FROM assets")).one()
        assert tuple(row) == (None, None)
    finally:
        db.engine.dispose()
