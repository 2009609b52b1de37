"""The thin client: ``Client`` → services (``client.projects``) → ``_http.Transport``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import config
from ._http import Transport
from .errors import AuthenticationError
from .resources.api_keys import ApiKeysService
from .resources.project import Project
from .resources.webhooks import WebhooksService

if TYPE_CHECKING:
    from .server.platform import LocalPlatform


class ProjectsService:
    """``client.projects``: create, get and list projects."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def create(
        self,
        name: str,
        annotation_type: str = "classification",
        labels: list[str] | None = None,
        instructions: str = "",
        quality_settings: dict[str, Any] | None = None,
    ) -> Project:
        body = {
            "name": name,
            "annotation_type": annotation_type,
            "labels": labels,
            "instructions": instructions,
            "quality_settings": quality_settings or {},
        }
        return Project(self._transport, self._transport.request("POST", "/v1/projects", json=body))

    def get(self, project_id: str) -> Project:
        return Project(
            self._transport, self._transport.request("GET", f"/v1/projects/{project_id}")
        )

    def list(self, *, limit: int = 100, offset: int = 0) -> list[Project]:
        body = self._transport.request(
            "GET", "/v1/projects", params={"limit": limit, "offset": offset}
        )
        return [Project(self._transport, item) for item in body["data"]]


class Client:
    """Entry point to the Cynaps API.

    ``Client()`` reads ``CYNAPS_API_KEY`` / ``CYNAPS_BASE_URL`` / ``CYNAPS_TIMEOUT`` (or the seed's
    ``cynaps_API_KEY`` spellings), then ``~/.cynaps/config.json``. A missing key raises
    :class:`~cynaps_data.errors.AuthenticationError` before any request is sent.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        _config_file: str | os.PathLike[str] | None = None,
        _config_required: bool = False,
    ) -> None:
        self.settings = config.resolve(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            config_file=_config_file,
            config_required=_config_required,
        )
        if not self.settings.api_key:
            raise AuthenticationError(
                "No API key found. Pass Client(api_key='sk_...'), set CYNAPS_API_KEY, or write "
                f"{config.config_path()} (`cynaps serve` does). For a local platform with no "
                "account anywhere, use cynaps_data.Client.local().",
                code="missing_api_key",
            )
        self._transport = Transport(
            api_key=self.settings.api_key,
            base_url=self.settings.base_url,
            timeout=self.settings.timeout,
            max_retries=self.settings.max_retries,
        )
        self.projects = ProjectsService(self._transport)
        self.api_keys = ApiKeysService(self._transport)
        self.webhooks = WebhooksService(self._transport)
        self.platform: LocalPlatform | None = None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Client:
        """A client from a JSON config file (``api_key``, ``base_url``, ``timeout``); by default
        the file in ``CYNAPS_CONFIG``, else ``~/.cynaps/config.json``."""
        return cls(_config_file=path, _config_required=True, **overrides)

    @classmethod
    def local(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        workforce: Any = True,
        webhook_allow_loopback: bool = True,
        **platform_options: Any,
    ) -> Client:
        """Start the platform in this process (SQLite, sandbox mode) and return a client for it.

        ``path`` is the SQLite file (a temporary directory when ``None``). ``workforce=True``
        runs the default sandbox workforce (simulated annotators using the annotator API);
        pass a :class:`~cynaps_data.server.settings.WorkforceSettings` to tune it or ``False``
        for none. ``webhook_allow_loopback`` lets webhooks reach receivers on this machine
        (127.0.0.1; the platform setting, visible at ``client.webhooks.settings()``). The
        platform stops with :meth:`close`, the ``with`` block, or at exit.
        """
        from .server.platform import LocalPlatform

        platform = LocalPlatform(
            path,
            workforce=workforce,
            webhook_allow_loopback=webhook_allow_loopback,
            **platform_options,
        ).start()
        client = cls(api_key=platform.create_customer(), base_url=platform.base_url)
        # loopback only: a proxy from the environment must not carry this traffic
        client._transport.session.trust_env = False
        client.platform = platform
        return client

    def me(self) -> dict:
        return self._transport.request("GET", "/v1/me")

    def balance(self) -> dict:
        return self._transport.request("GET", "/v1/billing/balance")

    def top_up(self, amount: float | str, payment_method: str = "card") -> dict:
        return self._transport.request(
            "POST", "/v1/billing/topups", json={"amount": amount, "payment_method": payment_method}
        )

    def close(self) -> None:
        self._transport.close()
        if self.platform is not None:
            self.platform.stop()
            self.platform = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<cynaps_data.Client {self.settings.base_url}>"
