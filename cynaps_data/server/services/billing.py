"""Deposits, payments, per-task charges, release to annotators and refunds.

Flow (the seed's Payment Flow): the security deposit moves ``customer → deposit_hold`` when paid
(an outside payment method first brings the money in: ``external → customer``); each finalised
task is charged ``customer → escrow`` (any shortfall is taken from the deposit hold); downloading
results releases ``escrow → earnings:<annotator>`` once per task; on completion or cancellation
the hold is refunded ``deposit_hold → customer``.

Payment methods: the local platform is always a sandbox, so every method is simulated and
reported with ``livemode: false``; ``test_decline`` always declines. No real gateway is called.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from ...types import get_type
from ...wire import CREDITS_METHOD, PAYMENT_METHODS
from ...wire import DECLINING_PAYMENT_METHODS as DECLINING_METHODS
from ..db import Database
from ..ids import random_id
from ..problems import Problem, invalid, invalid_state
from ..tables import judgements, payments, projects, tasks
from . import ledger, outbox
from .fastsql import Raw
from .overlap import expected_judgements
from .pricing import quote, task_charge_cents
from .quality import is_adaptive


def task_count(conn: sa.Connection, project_id: str) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(tasks).where(tasks.c.project_id == project_id)
    ).scalar_one()


def current_quote(conn: sa.Connection, project: Any):
    """The deposit quote for the project's tasks (an adaptive one covers ``max_annotators``
    per task and shows the expected judgements, ``overlap.expected_judgements``)."""
    quality = project.quality_settings
    expected = expected_judgements(get_type(project.annotation_type), project.labels, quality)
    return quote(project.annotation_type, quality, task_count(conn, project.id), expected)


def external_payment(
    conn: sa.Connection, account_id: str, method: str, cents: int, project_id: str | None
) -> dict:
    """Simulate an outside payment (sandbox); declining methods raise 402 and record it."""
    if method not in PAYMENT_METHODS - {CREDITS_METHOD}:
        raise invalid(
            f"Unknown payment_method {method!r}; sandbox methods: "
            f"{', '.join(sorted(PAYMENT_METHODS))}",
            param="payment_method",
        )
    declined = method in DECLINING_METHODS
    payment = {
        "id": random_id("pay"),
        "account_id": account_id,
        "project_id": project_id,
        "method": method,
        "amount_cents": cents,
        "status": "declined" if declined else "succeeded",
        "livemode": False,
        "created_at": time.time(),
    }
    if declined:  # recorded by payment_transaction, after this transaction rolls back
        raise PaymentDeclined(payment)
    conn.execute(payments.insert(), payment)
    ledger.post(
        conn,
        "payment",
        [(ledger.EXTERNAL, ledger.customer(account_id), cents)],
        project_id=project_id,
        memo=f"{method} (simulated)",
    )
    return payment


class PaymentDeclined(Problem):
    """A declined sandbox payment: the payment record must survive the 402
    (:func:`payment_transaction` writes it once the request's transaction has rolled back)."""

    def __init__(self, payment: dict) -> None:
        super().__init__(
            402,
            "payment_declined",
            f"The payment method {payment['method']!r} declined the charge "
            "(sandbox test method). Use another payment method.",
            type="billing_error",
            param="payment_method",
        )
        self.payment = payment


@contextlib.contextmanager
def payment_transaction(db: Database) -> Iterator[sa.Connection]:
    """``db.write()`` for a request that may take an outside payment: a declined payment rolls
    the request back (nothing moves) and is then recorded on its own, so it survives the 402."""
    try:
        with db.write() as conn:
            yield conn
    except PaymentDeclined as declined:
        with db.write() as conn:
            conn.execute(payments.insert(), declined.payment)
        raise


def pay_deposit(conn: sa.Connection, project: Any, method: str) -> dict:
    """Hold the current deposit quote; returns the payment summary."""
    if project.deposit_cents is not None:
        raise invalid_state("The deposit is already paid. Next step: start() the project.")
    q = current_quote(conn, project)
    if q.task_count == 0:
        raise invalid_state("Upload tasks before paying the deposit: it depends on the task count.")
    payment = None
    if method != CREDITS_METHOD:
        payment = external_payment(conn, project.owner_id, method, q.total_cents, project.id)
    ledger.move_checked(
        conn,
        "deposit_hold",
        ledger.customer(project.owner_id),
        ledger.deposit_hold(project.id),
        q.total_cents,
        project_id=project.id,
    )
    outbox.deposit_paid(conn, project, q.total_cents, payment["id"] if payment else None)
    conn.execute(
        projects.update()
        .where(projects.c.id == project.id)
        .values(deposit_cents=q.total_cents, state="pending_deposit", updated_at=time.time())
    )
    return {
        "object": "deposit_payment",
        "project_id": project.id,
        "amount": f"{q.total_cents / 100:.2f}",
        "amount_cents": q.total_cents,
        "currency": "Credits",
        "payment_method": method,
        "payment_id": payment["id"] if payment else None,
        "status": "succeeded",
        "livemode": False,
    }


_CLAIM_UNBILLED_SQL = (
    "UPDATE judgements SET billed = TRUE WHERE task_id = :task AND NOT billed RETURNING role"
)
_MARK_CHARGED_SQL = "UPDATE tasks SET charged = TRUE WHERE id = :task"


def charge_task(conn: sa.Connection, project: Any, task_id: int, n: int, expert: bool) -> None:
    """Charge one finalised task into escrow (shortfall from the deposit hold).

    Only the task's judgements not billed before are charged (each at the price table: a
    judgement, or the expert fee for an expert's), so a task reopened for more judgements
    (``request_more_judgements``) is charged for the extra ones only; imported judgements are
    never billed. For a first finalisation this equals ``task_charge_cents(n, expert)``.
    ``project`` needs ``id``, ``owner_id`` and ``annotation_type``. Runs on the annotator hot
    path, so its statements go straight to the driver (``fastsql``), in the caller's transaction.
    """
    raw = Raw(conn)
    price = task_charge_cents(project.annotation_type, 1, False)
    expert_fee = task_charge_cents(project.annotation_type, 0, True)
    # claim the unbilled judgements and learn their roles in one statement: a concurrent charge
    # of the same task (PostgreSQL, READ COMMITTED) re-checks ``billed`` and claims none
    roles = [r[0] for r in raw.run(_CLAIM_UNBILLED_SQL, {"task": task_id}).fetchall()]
    cents = sum(expert_fee if role == "expert" else price for role in roles)
    customer = ledger.customer(project.owner_id)
    hold = ledger.deposit_hold(project.id)
    available = ledger.balance(conn, customer)
    from_customer = min(cents, max(available, 0))
    from_hold = (
        min(cents - from_customer, ledger.balance(conn, hold)) if cents > from_customer else 0
    )
    shortfall = cents - from_customer - from_hold
    ledger.post(
        conn,
        "task_charge",
        [
            (customer, ledger.escrow(project.id), from_customer + shortfall),
            (hold, ledger.escrow(project.id), from_hold),
        ],
        project_id=project.id,
        memo=f"task {task_id}",
    )
    raw.run(_MARK_CHARGED_SQL, {"task": task_id})


def release_escrow(conn: sa.Connection, project: Any) -> int:
    """Pay annotators for every billed, unpaid judgement of charged tasks (the seed's final
    payment); once per judgement."""
    price = task_charge_cents(project.annotation_type, 1, False)
    expert_fee = task_charge_cents(project.annotation_type, 0, True)
    charged = (
        sa.select(tasks.c.id)
        .where(tasks.c.project_id == project.id, tasks.c.charged)
        .scalar_subquery()
    )
    unpaid = sa.and_(
        judgements.c.project_id == project.id,
        judgements.c.billed,
        ~judgements.c.paid,
        judgements.c.task_id.in_(charged),
    )
    rows = conn.execute(
        sa.select(judgements.c.annotator_id, judgements.c.role, sa.func.count())
        .where(unpaid)
        .group_by(judgements.c.annotator_id, judgements.c.role)
    ).all()
    moves = [
        (
            ledger.escrow(project.id),
            ledger.earnings(annotator),
            int(n) * (expert_fee if role == "expert" else price),
        )
        for annotator, role, n in rows
    ]
    total = sum(m[2] for m in moves)
    if total > ledger.balance(conn, ledger.escrow(project.id)):
        raise RuntimeError("escrow cannot cover the release; ledger invariant broken")
    ledger.post(conn, "release", moves, project_id=project.id)
    if rows:
        outbox.results_released(conn, project, total, sum(int(r[2]) for r in rows))
        conn.execute(judgements.update().where(unpaid).values(paid=True))
    conn.execute(
        tasks.update()
        .where(tasks.c.project_id == project.id, tasks.c.charged, ~tasks.c.released)
        .values(released=True)
    )
    return total


def reserve_for_reopen(conn: sa.Connection, project: Any, n_tasks: int, n: int) -> int:
    """Hold what reopening ``n_tasks`` tasks for ``n`` more judgements can cost at most.

    The worst case per task is ``n`` judgements plus the expert fee when expert review is on;
    it moves ``customer → deposit_hold`` now (402 if the balance cannot cover it, nothing
    changed), so spending the balance elsewhere later cannot drive it below zero when the
    reopened tasks are charged; what is not used is refunded with the deposit on completion or
    cancellation. Returns the amount held, in cents.

    Adaptive mode: once a reopened task has its ``n`` extra judgements the adaptive rule decides
    again and may ask for more, one at a time, up to ``max_annotators`` in all, with no
    reservation of its own (the deposit covered ``max_annotators``, but a completed project's
    deposit has been refunded). A task with ``j`` judgements can so take
    ``max(n, max_annotators - j) <= max(n, max_annotators)`` more; that bound is held per task.
    """
    quality = project.quality_settings
    worst = max(n, quality["max_annotators"]) if is_adaptive(quality) else n
    per_task = task_charge_cents(
        project.annotation_type, worst, bool(quality.get("enable_expert_review"))
    )
    cents = n_tasks * per_task
    ledger.move_checked(
        conn,
        "deposit_hold",
        ledger.customer(project.owner_id),
        ledger.deposit_hold(project.id),
        cents,
        project_id=project.id,
    )
    return cents


def reserve_escalation(conn: sa.Connection, project: Any, task_id: int, extra: int) -> bool:
    """Hold the price of ``extra`` more judgements of a task escalated past what is covered.

    The deposit covers ``min_annotators`` judgements per task (``max_annotators`` in adaptive
    mode, which therefore never escalates past it; a reopen reserves its own); a
    disputed task without expert review gets one more annotator at a time, each beyond that
    cover. In the escalation's transaction the price moves ``customer → deposit_hold`` if the
    balance covers it (``True``); otherwise nothing moves (``False``) and the caller finalises
    the task instead (plurality label, ``majority``), so the charges never exceed what is held
    and the balance never goes below zero. What is not spent is refunded with the deposit on
    completion or cancellation (:func:`refund_deposit`). ``project``: ``id``, ``owner_id``,
    ``annotation_type``.
    """
    cents = task_charge_cents(project.annotation_type, extra, False)
    customer = ledger.customer(project.owner_id)
    if cents <= 0:
        return True
    if ledger.balance(conn, customer) < cents:
        return False
    ledger.post(
        conn,
        "deposit_hold",
        [(customer, ledger.deposit_hold(project.id), cents)],
        project_id=project.id,
        memo=f"task {task_id} escalated",
    )
    return True


def settle_escrow(conn: sa.Connection, project: Any) -> int:
    """On cancellation: pay annotators every billed, unpaid judgement (work done and charged),
    whether or not its task is final again after a reopen, so the escrow ends empty.

    Anything left after that (none while the ledger holds: escrow is exactly the billed,
    unpaid judgements) goes back to the customer. Returns the cents paid to annotators.
    """
    price = task_charge_cents(project.annotation_type, 1, False)
    expert_fee = task_charge_cents(project.annotation_type, 0, True)
    unpaid = sa.and_(judgements.c.project_id == project.id, judgements.c.billed, ~judgements.c.paid)
    rows = conn.execute(
        sa.select(judgements.c.annotator_id, judgements.c.role, sa.func.count())
        .where(unpaid)
        .group_by(judgements.c.annotator_id, judgements.c.role)
    ).all()
    escrow = ledger.escrow(project.id)
    moves = [
        (escrow, ledger.earnings(a), int(k) * (expert_fee if role == "expert" else price))
        for a, role, k in rows
    ]
    total = sum(m[2] for m in moves)
    held = ledger.balance(conn, escrow)
    if total > held:
        raise RuntimeError("escrow cannot cover the billed judgements; ledger invariant broken")
    moves.append((escrow, ledger.customer(project.owner_id), held - total))
    ledger.post(conn, "release", moves, project_id=project.id, memo="cancelled")
    if rows:
        conn.execute(judgements.update().where(unpaid).values(paid=True))
    conn.execute(
        tasks.update()
        .where(tasks.c.project_id == project.id, tasks.c.charged, ~tasks.c.released)
        .values(released=True)
    )
    return total


def refund_deposit(conn: sa.Connection, project: Any) -> int:
    """Return what is left of the deposit hold to the customer (completion or cancellation)."""
    hold = ledger.deposit_hold(project.id)
    cents = ledger.balance(conn, hold)
    if cents > 0:
        outbox.deposit_refunded(conn, project, cents)  # webhook event, same transaction
        ledger.post(
            conn,
            "deposit_refund",
            [(hold, ledger.customer(project.owner_id), cents)],
            project_id=project.id,
        )
    return cents


def topup(conn: sa.Connection, account_id: str, method: str, cents: int) -> dict:
    if method == CREDITS_METHOD:
        raise invalid("Top up with a payment method, not with credits", param="payment_method")
    return external_payment(conn, account_id, method, cents, None)


def balances(conn: sa.Connection, account_id: str) -> dict:
    return {
        "object": "balance",
        "available": f"{ledger.balance(conn, ledger.customer(account_id)) / 100:.2f}",
        "available_cents": ledger.balance(conn, ledger.customer(account_id)),
        "currency": "Credits",
        "livemode": False,
    }


def release_on_download(db: Any, owner_id: str, project_id: str) -> int:
    """The seed's final payment, made by the export route when the customer downloads results:
    escrow → annotators for every charged, unpaid judgement (:func:`release_escrow`).

    A 404 for another account's project. Skipped without a write transaction when no task is
    charged and unreleased (a reopened task is unreleased again until it is final and paid)."""
    from .projects import load  # (projects imports billing)

    with db.read() as conn:
        owed = conn.execute(
            sa.select(tasks.c.id)
            .where(tasks.c.project_id == project_id, tasks.c.charged, ~tasks.c.released)
            .limit(1)
        ).first()
        if owed is None:
            load(conn, owner_id, project_id)  # still a 404 for others
            return 0
    with db.write() as conn:
        project = load(conn, owner_id, project_id, lock=True)
        return release_escrow(conn, project)
