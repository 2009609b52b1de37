"""Settings resolution: argument > environment > config file > default; no key is a clear error."""

from __future__ import annotations

import json

import pytest

import cynaps_data as cynaps
from cynaps_data import config
from cynaps_data.errors import AuthenticationError, ConfigurationError

pytestmark = pytest.mark.usefixtures("clean_config_env")


def write_config(tmp_path, **values):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return path


def test_defaults_and_missing_key_is_raised_before_any_request():
    with pytest.raises(AuthenticationError, match="No API key found.*CYNAPS_API_KEY"):
        cynaps.Client()
    settings = config.resolve(api_key="sk_test_x")
    assert settings.base_url == "https://api.cynaps.io"
    assert settings.timeout == 30.0


def test_argument_beats_environment_beats_file(monkeypatch, tmp_path):
    path = write_config(tmp_path, api_key="sk_file", base_url="http://file", timeout=5)
    monkeypatch.setenv("CYNAPS_CONFIG", str(path))
    assert config.resolve().api_key == "sk_file"
    assert config.resolve().timeout == 5.0
    monkeypatch.setenv("CYNAPS_API_KEY", "sk_env")
    monkeypatch.setenv("CYNAPS_TIMEOUT", "7")
    assert config.resolve().api_key == "sk_env"
    assert config.resolve().timeout == 7.0
    assert config.resolve().base_url == "http://file"
    assert config.resolve(api_key="sk_arg", timeout=9).api_key == "sk_arg"
    assert config.resolve(api_key="sk_arg", timeout=9).timeout == 9


def test_seed_lower_case_spelling_is_read_and_upper_case_wins(monkeypatch):
    monkeypatch.setenv("cynaps_API_KEY", "sk_lower")
    monkeypatch.setenv("cynaps_BASE_URL", "http://lower/")
    client = cynaps.Client()
    assert client.settings.api_key == "sk_lower"
    assert client.settings.base_url == "http://lower"
    monkeypatch.setenv("CYNAPS_API_KEY", "sk_upper")
    assert cynaps.Client().settings.api_key == "sk_upper"


def test_from_config_requires_the_file_and_reads_it(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        cynaps.Client.from_config(tmp_path / "nope.json")
    path = write_config(tmp_path, api_key="sk_test_abc", base_url="http://127.0.0.1:1")
    client = cynaps.Client.from_config(path)
    assert client.settings.api_key == "sk_test_abc"
    assert client.settings.base_url == "http://127.0.0.1:1"


def test_bad_config_values_name_the_field(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        cynaps.Client.from_config(bad)
    monkeypatch.setenv("CYNAPS_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="timeout must be a number") as info:
        cynaps.Client(api_key="sk_test_x")
    assert info.value.param == "timeout"


def test_settings_repr_hides_the_key():
    assert "sk_test_secret123" not in repr(config.resolve(api_key="sk_test_secret123"))


def test_write_config_is_private(tmp_path):
    path = config.write_config_file({"api_key": "sk_test_1"}, tmp_path / "c.json")
    assert path.stat().st_mode & 0o077 == 0
    assert json.loads(path.read_text()) == {"api_key": "sk_test_1"}
