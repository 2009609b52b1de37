"""The customer console's billing views (issue 17): ledger history with a running balance, the
CSV download with spreadsheet-formula escaping, deposits per project; owner-scoped."""

from __future__ import annotations

import csv
import io

import requests

from cynaps_data.server.ui.console import cell

from .conftest import make_project


def get(platform, client, path):
    r = requests.get(
        platform.base_url + path,
        headers={"Authorization": f"Bearer {client.settings.api_key}"},
        timeout=10,
    )
    r.raise_for_status()
    return r


def test_running_balance_and_csv(platform, client):
    project = make_project(client, name='=HYPERLINK("http://evil.example","x")')
    project.upload_tasks([{"text": "a"}, {"text": "b"}])
    project.calculate_deposit()
    project.pay_deposit(payment_method="credits")
    client.top_up(12.5)
    history = get(platform, client, "/v1/billing/history").json()
    rows = history["data"]
    assert history["balance_cents"] == client.balance()["available_cents"]
    assert rows[0]["balance_cents"] == history["balance_cents"]  # newest first
    for newer, older in zip(rows, rows[1:], strict=False):
        assert older["balance_cents"] == newer["balance_cents"] - newer["amount_cents"]
    assert rows[-1]["balance_cents"] == rows[-1]["amount_cents"]  # the first entry ever
    assert rows[0]["kind"] == "payment" and rows[0]["amount"] == "12.50"
    r = get(platform, client, "/v1/billing/history.csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert len(table) == len(rows)
    assert table[-1]["amount"] == "12.50" and table[-1]["balance"] == history["balance"]
    named = [t for t in table if t["project_id"] == project.id]
    assert named and all(t["project_name"].startswith("'=HYPERLINK") for t in named)
    assert any(t["amount"].startswith("-") for t in table)  # numbers stay numbers
    deposits = get(platform, client, "/v1/billing/deposits").json()["data"]
    assert [d["project_id"] for d in deposits] == [project.id]
    assert deposits[0]["held"] == deposits[0]["deposit"]


def test_formula_cells_are_escaped():
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert cell(text) == "'" + text
    assert cell("plain") == "plain" and cell(None) == ""


def test_views_are_the_callers_own(platform, client):
    client.top_up(1)
    other = platform.create_customer("Other")
    r = requests.get(
        platform.base_url + "/v1/billing/history",
        headers={"Authorization": f"Bearer {other}"},
        timeout=10,
    ).json()
    mine = {row["txn_id"] for row in get(platform, client, "/v1/billing/history").json()["data"]}
    assert not mine & {row["txn_id"] for row in r["data"]}
    assert (
        requests.get(platform.base_url + "/v1/billing/history.csv", timeout=10).status_code == 401
    )
