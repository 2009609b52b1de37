"""A customer team over the platform's real HTTP API, for the workbench tests (API and browser).

Each test builds its own team (a customer, its projects, its annotators and experts), so it
sees only its own projects on the shared ``platform``.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from cynaps_data.server.platform import LocalPlatform


class Team:
    """A customer (``key``) on ``platform``; ``labels`` are its projects' default labels."""

    def __init__(self, platform: LocalPlatform, labels: list, name: str = "UI test customer"):
        self.base = platform.base_url
        self.key = platform.create_customer(name)
        self.labels = labels

    def call(
        self, method: str, path: str, key: str | None = None, headers: dict | None = None, **kw
    ) -> requests.Response:
        """One request as ``key`` (default: the customer)."""
        sent = {"Authorization": f"Bearer {key or self.key}", **(headers or {})}
        return requests.request(method, self.base + path, headers=sent, timeout=30, **kw)

    def ok(self, method: str, path: str, key: str | None = None, **kw) -> dict:
        """:meth:`call`, asserting a 200/201, and its JSON body."""
        response = self.call(method, path, key, **kw)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def project(
        self,
        tasks: list[dict] | Callable[[str], list[dict]],
        *,
        min_annotators: int = 1,
        expert: bool = True,
        labels: list | None = None,
        instructions: str = "Pick the animal.",
        name: str = "UI project",
        annotation_type: str = "classification",
    ) -> str:
        """Create, fill (``tasks`` may be built from the project id), pay and start a project
        (``labels``: the type's config for other types)."""
        pid = self.ok(
            "POST",
            "/v1/projects",
            json={
                "name": name,
                "annotation_type": annotation_type,
                "labels": labels or self.labels,
                "instructions": instructions,
                "quality_settings": {
                    "min_annotators": min_annotators,
                    "consensus_threshold": 0.66,
                    "enable_expert_review": expert,
                },
            },
        )["id"]
        tasks = tasks(pid) if callable(tasks) else tasks
        self.ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": tasks})
        self.ok("POST", f"/v1/projects/{pid}/deposit/quote")
        self.ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
        self.ok("POST", f"/v1/projects/{pid}/start")
        return pid

    def member(self, name: str, role: str = "annotator") -> dict:
        """A new team member (annotator or expert) with its key."""
        return self.ok("POST", "/v1/annotators", json={"name": name, "role": role})
