"""Box consensus maths (issue 15): IoU, per-task merge, agreement, aggregators."""

from __future__ import annotations

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
