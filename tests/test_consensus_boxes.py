"""Box consensus maths (issue 15): IoU, per-task merge, agreement, aggregators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cynaps_data.consensus.boxes import (
    box_agreement,
    cluster_boxes,
    group_median,
    iou_matrix,
    match_boxes,
    merge_task,
)
from cynaps_data.errors import ValidationError


def box(x, y, w, h, label="a"):
    return {"x": x, "y": y, "width": w, "height": h, "label": label}


def test_iou_matrix_hand_worked():
    a = np.array([[0, 0, 10, 10], [5, 5, 10, 10]])
    b = np.array([[0, 0, 10, 10], [0, 0, 0, 0], [20, 20, 1, 1], [5, 0, 10, 10]])
    m = iou_matrix(a, b)
    assert m.shape == (2, 4)
    # [5,5,10,10] vs [0,0,10,10]: overlap 5x5 = 25, union 100 + 100 - 25 = 175
    assert m[1, 0] == pytest.approx(25 / 175)
    assert m[0, 0] == 1.0 and m[0, 1] == 0.0 and m[0, 2] == 0.0
    # [0,0,10,10] vs [5,0,10,10]: overlap 5x10 = 50, union 150
    assert m[0, 3] == pytest.approx(50 / 150)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)


def test_match_boxes_greedy_one_to_one():
    a = np.array([[0, 0, 10, 10], [1, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10]])
    ia, ib, v = match_boxes(a, b)
    assert ia.tolist() == [0] and ib.tolist() == [0] and v.tolist() == [1.0]
    ia, _, _ = match_boxes(a, b, labels_a=["x", "a"], labels_b=["a"])
    assert ia.tolist() == [1]


def test_merge_task_hand_worked():
    votes = [
        [box(0, 0, 10, 10), box(50, 50, 10, 10)],
        [box(1, 1, 10, 10)],
        [box(0, 1, 10, 9, "b")],
        [],
    ]
    boxes, agreement = merge_task(votes)
    # one cluster of 3 annotators out of 4 (the empty answer counts): support 0.75;
    # median edges: x1 med(0,1,0)=0, y1 med(0,1,1)=1, x2 med(10,11,10)=10, y2 med(10,11,10)=10
    assert boxes == [
        {"x": 0.0, "y": 1.0, "width": 10.0, "height": 9.0, "label": "a", "support": 0.75}
    ]
    # pairs: (0,1) F1 = 2*1/(2+1) with IoU 81/119; every other pair 0 (label b, or empty)
    assert agreement["f1"] == pytest.approx((2 / 3) / 6)
    assert agreement["mean_iou"] == pytest.approx(81 / 119)


def test_merge_task_support_threshold_and_even_median():
    votes = [[box(0, 0, 10, 10)], [box(2, 0, 10, 10)], [], []]
    boxes, _ = merge_task(votes, min_support=0.5)
    assert len(boxes) == 1 and boxes[0]["x"] == 1.0 and boxes[0]["support"] == 0.5
    assert merge_task(votes, min_support=0.51)[0] == []


def test_merge_task_empty_answers():
    assert merge_task([[], []]) == ([], {"f1": 1.0, "mean_iou": 1.0})
    assert merge_task([]) == ([], {"f1": 1.0, "mean_iou": 1.0})
    assert merge_task([[box(0, 0, 5, 5)]]) == (
        [{"x": 0.0, "y": 0.0, "width": 5.0, "height": 5.0, "label": "a", "support": 1.0}],
        {"f1": 1.0, "mean_iou": 1.0},
    )
    # one annotator drew, one did not: no pair matched
    assert box_agreement([[box(0, 0, 5, 5)], []]) == {"f1": 0.0, "mean_iou": 0.0}


def test_merge_task_deterministic_under_reordering():
    rng = np.random.default_rng(3)
    votes = []
    for _ in range(7):
        n = int(rng.integers(0, 4))
        votes.append(
            [
                box(
                    *(rng.uniform(0, 50, 2).tolist() + rng.uniform(5, 30, 2).tolist()),
                    label=str(rng.integers(0, 2)),
                )
                for _ in range(n)
            ]
        )
    ref = merge_task(votes, min_support=0.3)
    for seed in range(5):
        r = np.random.default_rng(seed)
        shuffled = [list(v) for v in votes]
        for v in shuffled:
            r.shuffle(v)
        order = r.permutation(len(shuffled))
        got = merge_task([shuffled[i] for i in order], min_support=0.3)
        assert got[0] == ref[0]
        assert got[1] == pytest.approx(ref[1])


@pytest.mark.parametrize(
    "votes, param",
    [
        ([[box(0, 0, -1, 5)]], "votes[0][0].width"),
        ([[], [box(0, float("nan"), 1, 5)]], "votes[1][0].y"),
        ([[{"x": 0, "y": 0, "width": 1}]], "votes[0][0].height"),
        ([["box"]], "votes[0][0]"),
        ("boxes", "votes"),
    ],
)
def test_merge_task_bad_input_names_the_item(votes, param):
    with pytest.raises(ValidationError) as e:
        merge_task(votes)
    assert e.value.param == param and param in str(e.value)


def test_cluster_boxes_one_box_per_annotator_and_groups():
    e = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    worker = np.array([0, 0, 1, 2, 0])
    group = np.array([0, 0, 0, 0, 1])
    cl = cluster_boxes(group, worker, e)
    # group 0: worker 0's two identical boxes must go to different clusters
    assert cl[0] != cl[1]
    assert len({cl[0], cl[1], cl[2], cl[3]}) == 2
    assert cl[4] not in {cl[0], cl[1], cl[2], cl[3]}
    assert sorted(np.bincount(cl).tolist()) == [1, 1, 3]


def test_group_median():
    v = np.array([[1.0], [3.0], [2.0], [10.0], [20.0]])
    assert group_median(v, np.array([0, 0, 0, 1, 1]), 2)[:, 0].tolist() == [2.0, 15.0]


# ---- aggregators across tasks ----------------------------------------------------------------

import pandas as pd  # noqa: E402

from cynaps_data.consensus.boxes_model import (  # noqa: E402
    BOX_METHODS,
    DEFAULT_BOX_METHOD,
    BoxMatching,
    BoxReliability,
)

COLS = ["task", "worker", "x", "y", "width", "height", "label"]
OUT = ["task", "x", "y", "width", "height", "label", "support", "confidence"]


def frame_from(tasks: dict) -> pd.DataFrame:
    """{task: [votes per worker]} -> long frame; an empty vote is one null row."""
    rows = []
    for t, votes in tasks.items():
        for w, boxes in enumerate(votes):
            if not boxes:
                rows.append((t, f"w{w}", None, None, None, None, None))
            for b in boxes:
                rows.append((t, f"w{w}", b["x"], b["y"], b["width"], b["height"], b["label"]))
    return pd.DataFrame(rows, columns=COLS)


HAND = {
    "t1": [
        [box(0, 0, 10, 10), box(50, 50, 10, 10)],
        [box(1, 1, 10, 10)],
        [box(0, 1, 10, 9, "b")],
        [],
    ],
    "t2": [[], [], [box(5, 5, 5, 5)], []],
}


def test_box_matching_agrees_with_merge_task():
    df = frame_from(HAND)
    got = BoxMatching(per_class=False).fit(df)
    assert list(got.boxes_.columns) == OUT
    assert got.boxes_["task"].tolist() == ["t1"]
    row = got.boxes_.iloc[0]
    ref = merge_task(HAND["t1"])[0][0]
    for k in ("x", "y", "width", "height", "label", "support"):
        assert row[k] == ref[k]
    for c in ("x", "y", "width", "height", "support", "confidence"):
        assert got.boxes_[c].dtype == np.float64
    # per class (BASELINE.md): the 'b' box is its own cluster, so the 'a' cluster has 2 of 4
    per = BoxMatching().fit(df).boxes_
    assert per["support"].tolist() == [0.5] and per["x"].tolist() == [0.5]
    stats = got.worker_stats_
    assert stats.loc["w0", "n_tasks"] == 2 and stats.loc["w0", "n_boxes"] == 2
    # w0 drew the kept object (miss 0) and one box outside it (1 false box over 2 tasks)
    assert stats.loc["w0", "miss_rate"] == 0.0 and stats.loc["w0", "false_box_rate"] == 0.5
    assert stats.loc["w3", "miss_rate"] == 1.0 and stats.loc["w3", "false_box_rate"] == 0.0


def test_aggregators_all_empty_answers_and_determinism():
    df = frame_from({"a": [[], []], "b": [[]]})
    for cls in (BoxMatching, BoxReliability):
        out = cls().fit_predict(df)
        assert len(out) == 0 and list(out.columns) == OUT
    crowd = frame_from(
        {
            t: [
                [box(10 + w, 10, 30, 30), box(100, 100 + w, 20, 20, "b")] if w != 2 else []
                for w in range(5)
            ]
            for t in range(6)
        }
    )
    ref = BoxReliability().fit_predict(crowd)
    assert len(ref) == 12
    shuffled = crowd.sample(frac=1.0, random_state=1).reset_index(drop=True)
    got = BoxReliability().fit_predict(shuffled)
    # rows follow the tasks' first appearance; within a task the order is by content

    def canon(d):
        return d.sort_values(["task", "y", "x"], kind="stable").reset_index(drop=True)

    pd.testing.assert_frame_equal(canon(got), canon(ref))
    pd.testing.assert_frame_equal(
        BoxMatching().fit(shuffled).worker_stats_, BoxMatching().fit(crowd).worker_stats_
    )


@pytest.mark.parametrize(
    "change, param",
    [
        (lambda d: d.drop(columns="height"), "height"),
        (lambda d: d.assign(width=[-1.0] + d["width"].tolist()[1:]), "width"),
        (lambda d: d.assign(y=[np.nan] + d["y"].tolist()[1:]), "y"),
        (lambda d: d.assign(x=["left"] + d["x"].tolist()[1:]), "x"),
        (lambda d: d.assign(x=[np.inf] + d["x"].tolist()[1:]), "x"),
        (lambda d: d.assign(task=[None] + d["task"].tolist()[1:]), "task"),
    ],
)
def test_aggregators_bad_input_name_the_column(change, param):
    df = change(frame_from(HAND))
    for cls in (BoxMatching, BoxReliability):
        with pytest.raises(ValidationError) as e:
            cls().fit(df)
        assert e.value.param == param and repr(param) in str(e.value)
    with pytest.raises(ValidationError):
        BoxReliability(iou=2.0).fit(frame_from(HAND))
    with pytest.raises(ValidationError):
        BoxReliability().set_params(alpha=1)


def test_reliability_beats_matching_on_a_synthetic_crowd():
    from benchmarks.types_boxes import score, synthetic_crowd

    df, truth, workers = synthetic_crowd(n_images=300, seed=7)
    tasks = np.arange(300)
    base = score(BoxMatching().fit_predict(df), truth, tasks)
    model = BoxReliability().fit(df)
    ours = score(model.boxes_, truth, tasks)
    assert ours["f1_75"] > base["f1_75"] + 0.03
    assert ours["mean_iou"] > base["mean_iou"]
    assert DEFAULT_BOX_METHOD == "reliability" and BOX_METHODS["matching"] is BoxMatching
    # the worker estimates track the simulated worker parameters
    st = model.worker_stats_.join(workers)
    assert st["miss_rate"].corr(st["miss"]) > 0.6
    assert st["loc_noise"].corr(st["jitter"]) > 0.6
    assert st["false_box_rate"].corr(st["false"]) > 0.6


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbox"


@pytest.mark.skipif(not SHARED.exists(), reason="../shared not available")
def test_real_data_smoke():
    from benchmarks.types_boxes import load_real

    df = load_real()
    base = BoxMatching().fit_predict(df)
    # BASELINE.md: 24 consensus boxes over the 50 images with >= 2 annotators
    assert len(base) == 24 and df["task"].nunique() == 50
    ours = BoxReliability().fit(df)
    assert len(ours.boxes_) >= len(base)
    assert ours.boxes_["confidence"].between(0.5, 1.0).all()
    assert set(ours.boxes_["label"]) <= {"Sugar", "Flower", "Fish", "Gravel"}


def test_merge_task_prefers_the_seed_label():
    # each annotator drew an 'a' and a 'b' box over nearly the same place; by IoU alone the
    # 'a' box of one would pair with the 'b' box of the other and both clusters would vote 'a'
    votes = [
        [box(0, 0, 10, 10, "a"), box(2, 0, 10, 10, "b")],
        [box(2, 0, 10, 10, "a"), box(0, 0, 10, 10, "b")],
    ]
    boxes, agreement = merge_task(votes)
    assert sorted(b["label"] for b in boxes) == ["a", "b"]
    assert all(b["support"] == 1.0 and b["x"] == 1.0 for b in boxes)
    # agreement matches same-label boxes: IoU of (0,0,10,10) and (2,0,10,10) = 80 / 120
    assert agreement == pytest.approx({"f1": 1.0, "mean_iou": 80 / 120})
