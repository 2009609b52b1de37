"""Small typed results returned by the client (dataclasses with a readable repr)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


class _Printable:
    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{f.name}</th><td>{_escape(getattr(self, f.name))}</td></tr>"
            for f in fields(self)  # type: ignore[arg-type]
            if f.repr
        )
        return f"<table><caption>{type(self).__name__}</caption>{rows}</table>"


def _escape(value: Any) -> str:
    import html

    return html.escape(str(value))


@dataclass(frozen=True)
class UploadResult(_Printable):
    """Outcome of an upload: ``task_count`` tasks sent, ``created`` new, ``duplicates`` skipped."""

    task_count: int
    created: int
    duplicates: int
    project_task_count: int
    batches: int = 1


@dataclass(frozen=True)
class Deposit(_Printable):
    """A security-deposit quote. ``amount`` is a string with two decimals, e.g. ``"150.00"``."""

    amount: str
    currency: str
    amount_cents: int
    breakdown: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Payment(_Printable):
    amount: str
    currency: str
    payment_method: str
    status: str
    livemode: bool
    payment_id: str | None = None


@dataclass(frozen=True)
class ProjectStatus(_Printable):
    """Progress of a project; ``progress`` is an integer percentage of completed tasks."""

    state: str
    progress: int
    completed: int
    total: int
    is_complete: bool
    disputed: int = 0
    pending: int = 0
    judgements: int = 0
    deposit_paid: bool = False
    next_step: str = ""

    @classmethod
    def from_api(cls, body: dict) -> ProjectStatus:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in body.items() if k in names})
