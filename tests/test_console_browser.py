"""The customer console in a real browser (Playwright + Debian's Chromium; issue 17): a key is
shown once, an endpoint gets a test event that appears in the delivery log, a top-up appears in
the ledger, the CSV downloads, and table headers never wrap mid-word. Screenshots go to
``test-artifacts/ui/`` (the ones in docs/img/ come from here)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from cynaps_data.server.platform import LocalPlatform

from .conftest import make_project
from .test_ui_browser import CHROMIUM, CHROMIUM_ARGS, shot, sign_in
from .webhook_receiver import Receiver, loopback_platform

pytest.importorskip("playwright")
from playwright.sync_api import Page, expect  # noqa: E402


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def console_platform(tmp_path_factory):
    with loopback_platform(tmp_path_factory, "console") as running:
        yield running


@pytest.fixture
def page(page: Page, console_platform: LocalPlatform) -> Page:
    """Kept on the loopback platform: any other request is aborted."""

    def route(route_obj) -> None:
        if route_obj.request.url.startswith(console_platform.base_url + "/"):
            route_obj.continue_()
        else:
            route_obj.abort()

    page.route("**/*", route)
    page.on("dialog", lambda dialog: dialog.accept())
    page.set_default_timeout(10_000)
    return page


def test_generate_a_key_and_see_it_only_once(page: Page, console_platform: LocalPlatform):
    base = console_platform.base_url
    sign_in(page, base, console_platform.create_customer("Console customer"), "/ui/settings")
    page.fill("#key-name", "training pipeline")
    page.click("#generate-key")
    secret_box = page.locator("#new-key-value")
    expect(secret_box).to_have_text(re.compile(r"^sk_test_\w{32}$"))
    secret = secret_box.text_content()
    row = page.locator("#keys tr", has_text="training pipeline")
    expect(row).to_contain_text(secret[:12] + "…")
    expect(row).to_contain_text("active")
    shot(page, "console-api-keys")
    page.click("#dismiss-key")
    expect(page.locator("#new-key")).to_be_hidden()
    assert secret not in page.content()
    page.reload()
    expect(page.locator("#keys tr", has_text="training pipeline")).to_be_visible()
    assert secret not in page.content()
    # revoke it from the page: the key is refused at once
    page.locator("#keys tr", has_text="training pipeline").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(page.locator("#keys tr", has_text="training pipeline")).to_contain_text("revoked")
    import requests

    r = requests.get(base + "/v1/me", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_add_an_endpoint_send_a_test_event_and_see_it_in_the_log(
    page: Page, console_platform: LocalPlatform
):
    receiver = Receiver()
    try:
        sign_in(page, console_platform.base_url, console_platform.create_customer(), "/ui/settings")
        page.fill("#hook-url", receiver.url)
        page.check("#hook-events input[value=ping]")
        page.check("#hook-events input[value='tasks.finalised']")
        page.click("#add-endpoint")
        expect(page.locator("#new-secret-value")).to_have_text(re.compile("^whsec_"))
        secret = page.locator("#new-secret-value").text_content()
        row = page.locator("#endpoints tr", has_text=receiver.url)
        expect(row).to_contain_text("ping, tasks.finalised")
        row.get_by_role("button", name="Send test event").click()
        receiver.wait_for(1)
        log_row = page.locator("#attempts tr").first
        for _ in range(50):  # the attempt is logged just after the receiver answered
            page.click("#refresh-log")
            page.wait_for_timeout(100)
            if log_row.count() and "200" in (log_row.text_content() or ""):
                break
        expect(log_row).to_contain_text("ping")
        expect(log_row).to_contain_text("200")
        shot(page, "console-webhooks")
        import cynaps_data as cynaps

        _, headers, body = receiver.received[0]
        assert cynaps.webhooks.verify(body, headers, secret)["type"] == "ping"
        log_row.get_by_role("button", name="Redeliver").click()
        receiver.wait_for(2)
        assert receiver.received[1][1]["webhook-id"] == headers["webhook-id"]
    finally:
        receiver.close()


def test_top_up_and_see_the_ledger_line_and_download_csv(
    page: Page, console_platform: LocalPlatform
):
    import cynaps_data as cynaps

    key = console_platform.create_customer()
    with cynaps.Client(api_key=key, base_url=console_platform.base_url) as client:
        project = make_project(client, name="=cmd|' /C calc'!A0")
        project.upload_tasks([{"text": "a"}])
        project.calculate_deposit()
        project.pay_deposit(payment_method="credits")
    sign_in(page, console_platform.base_url, key, "/ui/billing")
    expect(page.locator("#balance")).not_to_have_text("–")
    before = page.locator("#balance").text_content()
    page.fill("#topup-amount", "250")
    page.click("#topup")
    expect(page.locator("#topup-status")).to_contain_text("Added 250 Credits")
    first = page.locator("#ledger tr").first
    expect(first).to_contain_text("payment")
    expect(first).to_contain_text("250.00")
    after = f"{float(before) + 250:.2f}"
    expect(page.locator("#balance")).to_have_text(after)
    expect(first.locator("td").last).to_have_text(after)
    expect(page.locator("#deposits tr")).to_contain_text("=cmd")  # shown as text
    shot(page, "console-billing")
    with page.expect_download() as download:
        page.click("#download")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[-1]["amount"] == "250.00" and rows[-1]["balance"] == after
    assert any(r["project_name"] == "'=cmd|' /C calc'!A0" for r in rows)


def test_projects_table_headers_do_not_wrap_mid_word(page: Page, console_platform: LocalPlatform):
    import cynaps_data as cynaps

    key = console_platform.create_customer()
    with cynaps.Client(api_key=key, base_url=console_platform.base_url) as client:
        make_project(client, name="Header check").upload_tasks([{"text": "a"}])
    page.set_viewport_size({"width": 360, "height": 800})
    sign_in(page, console_platform.base_url, key, "/ui/projects")
    expect(page.locator("#overview")).to_be_visible()
    for path, ready in (
        ("/ui/projects", "#overview"),
        ("/ui/billing", "#ledger tr"),
        ("/ui/settings", "#keys tr"),
    ):
        page.goto(console_platform.base_url + path)
        expect(page.locator(ready).first).to_be_visible()
        heights = page.eval_on_selector_all(
            "thead th",
            "ths => ths.filter(t => t.offsetParent).map(t => [t.textContent, t.getBoundingClientRect().height, parseFloat(getComputedStyle(t).lineHeight) || 20])",
        )
        assert heights, path
        for text, height, line in heights:
            assert height < 2 * line + 12, (path, text, height)  # one line of text
    page.goto(console_platform.base_url + "/ui/projects")
    shot(page, "console-projects")
