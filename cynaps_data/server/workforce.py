"""Sandbox workforce: simulated annotators and experts for development and tests.

SANDBOX FEATURE. Each member is a real annotator/expert account (``simulated: true``) that
works through the same HTTP annotator API a person's browser uses: ask for the next task,
think for ``seconds_per_judgement``, submit an answer. What it answers is simulated by the
project's annotation type (``simulate``): from the task's gold value when one was uploaded,
otherwise from the type's deterministic pseudo-truth (``pseudo_truth``, from the task data),
kept with probability equal to the member's accuracy, else a plausible wrong value. The oracle
reads the truth from the database because a simulated person has to know what the right answer
is; the API never shows gold to anyone.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import requests
import sqlalchemy as sa

from ..types import AnnotationType, get_type
from .db import Database
from .ids import hash_key, key_prefix, new_api_key
from .settings import WorkforceSettings
from .tables import accounts, api_keys, tasks

logger = logging.getLogger(__name__)


@dataclass
class Member:
    name: str
    role: str
    key: str
    accuracy: float


def enlist(db: Database, settings: WorkforceSettings, sandbox: bool) -> list[Member]:
    """Create (or re-key) the simulated accounts; returns the members with fresh keys."""
    rng = random.Random(settings.seed)
    wanted = [("annotator", f"Sandbox annotator {i + 1}") for i in range(settings.annotators)]
    wanted += [("expert", f"Sandbox expert {i + 1}") for i in range(settings.experts)]
    members = []
    now = time.time()
    with db.write() as conn:
        existing = {
            (r.role, r.name): r.id
            for r in conn.execute(sa.select(accounts).where(accounts.c.simulated))
        }
        for role, name in wanted:
            account_id = existing.get((role, name))
            if account_id is None:
                account_id = f"acct_sim_{role[:3]}{len(existing) + len(members) + 1:04d}"
                conn.execute(
                    accounts.insert(),
                    {
                        "id": account_id,
                        "role": role,
                        "name": name,
                        "owner_id": None,
                        "sandbox": sandbox,
                        "simulated": True,
                        "created_at": now,
                    },
                )
            key = new_api_key(role, sandbox=sandbox)
            conn.execute(
                api_keys.insert(),
                {
                    "key_hash": hash_key(key),
                    "prefix": key_prefix(key),
                    "account_id": account_id,
                    "revoked": False,
                    "created_at": now,
                },
            )
            low, high = settings.accuracy
            accuracy = settings.expert_accuracy if role == "expert" else rng.uniform(low, high)
            members.append(Member(name, role, key, accuracy))
    return members


class Workforce:
    """Runs every member in its own thread until :meth:`stop`."""

    def __init__(
        self, db: Database, base_url: str, members: list[Member], settings: WorkforceSettings
    ) -> None:
        self.db = db
        self.base_url = base_url.rstrip("/")
        self.members = members
        self.settings = settings
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Workforce:
        for i, member in enumerate(self.members):
            thread = threading.Thread(
                target=self._run, args=(i, member), name=f"workforce-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _truth(self, task_id: int, atype: AnnotationType, config: Any) -> tuple[Any, dict]:
        """The task's ``(truth, data)``: its gold, else the type's pseudo-truth."""
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(tasks.c.gold, tasks.c.data).where(tasks.c.id == task_id)
            ).one()
        truth = orjson.loads(row.gold) if row.gold else atype.pseudo_truth(row.data, config)
        return truth, orjson.loads(row.data)

    def _answer(self, index: int, member: Member, task: dict) -> Any:
        """``task``: the assignment view (``annotation_type``, ``labels``: the config)."""
        atype = get_type(task["annotation_type"])
        config = task["labels"]
        truth, data = self._truth(task["task_id"], atype, config)
        rng = random.Random(f"{self.settings.seed}:{index}:{task['task_id']}")
        return atype.simulate(truth, config, member.accuracy, rng, data=data)

    def _run(self, index: int, member: Member) -> None:
        session = requests.Session()
        # the platform is on loopback: no proxies or netrc from the environment (reading it on
        # every request also raced with threads that change os.environ)
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {member.key}"
        pace = self.settings.seconds_per_judgement
        next_path, submit = (
            ("/v1/annotator/next", "/v1/annotator/tasks/{}/judgements")
            if member.role == "annotator"
            else ("/v1/review/next", "/v1/review/tasks/{}/decision")
        )
        while not self._stop.is_set():
            try:
                response = session.get(self.base_url + next_path, timeout=30)
                if response.status_code != 200:
                    self._stop.wait(pace if response.status_code in (204, 429) else 1.0)
                    continue
                task = response.json()
                label = self._answer(index, member, task)
                started = time.monotonic()
                if self._stop.wait(pace * random.uniform(0.5, 1.5)):
                    break
                session.post(
                    self.base_url + submit.format(task["task_id"]),
                    json={"label": label, "duration": round(time.monotonic() - started, 3)},
                    headers={"Idempotency-Key": f"wf-{member.key[-8:]}-{task['task_id']}"},
                    timeout=30,
                )
            except requests.RequestException:
                self._stop.wait(1.0)
            except Exception:  # a simulated annotator must outlive any one bad answer
                logger.exception("sandbox workforce member %s: unexpected error", member.name)
                self._stop.wait(1.0)
        session.close()
