"""Project states and their explicit transitions (the seed's table).

``draft → pending_deposit → active ⇄ paused → review → completed``; ``cancelled`` from any
non-terminal state. ``review`` and ``completed`` are entered by the platform, not by a call.
"""

from __future__ import annotations

from ..problems import invalid_state

STATES = ("draft", "pending_deposit", "active", "paused", "review", "completed", "cancelled")
TERMINAL = frozenset({"completed", "cancelled"})

# action -> (states it is allowed from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "quote": (frozenset({"draft", "pending_deposit"}), "pending_deposit"),
    "pay": (frozenset({"draft", "pending_deposit"}), "pending_deposit"),
    "start": (frozenset({"pending_deposit"}), "active"),
    "pause": (frozenset({"active", "review"}), "paused"),
    "resume": (frozenset({"paused"}), "active"),
    "cancel": (frozenset(STATES) - TERMINAL, "cancelled"),
}

_NEXT_STEP = {
    "draft": "upload tasks, then call calculate_deposit() and pay_deposit()",
    "pending_deposit": "pay the deposit with pay_deposit(), then start()",
    "active": "wait for it to finish, or pause() it",
    "paused": "resume() it",
    "review": "wait for expert review to finish",
    "completed": "export its results; it cannot change any more",
    "cancelled": "create a new project; a cancelled project cannot change",
}


def next_step(state: str) -> str:
    return _NEXT_STEP[state]


def check(action: str, state: str) -> str:
    """The state ``action`` leads to from ``state``, or a 409 saying what to do next."""
    allowed, target = TRANSITIONS[action]
    if state not in allowed:
        raise invalid_state(
            f"Cannot {action} a project in state {state!r} "
            f"(allowed from: {', '.join(sorted(allowed))}). Next step: {next_step(state)}."
        )
    return target
