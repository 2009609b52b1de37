"""The seed's Quick Start end to end, the ledger, states, assignment and the consensus policy."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest

import cynaps_data as cynaps
from cynaps_data import errors
from cynaps_data.quickstart import run as run_quickstart

from .conftest import SEED_LABELS, Person, label_everything, make_project, started_project


def ledger(platform) -> sqlite3.Connection:
    return sqlite3.connect(platform.db.url.removeprefix("sqlite:///"))


def balance(conn: sqlite3.Connection, account: str) -> int:
    return conn.execute(
        "SELECT coalesce(sum(amount_cents), 0) FROM ledger_entries WHERE account = ?", (account,)
    ).fetchone()[0]


def numbered_tasks(n: int) -> list[dict]:
    return [{"data": {"i": i}, "external_id": f"t{i}"} for i in range(n)]


def test_seed_quick_start_prints_the_seed_lines(staffed_platform, capsys):
    client = cynaps.Client(
        api_key=staffed_platform.create_customer(), base_url=staffed_platform.base_url
    )
    records = run_quickstart(client, poll_interval=0.2)
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"✓ Project created: proj_\w+", out[0])
    assert out[1:4] == [
        "✓ Uploaded 3 tasks",
        "Security deposit required: 150.00 Credits",
        "✓ Project started!",
    ]
    # the seed shows 0% first; the sandbox workforce may already have finished a task by the
    # first poll on a slow machine, so the lines are checked for shape and order
    progress = [line for line in out if line.startswith("Progress:")]
    assert out[4] == progress[0]
    done = [int(re.fullmatch(r"Progress: (\d+)% \((\d)/3 tasks\)", p).group(2)) for p in progress]
    assert done == sorted(done) and progress[-1] == "Progress: 100% (3/3 tasks)"
    assert out[len(progress) + 4] == "✓ Downloaded 3 annotations"
    results = out[-3:]
    assert [line.split(":")[0] for line in results] == ["SKU001", "SKU002", "SKU003"]
    assert all(line.split(": ", 1)[1] in SEED_LABELS for line in results)
    assert all(r["annotations"][0]["result"]["value"] in SEED_LABELS for r in records)
    assert all(len([j for j in r["judgements"] if j["role"] == "annotator"]) >= 3 for r in records)


def test_ledger_balances_after_a_full_run(platform, client):
    project = started_project(client, numbered_tasks(4), payment_method="card")
    # team members: the session platform is shared, so pool members could pick up other
    # tests' tasks
    people = [Person(platform, name=f"A{i}", team_of=client) for i in range(3)]
    expert = Person(platform, "expert", "E", team_of=client)
    # tasks 0,1 unanimous; task 2 split 2-1 (0.67 >= 0.66: consensus); task 3 all different: expert
    picks = {
        0: ["Sports"] * 3,
        1: ["Other"] * 3,
        2: ["Sports", "Sports", "Other"],
        3: ["Sports", "Other", "Clothing"],
    }
    label_everything(people, project.id, lambda i, task: picks[task["data"]["i"]][i])
    assert project.get_status().state == "review"
    for action in (project.start, project.resume, project.calculate_deposit):
        with pytest.raises(errors.InvalidStateError, match="'review'"):
            action()
    review = expert.review()
    assert review["data"] == {"i": 3} and len(review["votes"]) == 3
    assert review["agreement"] == pytest.approx(1 / 3)
    assert expert.decide(review["task_id"], "Clothing").status_code == 201
    status = project.get_status()
    assert (status.state, status.is_complete, status.completed) == ("completed", True, 4)
    for action in (project.start, project.pause, project.resume, project.cancel):
        with pytest.raises(errors.InvalidStateError, match="'completed'"):
            action()

    conn = ledger(platform)
    me = client.me()["id"]
    deposit = 4 * (3 * 1500 + 500)
    charges = 4 * 3 * 1500 + 500  # 12 judgements and one expert decision
    assert conn.execute("SELECT sum(amount_cents) FROM ledger_entries").fetchone()[0] == 0
    assert balance(conn, f"deposit_hold:{project.id}") == 0  # refunded on completion
    assert balance(conn, f"escrow:{project.id}") == charges  # held until download
    # paid by (simulated) card, so the refunded deposit lands in the credit balance
    assert balance(conn, f"customer:{me}") == 1_000_000 + deposit - charges
    refunds = conn.execute(
        "SELECT count(*), sum(amount_cents) FROM ledger_entries WHERE kind='deposit_refund' AND project_id=? AND amount_cents > 0",
        (project.id,),
    ).fetchone()
    assert refunds == (1, deposit)

    records = project.export()
    assert [r["annotations"][0]["result"]["value"] for r in records] == [
        "Sports",
        "Other",
        "Sports",
        "Clothing",
    ]
    assert [r["consensus"]["label_source"] for r in records] == [
        "consensus",
        "consensus",
        "consensus",
        "expert",
    ]
    assert records[3]["consensus"]["vote_distribution"]["Clothing"] == pytest.approx(1 / 3)
    assert balance(conn, f"escrow:{project.id}") == 0
    earned = {
        row[0]: row[1]
        for row in conn.execute(
            "SELECT account, sum(amount_cents) FROM ledger_entries"
            " WHERE kind='release' AND amount_cents > 0 AND project_id = ? GROUP BY account",
            (project.id,),
        )
    }
    assert sorted(earned.values()) == [500, 4 * 1500, 4 * 1500, 4 * 1500]
    project.export()  # a second download releases nothing more
    assert (
        conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE kind='release' AND project_id=?",
            (project.id,),
        ).fetchone()[0]
        == 8
    )
    assert client.balance()["available_cents"] == 1_000_000 + deposit - charges
    derived = dict(
        conn.execute(
            "SELECT account, sum(amount_cents) FROM ledger_entries GROUP BY account"
        ).fetchall()
    )
    cached = dict(conn.execute("SELECT account, balance_cents FROM ledger_balances").fetchall())
    assert cached == derived  # the balance cache is exactly the sum of the entries


def test_no_double_judgement_no_overfill_and_expiry(platform, client):
    project = started_project(
        client,
        numbered_tasks(1),
        payment_method="card",
        quality_settings={"min_annotators": 2, "enable_expert_review": False},
    )
    a, b, c = (Person(platform, name=n) for n in "abc")
    task_a = a.next(project.id)
    assert a.next(project.id)["task_id"] == task_a["task_id"]  # same live assignment again
    task_b = b.next(project.id)
    assert task_b["task_id"] == task_a["task_id"]
    assert c.next(project.id) is None  # 2 live assignments cover the 2 judgements needed
    assert "gold" not in task_a and "votes" not in task_a
    assert a.submit(task_a["task_id"], "Sports").status_code == 201
    again = a.submit(task_a["task_id"], "Sports")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_assigned"
    assert a.next(project.id) is None  # never the same task twice
    bad = b.submit(task_b["task_id"], "Spaceships")
    assert (
        bad.status_code == 422
        and "not one of the project's labels" in bad.json()["error"]["message"]
    )
    assert b.submit(task_b["task_id"], "Sports").status_code == 201
    assert project.get_status().is_complete


def test_abandoned_assignment_expires(platform, client):
    project = started_project(
        client, numbered_tasks(1), payment_method="card", quality_settings={"min_annotators": 1}
    )
    a, b = Person(platform, name="slow"), Person(platform, name="quick")
    held = a.next(project.id)
    assert b.next(project.id) is None
    with ledger(platform) as conn:  # let a's assignment run out, as time would
        conn.execute(
            "UPDATE assignments SET expires_at = ? WHERE task_id = ?",
            (time.time() - 1, held["task_id"]),
        )
    assert b.next(project.id)["task_id"] == held["task_id"]
    assert a.submit(held["task_id"], "Other").status_code == 409


def test_without_expert_review_a_split_gets_more_annotators_then_majority(platform, client):
    project = started_project(
        client,
        numbered_tasks(1),
        payment_method="card",
        quality_settings={"min_annotators": 2, "max_annotators": 3, "enable_expert_review": False},
    )
    people = [Person(platform, name=f"p{i}") for i in range(3)]
    label_everything(people, project.id, lambda i, task: ["Sports", "Other", "Other"][i])
    record = project.export()[0]
    assert record["consensus"]["label_source"] == "consensus"  # 2/3 after the third annotator
    assert record["annotations"][0]["result"]["value"] == "Other"
    assert record["consensus"]["n_annotations"] == 3


def test_illegal_transitions_are_409_with_next_step(platform, client):
    draft = make_project(client)
    for action in (draft.start, draft.pause, draft.resume):
        with pytest.raises(errors.InvalidStateError, match="Next step"):
            action()
    with pytest.raises(errors.InvalidStateError, match="(?i)upload tasks"):
        draft.pay_deposit(payment_method="card")

    quoted = make_project(client)
    quoted.upload_tasks([{"x": 1}])
    quoted.calculate_deposit()
    assert quoted.get_status().state == "pending_deposit"
    with pytest.raises(errors.InvalidStateError, match="deposit is not paid"):
        quoted.start()
    quoted.pay_deposit(payment_method="card")
    with pytest.raises(errors.InvalidStateError, match="already paid"):
        quoted.pay_deposit(payment_method="card")
    with pytest.raises(errors.InvalidStateError, match="before the deposit is paid"):
        quoted.upload_tasks([{"x": 2}])
    for action in (quoted.pause, quoted.resume):
        with pytest.raises(errors.InvalidStateError):
            action()
    assert quoted.start().state == "active"
    for action in (quoted.start, quoted.resume, quoted.calculate_deposit):
        with pytest.raises(errors.InvalidStateError):
            action()
    assert quoted.pause().state == "paused"
    for action in (quoted.start, quoted.pause):
        with pytest.raises(errors.InvalidStateError):
            action()
    assert quoted.resume().state == "active"
    assert quoted.cancel().state == "cancelled"
    for action in (
        quoted.start,
        quoted.pause,
        quoted.resume,
        quoted.cancel,
        quoted.calculate_deposit,
    ):
        with pytest.raises(errors.InvalidStateError, match="cancelled"):
            action()


def test_paused_projects_hand_out_no_work_and_cancel_refunds(platform, client):
    project = started_project(client, numbered_tasks(2), payment_method="card")
    person = Person(platform, name="p")
    project.pause()
    assert person.next(project.id) is None
    project.resume()
    assert person.next(project.id) is not None
    before = client.balance()["available_cents"]
    project.cancel()
    assert client.balance()["available_cents"] == before + 2 * (3 * 1500 + 500)
    assert person.next(project.id) is None
    conn = ledger(platform)
    assert balance(conn, f"deposit_hold:{project.id}") == 0
