"""Settings resolution for the client.

Order, highest first: explicit argument > environment > config file > default. Environment
variables are read in upper case first (``CYNAPS_API_KEY``) and then in the seed's spelling
(``cynaps_API_KEY``). Nothing is read at import time.

The config file is JSON: ``{"api_key": "sk_...", "base_url": "...", "timeout": 30}``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

DEFAULT_BASE_URL = "https://api.cynaps.io"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_CONFIG_PATH = "~/.cynaps/config.json"

_ENV_NAMES = {
    "api_key": ("CYNAPS_API_KEY", "cynaps_API_KEY"),
    "base_url": ("CYNAPS_BASE_URL", "cynaps_BASE_URL"),
    "timeout": ("CYNAPS_TIMEOUT", "cynaps_TIMEOUT"),
    "max_retries": ("CYNAPS_MAX_RETRIES", "cynaps_MAX_RETRIES"),
}


@dataclass(frozen=True)
class Settings:
    """Resolved client settings."""

    api_key: str | None
    base_url: str
    timeout: float
    max_retries: int

    def __repr__(self) -> str:  # never print a whole key
        key = f"{self.api_key[:8]}…" if self.api_key else None
        return (
            f"Settings(api_key={key!r}, base_url={self.base_url!r}, "
            f"timeout={self.timeout}, max_retries={self.max_retries})"
        )


def config_path() -> Path:
    """The default config file, honouring ``CYNAPS_CONFIG``."""
    return Path(os.environ.get("CYNAPS_CONFIG", "").strip() or DEFAULT_CONFIG_PATH).expanduser()


def read_config_file(path: str | os.PathLike[str] | None, *, required: bool) -> dict[str, Any]:
    """Read a JSON config file; a missing file is ``{}`` unless ``required``."""
    file = Path(path).expanduser() if path is not None else config_path()
    if not file.exists():
        if required:
            raise ConfigurationError(
                f"Config file {str(file)!r} does not exist. Create it with "
                '{"api_key": "sk_..."} or run `cynaps serve`, which writes one.',
                param="path",
            )
        return {}
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigurationError(f"Config file {str(file)!r} cannot be read: {reason}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"Config file {str(file)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"Config file {str(file)!r} must hold a JSON object")
    return data


def write_config_file(
    values: Mapping[str, Any], path: str | os.PathLike[str] | None = None
) -> Path:
    """Write (merge into) a config file readable only by its owner; returns its path."""
    file = Path(path).expanduser() if path is not None else config_path()
    file.parent.mkdir(parents=True, exist_ok=True)
    current = read_config_file(file, required=False) if file.exists() else {}
    current.update(values)
    tmp = file.with_suffix(file.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(current, fh, indent=2)
    os.replace(tmp, file)
    return file


def _env(name: str) -> str | None:
    for var in _ENV_NAMES[name]:
        value = os.environ.get(var)
        if value is not None and value.strip():  # blank (``VAR=`` or spaces) counts as unset
            return value
    return None


def _number(value: Any, name: str, kind: type) -> Any:
    if isinstance(value, str):
        value = value.strip()
    try:
        if isinstance(value, bool) or (
            kind is int and isinstance(value, float) and not value.is_integer()
        ):
            raise TypeError
        number = kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{name} must be {what}, got {value!r}", param=name) from None
    if kind is float and not (math.isfinite(number) and number > 0):
        raise ConfigurationError(
            f"{name} must be a positive number of seconds, got {value!r}", param=name
        )
    if number < 0:
        raise ConfigurationError(f"{name} must not be negative, got {value!r}", param=name)
    return number


def _api_key(value: Any) -> str | None:
    """The key without the whitespace a terminal paste brings (``"sk_…\\n"``)."""
    key = str(value).strip() if value is not None else ""
    if not key:
        return None
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigurationError(
            "api_key contains spaces or control characters; copy the key again "
            "(keys look like sk_test_… or sk_live_…)",
            param="api_key",
        )
    return key


def _base_url(value: Any) -> str:
    """``http(s)://host[:port][/prefix]``, without a trailing ``/`` or the API's ``/v1``."""
    url = str(value).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        hint = f" (did you mean 'http://{url}'?)" if url and "://" not in str(value) else ""
        raise ConfigurationError(
            f"base_url must be an http:// or https:// URL, got {str(value)!r}{hint}",
            param="base_url",
        )
    if url.endswith("/v1"):  # the client adds /v1/… to every path
        url = url[: -len("/v1")].rstrip("/")
    return url


def resolve(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    config_file: str | os.PathLike[str] | None = None,
    config_required: bool = False,
) -> Settings:
    """Resolve settings: argument > environment > config file > default."""
    file = read_config_file(config_file, required=config_required)

    def pick(name: str, explicit: Any) -> Any:
        if explicit is not None:
            return explicit
        env = _env(name)
        if env is not None:
            return env
        return file.get(name)

    key = pick("api_key", api_key)
    url = pick("base_url", base_url)
    if url is None or not str(url).strip():
        url = DEFAULT_BASE_URL
    raw_timeout = pick("timeout", timeout)
    raw_retries = pick("max_retries", max_retries)
    return Settings(
        api_key=_api_key(key),
        base_url=_base_url(url),
        timeout=DEFAULT_TIMEOUT if raw_timeout is None else _number(raw_timeout, "timeout", float),
        max_retries=DEFAULT_MAX_RETRIES
        if raw_retries is None
        else _number(raw_retries, "max_retries", int),
    )
