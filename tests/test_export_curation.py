"""Label Studio both ways, import with judgements (never billed), sending tasks back for more
judgements (billed once, paid once), annotator stats and agreement, plots."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from cynaps_data import errors

from .conftest import annotate, make_project, started_project
from .test_export import LABELS


def ledger(platform, project_id: str, kind: str) -> int:
    with sqlite3.connect(platform.db.url.removeprefix("sqlite:///")) as conn:
        return conn.execute(
            "SELECT coalesce(sum(amount_cents), 0) FROM ledger_entries"
            " WHERE kind = ? AND amount_cents > 0 AND project_id = ?",
            (kind, project_id),
        ).fetchone()[0]


def judgement_set(long: pd.DataFrame, wide: pd.DataFrame) -> set:
    key = {t: tuple(sorted(d.items())) for t, d in wide[["text", "n"]].to_dict("index").items()}
    return {(key[r.task], r.worker, str(r.label), str(r.role)) for r in long.itertuples()}


def test_label_studio_export_reimports_same_tasks_and_judgements(platform, client):
    project = started_project(client, [{"text": f"t{i}", "n": i} for i in range(3)], labels=LABELS)
    ids = list(project.to_pandas().index)
    annotate(
        platform,
        client,
        project,
        {ids[0]: ["cat"] * 3, ids[1]: ["dog", "dog", "bird"], ids[2]: ["cat", "dog", "bird"]},
    )
    records = project.export("label_studio")
    first = records[0]
    assert first["annotations"][0]["result"][0]["value"] == {"choices": ["cat"]}
    assert first["annotations"][0]["result"][0]["type"] == "choices"
    assert first["predictions"][0]["model_version"] == "cynaps-consensus"
    assert {"id", "data", "annotations", "predictions", "meta", "total_annotations"} <= set(first)

    copy = make_project(client, labels=LABELS)
    result = copy.import_label_studio(records)
    assert result["created"] == 3 and result["judgements"] == 9
    assert copy.import_label_studio(records)["duplicates"] == 3  # idempotent
    a, b = project.to_pandas(), copy.to_pandas()
    assert sorted(a[["text", "n"]].itertuples(index=False)) == sorted(
        b[["text", "n"]].itertuples(index=False)
    )
    assert judgement_set(project.to_pandas("long"), a) == judgement_set(copy.to_pandas("long"), b)
    assert b["label"].astype(str).tolist() == a["label"].astype(str).tolist()
    assert set(copy.to_pandas("long")["origin"].astype(str)) == {"imported"}
    # imported judgements are not platform work: nothing charged, nothing paid
    assert ledger(platform, copy.id, "task_charge") == 0
    copy.to_pandas()
    assert ledger(platform, copy.id, "release") == 0
    project.cancel()  # its disputed task would sit in the shared platform's pool review queue


def test_import_label_studio_own_format_and_bad_input(client):
    records = [
        {
            "id": 7,
            "data": {"text": "x"},
            "annotations": [
                {
                    "completed_by": 1,
                    "result": [{"type": "choices", "value": {"choices": ["dog"]}}],
                    "lead_time": 2.0,
                    "created_at": "2026-11-28T15:54:34.164660Z",
                },
                {
                    "completed_by": 2,
                    "result": [{"type": "choices", "value": {"choices": ["dog"]}}],
                    "was_cancelled": True,
                },
                {
                    "completed_by": 3,
                    "result": [{"type": "choices", "value": {"choices": ["cat"]}}],
                    "ground_truth": True,
                },
            ],
        },
    ]
    project = make_project(client, labels=LABELS)
    assert project.import_label_studio(records)["judgements"] == 2
    wide = project.to_pandas()
    assert wide["label"].iloc[0] == "cat" and wide["label_source"].iloc[0] == "expert"
    assert wide["external_id"].iloc[0] == "7"
    long = project.to_pandas("long")
    assert long["created_at"].iloc[0] == pd.Timestamp("2026-11-28T15:54:34.164660Z")
    bad = [
        {
            "id": 1,
            "data": {"t": 1},
            "annotations": [
                {"completed_by": 1, "result": [{"type": "choices", "value": {"choices": ["fish"]}}]}
            ],
        }
    ]
    with pytest.raises(errors.ValidationError, match=r"tasks\[0\].judgements\[0\].label"):
        project.import_label_studio(bad)
    assert project.refresh().task_count == 1  # nothing half-written


def test_request_more_judgements_bills_extra_once(platform, client):
    project = started_project(client, [{"text": f"t{i}"} for i in range(2)], labels=LABELS)
    ids = list(project.to_pandas().index)
    answers = {ids[0]: ["cat", "cat", "dog", "cat"], ids[1]: ["dog", "dog", "dog", "bird"]}
    keys_plan = {t: v[:3] for t, v in answers.items()}
    annotate(platform, client, project, keys_plan)
    assert project.get_status().state == "completed"
    project.to_pandas()  # download: annotators paid for 6 judgements
    assert ledger(platform, project.id, "release") == 6 * 1500
    charged = ledger(platform, project.id, "task_charge")
    assert charged == 6 * 1500

    out = project.request_more_judgements([ids[0]], n=1)
    assert out["reopened"] == 1 and out["project_state"] == "active"
    wide = project.to_pandas()
    assert wide.loc[ids[0], "status"] == "pending" and pd.isna(wide.loc[ids[0], "label"])
    assert wide.loc[ids[1], "status"] == "completed"
    # a fourth, new annotator gives the extra judgement
    annotate(platform, client, project, {ids[0]: ["cat"]})
    assert project.get_status().state == "completed"
    wide = project.to_pandas()
    assert wide.loc[ids[0], "n_annotations"] == 4 and wide.loc[ids[0], "label"] == "cat"
    assert ledger(platform, project.id, "task_charge") == 7 * 1500  # the extra one, once
    assert ledger(platform, project.id, "release") == 7 * 1500  # each judgement paid once

    with pytest.raises(errors.NotFoundError):
        project.request_more_judgements([10**9])
    with pytest.raises(errors.ValidationError, match="n must"):
        project.request_more_judgements([ids[0]], n=0)
    draft = make_project(client, labels=LABELS)
    with pytest.raises(errors.InvalidStateError):
        draft.request_more_judgements([1])


def test_annotator_stats_agreement_and_plots(platform, client):
    import matplotlib

    matplotlib.use("Agg")
    from cynaps_data import plots

    project = started_project(
        client,
        [{"text": f"t{i}"} for i in range(6)],
        labels=LABELS,
        quality_settings={"min_annotators": 3, "enable_expert_review": False},
    )
    ids = list(project.to_pandas().index)
    plan = {t: ["cat", "cat", "dog"] if i % 2 else ["dog", "dog", "dog"] for i, t in enumerate(ids)}
    annotate(platform, client, project, plan)
    stats = project.annotator_stats()
    assert len(stats) == 3
    agreement = project.agreement()
    assert {"fleiss_kappa", "krippendorff_alpha", "percent_agreement", "per_label"} <= set(
        agreement
    )
    per_label = agreement["per_label"]
    assert per_label.loc["dog", "n_votes"] == 12 and per_label.loc["bird", "n_votes"] == 0
    df = project.to_pandas(method="majority_vote")
    for ax in (
        plots.agreement_histogram(df),
        plots.label_distribution(df),
        plots.annotator_quality(stats),
        plots.confusion_matrix(df, "majority_vote_label"),
    ):
        assert ax.figure is not None
