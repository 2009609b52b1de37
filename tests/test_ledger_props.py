"""Ledger invariants over random programs: a Hypothesis ``RuleBasedStateMachine``.

Each program is a fresh customer with a team (annotators and an expert, who see only this
customer's projects) driving the platform's own endpoint and service functions (the code
the HTTP routes call, minus the HTTP plumbing other tests cover; real SQLite file) through random
sequences of: top-up, create + upload, launch (create, pay from the balance and start; fixed or
adaptive overlap, issue 18), quote, pay (credits, a simulated method, or a declining
one), start, pause/resume, annotators labelling (agreeing or not, or all disputing at once so
tasks escalate without expert review), expert review, reopen (tasks
sent back for more judgements), download, and cancel. After every step the invariants are checked on the stored ledger:

- every transaction sums to zero, so the ledger total is zero (money is conserved);
- the customer's money is conserved: balance + deposit holds + escrow + team earnings equals
  starting credits plus successful outside payments; declined payments move nothing;
- no deposit hold, escrow or earnings account is ever negative;
- a deposit is refunded at most once, and entirely once the project is completed/cancelled;
- available >= 0: the customer's balance never goes negative, whatever the sequence (reopen
  and escalation of disputed tasks without expert review included) and project configuration;
- escrow is empty once a project is cancelled (terminal): billed work paid, the rest returned;
- escrow is released to annotators at most what was charged, and only on download;
- a refused request (402, 409, 422) changes nothing.

CI runs ``LEDGER_PROGRAMS`` programs (default 300, about a minute on an idle core); set ``CYNAPS_LEDGER_PROGRAMS`` for more.
"""

from __future__ import annotations

import os
from collections import defaultdict

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cynaps_data.server.db import Database, database_url
from cynaps_data.server.problems import Problem
from cynaps_data.server.routers import billing as billing_routes
from cynaps_data.server.routers import projects as project_routes
from cynaps_data.server.services import assignment, curation, judgements, review
from cynaps_data.server.services import billing as billing_service
from cynaps_data.server.services import exports as export_service
from cynaps_data.server.services import projects as project_service
from cynaps_data.server.services import tasks as task_service
from cynaps_data.server.services.accounts import authenticate, create_account
from cynaps_data.server.tables import ledger_entries, payments, projects, tasks

LEDGER_PROGRAMS = int(os.environ.get("CYNAPS_LEDGER_PROGRAMS", "300"))
LABELS = ["cat", "dog", "bird"]
STARTING = 6_000  # 60.00 Credits: small, so two deposits drain the balance


TTL = 600.0


@pytest.fixture(scope="module")
def ledger_db(tmp_path_factory):
    db = Database(database_url(tmp_path_factory.mktemp("ledger") / "ledger.db"))
    db.create_all()
    yield db
    db.dispose()


class Response:
    """What an endpoint answered: ``status`` and the JSON-like ``body`` (or error body)."""

    def __init__(self, status: int, body) -> None:
        self.status_code = status
        self.body = body
        self.text = repr(body)

    def json(self):
        return self.body


def download_results(db: Database, owner_id: str, project_id: str) -> list[dict]:
    """What ``GET /v1/projects/{id}/export`` does: the records, then the escrow release."""
    records = export_service.json_records(db, owner_id, project_id)
    billing_service.release_on_download(db, owner_id, project_id)
    return records


def call(fn, *args, ok: int = 200, **kwargs) -> Response:
    """Run one endpoint/service function; a ``Problem`` becomes its HTTP status and body."""
    try:
        return Response(ok, fn(*args, **kwargs))
    except Problem as problem:
        return Response(problem.status, problem.body())


class LedgerMachine(RuleBasedStateMachine):
    """One program: a customer and its team against the shared app."""

    db: Database

    def __init__(self) -> None:
        super().__init__()
        self.projects: list[dict] = []  # {"id", "expert", "paid", "state"}
        self.outside = 0  # successful outside payments, cents
        self._checked: tuple | None = None

    @initialize()
    def open_account(self) -> None:
        account, key = create_account(
            self.db, role="customer", name="prop", starting_credits_cents=STARTING
        )
        self.account = account["id"]
        self.me = authenticate(self.db, f"Bearer {key}")
        self.annotators = [self._member("annotator") for _ in range(4)]
        self.expert = self._member("expert")

    def _member(self, role: str) -> dict:
        """A member of this customer's team (what POST /v1/annotators makes)."""
        _, key = create_account(self.db, role=role, name=role, owner_id=self.account)
        return authenticate(self.db, f"Bearer {key}")

    # -- helpers -------------------------------------------------------------------------
    def _snapshot(self) -> tuple:
        """(ledger entries touching this customer, its balance, its projects' states)."""
        with self.db.read() as conn:
            n = conn.execute(
                sa.select(sa.func.count())
                .select_from(ledger_entries)
                .where(ledger_entries.c.account == f"customer:{self.account}")
            ).scalar_one()
            states = conn.execute(
                sa.select(projects.c.state)
                .where(projects.c.owner_id == self.account)
                .order_by(projects.c.id)
            ).scalars()
            return (n, self._ledger_balance(conn), tuple(states))

    def _ledger_balance(self, conn) -> int:
        return int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(ledger_entries.c.amount_cents), 0)).where(
                    ledger_entries.c.account == f"customer:{self.account}"
                )
            ).scalar_one()
        )

    def _balance(self) -> int:
        with self.db.read() as conn:
            return billing_service.balances(conn, self.account)["available_cents"]

    def _refused(self, response, *statuses: int) -> bool:
        assert response.status_code < 500, response.text
        if response.status_code in statuses:
            body = response.json()["error"]
            assert body["message"] and body["code"]
            return True
        return False

    def _states(self, conn) -> dict[str, str]:
        return dict(
            conn.execute(
                sa.select(projects.c.id, projects.c.state).where(
                    projects.c.owner_id == self.account
                )
            ).all()
        )

    # -- rules ---------------------------------------------------------------------------
    @rule(
        cents=st.integers(min_value=1, max_value=200_000),
        method=st.sampled_from(["card", "upi", "test_decline"]),
    )
    def top_up(self, cents: int, method: str) -> None:
        before = self._snapshot()
        body = {"amount": cents / 100, "payment_method": method}
        r = call(billing_routes.topup, self.db, self.me, body, ok=201)
        if method == "test_decline":
            assert r.status_code == 402 and r.json()["error"]["code"] == "payment_declined"
            assert self._snapshot() == before
        else:
            assert r.status_code == 201, r.text
            self.outside += cents

    @precondition(lambda self: len(self.projects) < 3)
    @rule(
        n=st.integers(min_value=1, max_value=4),
        min_annotators=st.integers(min_value=1, max_value=3),
        expert=st.booleans(),
        adaptive=st.booleans(),
    )
    def create_and_upload(
        self, n: int, min_annotators: int, expert: bool, adaptive: bool = False
    ) -> None:
        # adaptive overlap (issue 18): the deposit covers max_annotators, no escalation reserve
        mode = {"mode": "adaptive", "max_annotators": 3} if adaptive else {}
        r = call(
            project_routes.create_project,
            self.db,
            self.me,
            {
                "name": "p",
                "labels": LABELS,
                "quality_settings": {
                    "min_annotators": min_annotators,
                    "enable_expert_review": expert,
                    "consensus_threshold": 0.6,
                    **mode,
                },
            },
            ok=201,
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        tasks = [{"data": {"i": i}, "external_id": f"t{i}"} for i in range(n)]
        raw = orjson.dumps({"tasks": tasks})
        up = call(task_service.upload, self.db, self.account, pid, raw, 1000, ok=201)
        assert up.status_code == 201 and up.json()["created"] == n, up.text
        self.projects.append({"id": pid, "expert": expert, "paid": False, "state": "draft"})

    @precondition(lambda self: len(self.projects) < 3)
    @rule(
        min_annotators=st.integers(min_value=2, max_value=3),
        expert=st.booleans(),
        adaptive=st.booleans(),
    )
    def launch(self, min_annotators: int, expert: bool, adaptive: bool) -> None:
        """Create a one-task project, pay its deposit from the balance and start it (one step,
        so short programs reach escalations with the balance nearly spent)."""
        self.create_and_upload(1, min_annotators, expert, adaptive)
        project = self.projects[-1]
        before = self._snapshot()
        r = call(
            billing_routes.pay_deposit,
            self.db,
            self.me,
            project["id"],
            {"payment_method": "credits"},
        )
        if self._refused(r, 402):
            assert self._snapshot() == before, r.text
            return
        assert r.status_code == 200, r.text
        project["paid"] = True
        r = call(project_service.transition, self.db, self.account, project["id"], "start")
        assert r.status_code == 200, r.text

    @precondition(lambda self: self.projects)
    @rule(data=st.data())
    def quote(self, data) -> None:
        project = data.draw(st.sampled_from(self.projects))
        before = self._snapshot()
        r = call(billing_routes.quote_deposit, self.db, self.me, project["id"])
        if not self._refused(r, 409):
            assert r.status_code == 200 and r.json()["amount_cents"] > 0
        assert self._snapshot()[:2] == before[:2]  # quoting moves no money

    @precondition(lambda self: self.projects)
    @rule(data=st.data(), method=st.sampled_from(["credits", "card", "razorpay", "test_decline"]))
    def pay(self, data, method: str) -> None:
        project = data.draw(st.sampled_from(self.projects))
        before = self._snapshot()
        balance = before[1]
        body = {"payment_method": method}
        r = call(billing_routes.pay_deposit, self.db, self.me, project["id"], body)
        if self._refused(r, 402, 409):
            assert self._snapshot() == before, r.text
            if r.status_code == 402 and method == "credits":
                assert r.json()["error"]["code"] == "insufficient_credits"
            return
        assert r.status_code == 200, r.text
        assert method != "test_decline"
        amount = r.json()["amount_cents"]
        project["paid"] = True
        if method == "credits":
            assert amount <= balance and self._snapshot()[1] == balance - amount
        else:
            self.outside += amount
            assert self._snapshot()[1] == balance

    @precondition(lambda self: self.projects)
    @rule(data=st.data(), action=st.sampled_from(["start", "pause", "resume", "cancel"]))
    def transition(self, data, action: str) -> None:
        project = data.draw(st.sampled_from(self.projects))
        before = self._snapshot()
        r = call(project_service.transition, self.db, self.account, project["id"], action)
        if self._refused(r, 409):
            assert self._snapshot() == before, r.text
            return
        assert r.status_code == 200, r.text

    @precondition(lambda self: self.projects)
    @rule(who=st.integers(min_value=0, max_value=2), label=st.sampled_from(LABELS))
    def annotate(self, who: int, label: str) -> None:
        annotator = self.annotators[who]
        r = call(assignment.next_task, self.db, annotator, TTL)
        assert r.status_code == 200, r.text
        if r.body is None:  # 204: nothing to do
            return
        s = call(judgements.submit, self.db, annotator, r.body["task_id"], {"label": label}, ok=201)
        assert s.status_code in (201, 409), s.text

    @precondition(lambda self: self.projects)
    @rule(first=st.integers(min_value=0, max_value=2))
    def dispute(self, first: int) -> None:
        """Every annotator answers its next task with a different label than the one before, so
        tasks are disputed and, without expert review, escalated in one step."""
        for i, annotator in enumerate(self.annotators):
            r = call(assignment.next_task, self.db, annotator, TTL)
            assert r.status_code == 200, r.text
            if r.body is None:
                continue
            body = {"label": LABELS[(first + i) % len(LABELS)]}
            s = call(judgements.submit, self.db, annotator, r.body["task_id"], body, ok=201)
            assert s.status_code in (201, 409), s.text

    @precondition(lambda self: self.projects)
    @rule(label=st.sampled_from(LABELS))
    def review(self, label: str) -> None:
        r = call(review.next_review, self.db, self.expert, TTL)
        assert r.status_code == 200, r.text
        if r.body is not None:
            body = {"label": label}
            d = call(review.decide_review, self.db, self.expert, r.body["task_id"], body, ok=201)
            assert d.status_code in (201, 409), d.text

    @precondition(lambda self: self.projects)
    @rule(data=st.data(), n=st.integers(min_value=1, max_value=2))
    def reopen(self, data, n: int) -> None:
        """Send some of a project's tasks back for more judgements (issue 12)."""
        project = data.draw(st.sampled_from(self.projects))
        with self.db.read() as conn:
            ids = (
                conn.execute(
                    sa.select(tasks.c.id)
                    .where(tasks.c.project_id == project["id"])
                    .order_by(tasks.c.id)
                )
                .scalars()
                .all()
            )
        chosen = data.draw(
            st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids), unique=True)
        )
        before = self._snapshot()
        body = {"task_ids": chosen, "n": n}
        r = call(curation.reopen, self.db, self.account, project["id"], body)
        if self._refused(r, 402, 409, 422):
            assert self._snapshot() == before, r.text
            return
        assert r.status_code == 200, r.text

    @precondition(lambda self: self.projects)
    @rule(data=st.data())
    def download(self, data) -> None:
        project = data.draw(st.sampled_from(self.projects))
        r = call(download_results, self.db, self.account, project["id"])
        assert r.status_code == 200, r.text
        first = self._released(project["id"])
        again = call(download_results, self.db, self.account, project["id"])
        assert again.status_code == 200 and self._released(project["id"]) == first  # once only

    def _released(self, pid: str) -> int:
        with self.db.read() as conn:
            return -int(
                conn.execute(
                    sa.select(
                        sa.func.coalesce(sa.func.sum(ledger_entries.c.amount_cents), 0)
                    ).where(
                        ledger_entries.c.kind == "release",
                        ledger_entries.c.account == f"escrow:{pid}",
                    )
                ).scalar_one()
            )

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def ledger_balances(self) -> None:
        if not hasattr(self, "account"):
            return
        e = ledger_entries
        with self.db.read() as conn:
            # money moves only with new entries or a state change (a refund is both); if neither
            # happened since the last check, the invariants still hold
            mark = (
                conn.execute(sa.select(sa.func.max(e.c.id))).scalar(),
                tuple(sorted(self._states(conn).items())),
            )
            if mark == self._checked:
                return
            self._checked = mark
            mine = sa.select(e.c.txn_id).where(
                sa.or_(
                    e.c.account == f"customer:{self.account}",
                    e.c.project_id.in_([p["id"] for p in self.projects] or [""]),
                )
            )
            # every entry of every transaction that touches this customer or its projects
            rows = conn.execute(
                sa.select(
                    e.c.account, e.c.kind, e.c.project_id, e.c.txn_id, e.c.amount_cents
                ).where(e.c.txn_id.in_(mine))
            ).all()
            paid_out = conn.execute(
                sa.select(sa.func.count())
                .select_from(payments)
                .where(payments.c.account_id == self.account, payments.c.status == "succeeded")
            ).scalar_one()
            states = self._states(conn)
            payment_txns = conn.execute(
                sa.select(sa.func.count(sa.distinct(ledger_entries.c.txn_id))).where(
                    ledger_entries.c.kind == "payment",
                    ledger_entries.c.account == f"customer:{self.account}",
                )
            ).scalar_one()
        assert paid_out == payment_txns  # each successful payment applied exactly once
        per_txn: dict[str, int] = defaultdict(int)
        for _, _, _, txn, cents in rows:
            per_txn[txn] += cents
        unbalanced = [txn for txn, total in per_txn.items() if total != 0]
        assert not unbalanced, f"transactions {unbalanced} do not sum to zero"
        balances: dict[str, int] = defaultdict(int)
        refunds: dict[str, set] = defaultdict(set)
        released: dict[str, int] = defaultdict(int)
        charged: dict[str, int] = defaultdict(int)
        for account, kind, pid, txn, cents in rows:
            balances[account] += cents
            if kind == "deposit_refund" and account.startswith("deposit_hold:"):
                refunds[pid].add(txn)
            if kind == "release" and account.startswith("escrow:"):
                released[pid] -= cents
            if kind == "task_charge" and account.startswith("escrow:"):
                charged[pid] += cents
        customer = balances[f"customer:{self.account}"]
        held = sum(
            v
            for k, v in balances.items()
            if k.startswith(("deposit_hold:", "escrow:", "earnings:"))
        )
        assert customer + held == STARTING + self.outside, "the customer's money is not conserved"
        for account, cents in balances.items():
            if account != "external" and not account.startswith("customer:"):
                assert cents >= 0, f"{account} is negative: {cents}"
        # available >= 0 under every sequence and every configuration: reopen and escalation
        # past min_annotators (no expert review) reserve first, or do not happen
        assert customer >= 0, f"available balance went negative: {customer}"
        for project in self.projects:
            pid = project["id"]
            assert len(refunds[pid]) <= 1, f"deposit of {pid} refunded twice"
            assert released[pid] <= charged[pid]
            if states[pid] in ("completed", "cancelled"):
                assert balances[f"deposit_hold:{pid}"] == 0, f"{pid} ended with money still held"
            if states[pid] == "cancelled":  # terminal: escrow empty (issue 12)
                assert balances[f"escrow:{pid}"] == 0, f"{pid} cancelled with money in escrow"

    def teardown(self) -> None:
        if hasattr(self, "account"):
            with self.db.read() as conn:
                # the balance the API reports is what the ledger holds
                assert self._balance() == self._ledger_balance(conn)
                total = conn.execute(sa.select(sa.func.sum(ledger_entries.c.amount_cents))).scalar()
                assert not total, f"the whole ledger sums to {total}, not zero"


def test_ledger_invariants_hold_over_random_programs(ledger_db) -> None:
    LedgerMachine.db = ledger_db
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=LEDGER_PROGRAMS,
            stateful_step_count=10,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
