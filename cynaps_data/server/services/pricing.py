"""The published price table (docs/configuration.md) and deposit quotes.

Per judgement, by annotation type (each type's ``price_per_judgement_cents``), plus an expert-review
reserve of 5.00 Credits per task when ``enable_expert_review`` is on. The security deposit covers
the expected cost: ``tasks × (min_annotators × judgement price + expert reserve)``. The seed's
example (3 tasks at 15.00, 3 annotators, expert review on) is ``3 × (3 × 15.00 + 5.00) = 150.00``.
An adaptive project's deposit covers the most it can cost, ``max_annotators`` judgements per
task, and its quote also shows the expected judgements per task and the expected cost (what is
not spent is refunded with the deposit).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...types import get_type

EXPERT_REVIEW_CENTS = 500
CURRENCY = "Credits"


@dataclass(frozen=True)
class Quote:
    task_count: int
    judgement_cents: int
    expert_reserve_cents: int
    min_annotators: int
    #: adaptive mode: judgements per task the deposit covers (``max_annotators``), and the
    #: expected judgements per task (``overlap.expected_judgements``); ``None`` in fixed mode
    max_annotators: int | None = None
    expected_judgements: float | None = None

    @property
    def covered(self) -> int:
        return self.max_annotators if self.max_annotators is not None else self.min_annotators

    @property
    def per_task_cents(self) -> int:
        return self.covered * self.judgement_cents + self.expert_reserve_cents

    @property
    def expected_cents(self) -> int:
        """The expected cost of every task's judgements (the expert reserve not included)."""
        n = self.min_annotators if self.expected_judgements is None else self.expected_judgements
        return round(self.task_count * n * self.judgement_cents)

    @property
    def total_cents(self) -> int:
        return self.task_count * self.per_task_cents

    def as_dict(self) -> dict:
        adaptive = {}
        if self.max_annotators is not None:
            adaptive = {
                "mode": "adaptive",
                "max_annotators": self.max_annotators,
                "expected_judgements_per_task": round(self.expected_judgements or 0.0, 2),
                "expected_amount": f"{self.expected_cents / 100:.2f}",
            }
        return {
            "amount": f"{self.total_cents / 100:.2f}",
            "amount_cents": self.total_cents,
            "currency": CURRENCY,
            "breakdown": {
                "tasks": self.task_count,
                "min_annotators": self.min_annotators,
                "price_per_judgement": f"{self.judgement_cents / 100:.2f}",
                "expert_review_reserve_per_task": f"{self.expert_reserve_cents / 100:.2f}",
                "per_task": f"{self.per_task_cents / 100:.2f}",
                **adaptive,
            },
            **({"expected_amount_cents": self.expected_cents} if adaptive else {}),
        }


def quote(
    annotation_type: str, quality: dict, task_count: int, expected_judgements: float | None = None
) -> Quote:
    """The deposit for ``task_count`` tasks; adaptive ``quality`` covers ``max_annotators``
    per task (``expected_judgements``: per task, shown beside it)."""
    adaptive = quality.get("mode") == "adaptive"
    return Quote(
        task_count=task_count,
        judgement_cents=get_type(annotation_type).price_per_judgement_cents,
        expert_reserve_cents=EXPERT_REVIEW_CENTS if quality["enable_expert_review"] else 0,
        min_annotators=quality["min_annotators"],
        max_annotators=quality["max_annotators"] if adaptive else None,
        expected_judgements=expected_judgements if adaptive else None,
    )


def task_charge_cents(annotation_type: str, n_judgements: int, expert_reviewed: bool) -> int:
    """What one finalised task costs: its judgements plus the expert fee if an expert decided."""
    price = get_type(annotation_type).price_per_judgement_cents
    return n_judgements * price + (EXPERT_REVIEW_CENTS if expert_reviewed else 0)
