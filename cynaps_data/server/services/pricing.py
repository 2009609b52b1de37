"""The published price table (docs/configuration.md) and deposit quotes.

Per judgement, by annotation type (each type's ``price_per_judgement_cents``), plus an expert-review
reserve of 5.00 Credits per task when ``enable_expert_review`` is on. The security deposit covers
the expected cost: ``tasks × (min_annotators × judgement price + expert reserve)``. The seed's
example (3 tasks at 15.00, 3 annotators, expert review on) is ``3 × (3 × 15.00 + 5.00) = 150.00``.
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

    @property
    def per_task_cents(self) -> int:
        return self.min_annotators * self.judgement_cents + self.expert_reserve_cents

    @property
    def total_cents(self) -> int:
        return self.task_count * self.per_task_cents

    def as_dict(self) -> dict:
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
            },
        }


def quote(annotation_type: str, quality: dict, task_count: int) -> Quote:
    return Quote(
        task_count=task_count,
        judgement_cents=get_type(annotation_type).price_per_judgement_cents,
        expert_reserve_cents=EXPERT_REVIEW_CENTS if quality["enable_expert_review"] else 0,
        min_annotators=quality["min_annotators"],
    )


def task_charge_cents(annotation_type: str, n_judgements: int, expert_reviewed: bool) -> int:
    """What one finalised task costs: its judgements plus the expert fee if an expert decided."""
    price = get_type(annotation_type).price_per_judgement_cents
    return n_judgements * price + (EXPERT_REVIEW_CENTS if expert_reviewed else 0)
