"""Money when a disputed task escalates without expert review (issue 12, follow-up): each extra
annotator past what the deposit covers is reserved from the customer's balance when the task is
escalated, or, if the balance cannot cover it, the task is finalised with the plurality label.
Both databases, over real HTTP."""

from __future__ import annotations

from collections import defaultdict

import requests
import sqlalchemy as sa

from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.tables import ledger_entries, tasks

PRICE = 1500  # a classification judgement, cents


def _api(base: str, key: str):
    def call(method: str, path: str, **kwargs):
        response = requests.request(
            method, base + path, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kwargs
        )
        assert response.status_code < 500, response.text
        return response

    return call


def _project(call, n_tasks: int, min_annotators: int, labels: list[str], start: bool) -> str:
    pid = call(
        "POST",
        "/v1/projects",
        json={
            "name": "escalation",
            "labels": labels,
            "quality_settings": {
                "min_annotators": min_annotators,
                "enable_expert_review": False,
                "consensus_threshold": 0.66,
            },
        },
    ).json()["id"]
    batch = {"tasks": [{"data": {"i": i}} for i in range(n_tasks)]}
    assert call("POST", f"/v1/projects/{pid}/tasks/batch", json=batch).status_code == 201
    paid = call("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    assert paid.status_code == 200, paid.text
    if start:
        assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    return pid


def _ledger(platform: LocalPlatform) -> tuple[dict[str, int], list[str]]:
    """Every account's balance and the transactions that do not sum to zero."""
    balances: dict[str, int] = defaultdict(int)
    per_txn: dict[str, int] = defaultdict(int)
    with platform.db.read() as conn:
        for account, txn, cents in conn.execute(
            sa.select(
                ledger_entries.c.account, ledger_entries.c.txn_id, ledger_entries.c.amount_cents
            )
        ):
            balances[account] += cents
            per_txn[txn] += cents
    return balances, [t for t, total in per_txn.items() if total]


def _check(
    platform: LocalPlatform, account: str, start: int, pids: list[str], team: list[str] = ()
) -> int:
    """Assert the customer's balance is >= 0 and its money is conserved; return the balance."""
    balances, unbalanced = _ledger(platform)
    assert not unbalanced, f"transactions {unbalanced} do not sum to zero"
    customer = balances[f"customer:{account}"]
    assert customer >= 0, f"available balance went negative: {customer}"
    held = sum(balances[f"{kind}:{p}"] for p in pids for kind in ("deposit_hold", "escrow"))
    earned = sum(balances[f"earnings:{member}"] for member in team)
    assert customer + held + earned == start, "the customer's money is not conserved"
    for name, cents in balances.items():
        if not name.startswith(("customer:", "external")):
            assert cents >= 0, f"{name} is negative: {cents}"
    return customer


def test_escalation_without_expert_review_never_drives_the_balance_negative(
    backend_platform: LocalPlatform,
) -> None:
    """Failed before the fix: the deposit covered ``min_annotators`` judgements, a disputed task
    got a third annotator anyway, and charging it left the customer at a negative balance."""
    base = backend_platform.base_url
    call = _api(base, backend_platform.create_customer())
    account = call("GET", "/v1/me").json()["id"]
    start = backend_platform.settings.starting_credits_cents
    team = [
        _api(base, call("POST", "/v1/annotators", json={"name": f"m{i}"}).json()["api_key"])
        for i in range(3)
    ]
    team_ids = [member("GET", "/v1/me").json()["id"] for member in team]
    pid = _project(call, 1, 2, ["a", "b", "c"], start=True)  # deposit: 2 judgements
    # spend the balance on another deposit so that one more judgement (15.00) is covered, not two
    available = call("GET", "/v1/billing/balance").json()["available_cents"]
    other = _project(call, (available - PRICE) // PRICE, 1, ["a", "b"], start=False)
    pids = [pid, other]
    check = lambda: _check(backend_platform, account, start, pids, team_ids)  # noqa: E731
    left = check()
    assert PRICE <= left < 2 * PRICE
    hold_before = _ledger(backend_platform)[0][f"deposit_hold:{pid}"]

    def vote(member, label: str) -> dict:
        got = member("GET", f"/v1/annotator/next?project_id={pid}")
        assert got.status_code == 200, got.text
        task_id = got.json()["task_id"]
        done = member("POST", f"/v1/annotator/tasks/{task_id}/judgements", json={"label": label})
        assert done.status_code == 201, done.text
        check()
        with backend_platform.db.read() as conn:
            return conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).one()._asdict()

    vote(team[0], "a")
    task = vote(team[1], "b")  # 1/2 agree: disputed, escalated to a third annotator
    assert task["status"] == "pending" and task["needed"] == 3
    # the third judgement is reserved from the balance into the deposit hold, now
    balances = _ledger(backend_platform)[0]
    assert balances[f"customer:{account}"] == left - PRICE
    assert balances[f"deposit_hold:{pid}"] == hold_before + PRICE
    task = vote(team[2], "c")  # 1/3: disputed again, but the balance cannot pay a fourth
    assert task["status"] == "completed" and task["needed"] == 3
    assert task["label_source"] == "majority" and task["final_label"] == '"a"'
    assert call("GET", f"/v1/projects/{pid}").json()["state"] == "completed"
    # three judgements charged; the hold (deposit + reservation) spent on them, nothing stranded
    balances = _ledger(backend_platform)[0]
    assert balances[f"escrow:{pid}"] == 3 * PRICE
    assert balances[f"deposit_hold:{pid}"] == 0
    assert check() == left - PRICE
    assert call("GET", f"/v1/projects/{pid}/export").status_code == 200
    check()
    # cancelling the other project refunds its whole deposit
    assert call("POST", f"/v1/projects/{other}/cancel").status_code == 200
    assert check() == start - 3 * PRICE
