"""``client.webhooks``: endpoints, secret rotation, test events, the delivery log, redelivery.

Endpoints and log entries are returned as the platform's JSON objects (dicts); see
docs/webhooks.md for their fields. Verify what you receive with
:func:`cynaps_data.webhooks.verify`.
"""

from __future__ import annotations

from typing import Any

from .._http import Transport

_BASE = "/v1/webhooks/endpoints"


class WebhooksService:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def settings(self) -> dict:
        """How the platform delivers: ``https_only``, ``allow_loopback``, retry schedule."""
        return self._transport.request("GET", "/v1/webhooks/settings")

    def create_endpoint(
        self,
        url: str,
        *,
        events: list[str] | None = None,
        project_id: str | None = None,
        description: str = "",
    ) -> dict:
        """A new endpoint; the answer's ``secret`` (``whsec_…``) is shown only this once."""
        body = {"url": url, "events": events, "project_id": project_id, "description": description}
        return self._transport.request("POST", _BASE, json=body)

    def list_endpoints(self) -> list[dict]:
        return self._transport.request("GET", _BASE)["data"]

    def get_endpoint(self, endpoint_id: str) -> dict:
        return self._transport.request("GET", f"{_BASE}/{endpoint_id}")

    def update_endpoint(self, endpoint_id: str, **changes: Any) -> dict:
        """Change ``url``, ``events``, ``project_id``, ``description`` or ``disabled``."""
        return self._transport.request("PATCH", f"{_BASE}/{endpoint_id}", json=changes)

    def delete_endpoint(self, endpoint_id: str) -> dict:
        return self._transport.request("DELETE", f"{_BASE}/{endpoint_id}")

    def rotate_secret(self, endpoint_id: str, *, grace_seconds: float = 86400) -> dict:
        """A new secret (in the answer, once); the old one also signs for ``grace_seconds``."""
        return self._transport.request(
            "POST", f"{_BASE}/{endpoint_id}/rotate_secret", json={"grace_seconds": grace_seconds}
        )

    def send_test(self, endpoint_id: str) -> dict:
        """Queue a ``ping`` event for the endpoint; returns its ``message_id``."""
        return self._transport.request("POST", f"{_BASE}/{endpoint_id}/test")

    def attempts(self, endpoint_id: str, *, limit: int = 100) -> list[dict]:
        """Delivery attempts, newest first (status code, latency, first bytes of the answer)."""
        return self._transport.request(
            "GET", f"{_BASE}/{endpoint_id}/attempts", params={"limit": limit}
        )["data"]

    def deliveries(self, endpoint_id: str, *, limit: int = 100) -> list[dict]:
        """Messages for the endpoint and where each stands (pending, succeeded, failed)."""
        return self._transport.request(
            "GET", f"{_BASE}/{endpoint_id}/deliveries", params={"limit": limit}
        )["data"]

    def redeliver(self, endpoint_id: str, message_id: str) -> dict:
        """Send a message again now (same ``webhook-id``)."""
        return self._transport.request(
            "POST", f"{_BASE}/{endpoint_id}/deliveries/{message_id}/redeliver"
        )
