"""The ``cynaps`` command and the client configuration, used the way a new user does.

A user error (a bad argument, a port in use, a database that is not there, a wrong key, a bad
config value, Ctrl-C) must be a clear one-line ``error: …`` and an exit code (2 for bad
arguments, 1 for what the world refused, 130 for Ctrl-C), never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import cynaps_data as cynaps
from cynaps_data import cli, config
from cynaps_data.errors import AuthenticationError, ConfigurationError

from .conftest import CONFIG_ENV_VARS

pytestmark = pytest.mark.usefixtures("clean_config_env")


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """``cynaps ARGV`` in this process; (exit code, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(("error: ", "cynaps")), err
    assert sum(1 for line in lines if "error:" in line) == 1, err


def subprocess_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_ENV_VARS}
    env["HOME"] = str(tmp_path / "home")
    env["CYNAPS_CONFIG"] = str(tmp_path / "home" / "config.json")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def config_file(tmp_path, **values) -> str:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(values))
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- bad arguments: argparse's one line and exit code 2 --------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "99999"],
        ["serve", "--port", "-1"],
        ["serve", "--workers", "0"],
        ["quickstart", "--poll-interval", "-1"],
        ["quickstart", "--poll-interval", "nan"],
        ["upload", "x.csv", "--project", "proj_x", "--batch-size", "0"],
        ["keys", "create", "--name", "k", "--expires-in-days", "nan"],
        ["keys", "create", "--name", "k", "--expires-in-days", "-5"],
    ],
)
def test_bad_numeric_arguments_are_usage_errors(capsys, tmp_path, argv):
    if argv[0] == "serve":  # in a subprocess: a `serve` that accepted it would run for ever
        argv = [*argv, "--db", str(tmp_path / "x.db"), "--config", str(tmp_path / "c.json")]
        done = subprocess.run(
            [sys.executable, "-m", "cynaps_data.cli", *argv],
            env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        code, err = done.returncode, done.stderr
    else:
        code, _, err = run_main(capsys, *argv)
    assert code == 2, err
    assert "error: argument" in err
    assert_one_line_error(err)


def test_export_to_a_missing_directory_is_refused_before_anything_is_downloaded(capsys, tmp_path):
    code, _, err = run_main(
        capsys, "export", "--project", "proj_x", "-o", str(tmp_path / "no" / "such" / "r.parquet")
    )
    assert code == 2, err
    assert "does not exist" in err
    assert_one_line_error(err)


# --- cynaps serve: port, database, config file -----------------------------------------------


def test_serve_on_a_port_in_use_says_so(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for workers in ("1", "2"):
            code, out, err = run_main(
                capsys, "serve", "--port", str(port), "--db", str(tmp_path / "s.db"),
                "--config", str(tmp_path / "c.json"), "--no-workforce", "--workers", workers,
            )  # fmt: skip
            assert code == 1, err
            assert f"127.0.0.1:{port}" in err and "--port" in err
            assert_one_line_error(err)
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    "db",
    ["postgresql://someone:s3cret-pw@127.0.0.1:1/cynaps", "notadialect://x/y", "DIR"],
)
def test_serve_with_a_database_it_cannot_open_says_which(capsys, tmp_path, db):
    db = str(tmp_path) if db == "DIR" else db  # a directory is not a SQLite file
    code, out, err = run_main(
        capsys, "serve", "--port", "0", "--db", db, "--config", str(tmp_path / "c.json"),
        "--no-workforce",
    )  # fmt: skip
    assert code == 1, err
    assert "database" in err
    assert "s3cret-pw" not in out + err  # the password is never printed
    assert_one_line_error(err)
    assert not (tmp_path / "c.json").exists()


def test_serve_with_an_invalid_config_file_fails_at_once(tmp_path):
    """Before: the platform started, then the key could not be saved; with ``--workers 2`` the
    error happened in a background thread and ``cynaps serve`` ran on without any key."""
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for workers in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "cynaps_data.cli", "serve", "--port", "0", "--no-workforce",
             "--db", str(tmp_path / "s.db"), "--config", str(bad), "--workers", workers],
            env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "not valid JSON" in done.stderr
        assert_one_line_error(done.stderr)
    assert bad.read_text() == "{not json"


# --- keys / annotators against a real platform -----------------------------------------------


def test_keys_and_annotators_errors_are_one_line(capsys, tmp_path, platform, client):
    wrong = config_file(tmp_path, api_key="sk_test_wrong", base_url=platform.base_url)
    for argv in (["keys", "list"], ["annotators", "list"]):
        code, _, err = run_main(capsys, *argv, "--config", wrong)
        assert code == 1, err
        assert "Invalid API key" in err
        assert_one_line_error(err)
    good = config_file(tmp_path, api_key=client.settings.api_key, base_url=platform.base_url)
    code, _, err = run_main(capsys, "keys", "revoke", "key_nope", "--config", good)
    assert (code, "No such API key" in err) == (1, True), err
    assert_one_line_error(err)
    code, _, err = run_main(capsys, "annotators", "add", "--name", "", "--config", good)
    assert code == 1 and "name" in err, err
    assert_one_line_error(err)
    down = config_file(tmp_path, api_key="sk_test_x", base_url=f"http://127.0.0.1:{free_port()}", max_retries=0)  # fmt: skip
    code, _, err = run_main(capsys, "keys", "list", "--config", down)
    assert code == 1 and "Could not connect" in err, err
    assert_one_line_error(err)
    code, _, err = run_main(capsys, "keys", "list", "--config", str(tmp_path / "nope.json"))
    assert code == 1 and "does not exist" in err, err
    assert_one_line_error(err)


def test_a_key_pasted_with_whitespace_works(tmp_path, platform, client, capsys):
    key = client.settings.api_key
    pasted = cynaps.Client(api_key=f"  {key}\n", base_url=platform.base_url, max_retries=0)
    assert pasted.me()["role"] == "customer"
    path = config_file(tmp_path, api_key=f"{key}\r\n", base_url=f" {platform.base_url}/ ")
    code, out, err = run_main(capsys, "keys", "list", "--config", path)
    assert code == 0, err
    with pytest.raises(ConfigurationError, match="api_key"):
        cynaps.Client(api_key="sk_test_a b", base_url=platform.base_url)


def test_blank_environment_values_count_as_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("CYNAPS_API_KEY", " \n")
    with pytest.raises(AuthenticationError, match="No API key found"):
        cynaps.Client()
    monkeypatch.setenv("CYNAPS_TIMEOUT", "  ")
    monkeypatch.setenv("CYNAPS_MAX_RETRIES", "")
    monkeypatch.setenv("CYNAPS_BASE_URL", "\t")
    settings = config.resolve(api_key="sk_test_x")
    assert (settings.timeout, settings.max_retries, settings.base_url) == (
        30.0, 3, "https://api.cynaps.io",
    )  # fmt: skip
    monkeypatch.setenv("CYNAPS_CONFIG", "")  # blank: the default file, not the current directory
    assert config.config_path() == config.Path(config.DEFAULT_CONFIG_PATH).expanduser()


@pytest.mark.parametrize("url", ["127.0.0.1:8765", "localhost:8765", "ftp://x.example", "http://"])
def test_base_url_without_http_scheme_is_a_configuration_error(url):
    with pytest.raises(ConfigurationError, match="base_url") as info:
        cynaps.Client(api_key="sk_test_x", base_url=url)
    assert info.value.param == "base_url"
    if "://" not in url:
        assert f"http://{url}" in str(info.value)


def test_base_url_with_the_api_path_works(platform, client):
    for suffix in ("/", "/v1", "/v1/"):
        other = cynaps.Client(
            api_key=client.settings.api_key, base_url=platform.base_url + suffix, max_retries=0
        )
        assert other.settings.base_url == platform.base_url
        assert other.projects.list() is not None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", "0"),
        ("timeout", "nan"),
        ("timeout", "inf"),
        ("timeout", "-1"),
        ("max_retries", "-1"),
    ],
)
def test_bad_numbers_in_the_environment_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(f"CYNAPS_{name.upper()}", value)
    with pytest.raises(ConfigurationError, match=name) as info:
        cynaps.Client(api_key="sk_test_x")
    assert info.value.param == name


@pytest.mark.parametrize(
    ("name", "value"), [("max_retries", True), ("max_retries", 2.5), ("timeout", False)]
)
def test_wrong_types_in_the_config_file_are_refused(tmp_path, name, value):
    path = config_file(tmp_path, api_key="sk_test_x", **{name: value})
    with pytest.raises(ConfigurationError, match=name):
        cynaps.Client.from_config(path)


def test_unreadable_config_file_is_not_called_invalid_json(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot be read") as info:
        cynaps.Client.from_config(tmp_path)  # a directory
    assert "not valid JSON" not in str(info.value)


# --- quickstart ------------------------------------------------------------------------------


def test_ctrl_c_during_the_quickstart_is_a_clean_message(tmp_path):
    scratch = tmp_path / "tmp"  # where the quickstart's temporary platform lives
    scratch.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cynaps_data.cli", "quickstart", "--poll-interval", "0.2"],
        env={**subprocess_env(tmp_path), "TMPDIR": str(scratch)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background jobs with SIGINT ignored, and the
        # child would inherit that (then Ctrl-C is a no-op): give it the default back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 90
        for line in proc.stdout:
            if "Project created" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert "interrupted" in err.lower()
    assert not list(tmp_path.rglob("*.db"))  # nothing left in the working directory
    assert not list(scratch.iterdir())  # the temporary platform was stopped and removed


def test_from_config_honours_cynaps_config_and_nan_expiry_is_refused(
    platform, tmp_path, monkeypatch
) -> None:
    """``Client.from_config()`` read ``~/.cynaps/config.json`` even with ``CYNAPS_CONFIG`` set
    (the docs say that variable sets the default path); ``expires_in_days=nan`` travelled as
    JSON null and made a key that never expires."""
    import json
    import math

    import cynaps_data as cynaps

    key = platform.create_customer()
    path = tmp_path / "elsewhere.json"
    path.write_text(json.dumps({"api_key": key, "base_url": platform.base_url}))
    monkeypatch.setenv("CYNAPS_CONFIG", str(path))
    client = cynaps.Client.from_config()
    assert client.settings.base_url == platform.base_url
    with pytest.raises(cynaps.errors.ValidationError, match="expires_in_days"):
        client.api_keys.create("k", expires_in_days=math.nan)
    assert all(k.name != "k" for k in client.api_keys.list())
