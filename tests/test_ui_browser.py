"""The workbench in a real browser: Playwright (Python) driving Debian's Chromium.

Chromium comes from apt (``/usr/bin/chromium``, installed by ``.ci/run``); Playwright never
downloads a browser. Screenshots are written to ``test-artifacts/ui/``. Every request the page
makes outside the local platform is intercepted (images are answered with a local PNG), so no
test traffic leaves the machine.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cynaps_data.server.platform import LocalPlatform

from .conftest import png_bytes
from .workbench_team import Team

pytest.importorskip("playwright")
from playwright.sync_api import Page, expect  # noqa: E402

CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = (
    Path(
        os.environ.get(
            "CYNAPS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"
        )
    )
    / "ui"
)
LABELS = ["Electronics", "Clothing", "Home & Garden", "Sports", "Other"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Use Debian's chromium instead of a Playwright-downloaded browser."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def page(page: Page, platform: LocalPlatform) -> Page:
    """The pytest-playwright page, kept on the loopback platform; outside URLs never leave."""
    outside: list[str] = []

    def route(route_obj) -> None:
        url = route_obj.request.url
        if url.startswith(platform.base_url + "/"):
            route_obj.continue_()
        else:
            outside.append(url)
            route_obj.fulfill(status=200, content_type="image/png", body=OUTSIDE_PNG)

    page.route("**/*", route)
    page.outside_requests = outside  # type: ignore[attr-defined]
    page.set_default_timeout(10_000)
    return page


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


OUTSIDE_PNG = png_bytes(240, 120, (43, 89, 195))  # served for every outside image URL


def sign_in(page: Page, base: str, key: str, path: str = "/ui/") -> None:
    page.goto(base + path)
    page.fill("#signin-key", key)
    page.click("#signin-form button[type=submit]")
    assert key not in page.url


def test_annotator_labels_three_tasks_with_the_keyboard(
    page: Page, platform: LocalPlatform
) -> None:
    team = Team(platform, LABELS)
    png = png_bytes(240, 120, (46, 139, 87))

    def tasks(pid: str) -> list[dict]:
        asset = team.ok(
            "POST",
            f"/v1/projects/{pid}/assets",
            data=png,
            headers={"Content-Type": "image/png"},
        )
        photo = {
            "asset": asset["sha256"],
            "content_type": "image/png",
            "url": f"/v1/projects/{pid}/assets/{asset['sha256']}",
        }
        return [
            {
                "data": {
                    "product_name": "Wireless Headphones",
                    "description": "Noise-cancelling over-ear headphones",
                    "price": 199.99,
                    "in_stock": True,
                },
                "external_id": "p1",
            },
            {
                "data": {
                    "product_name": "Running Shoes",
                    "image": "https://images.example.com/shoes.png",
                    "photo": photo,
                    "sizes": [40, 41, 42],
                },
                "external_id": "p2",
            },
            {
                "data": {"product_name": "Garden Hose", "description": "15 m, kink-free"},
                "external_id": "p3",
            },
        ]

    pid = team.project(
        tasks,
        min_annotators=1,
        name="Product categories",
        instructions="Choose the product's category.",
    )
    member = team.member("Browser annotator")
    sign_in(page, team.base, member["api_key"])
    expect(page.locator("#task")).to_be_visible()
    expect(page.locator("#project-name")).to_have_text("Product categories")
    expect(page.locator("#instructions")).to_have_text("Choose the product's category.")
    expect(page.locator("#labels button.label")).to_have_count(len(LABELS))
    expect(page.locator("#data")).to_contain_text("Noise-cancelling over-ear headphones")
    expect(page.locator("#data table")).to_contain_text("199.99")
    expect(page.locator("#remaining")).to_have_text("3")
    shot(page, "annotate-task")
    assert page.evaluate("sessionStorage.getItem('cynaps.session')") == member["api_key"]

    chosen = []
    for key, label in (("1", "Electronics"), ("4", "Sports"), ("3", "Home & Garden")):
        task_id = page.locator("#task-id").inner_text()
        if label == "Sports":  # the image task: an https URL becomes an <img>, checked in JS
            expect(page.locator("#data img").first).to_have_attribute(
                "src", "https://images.example.com/shoes.png"
            )
            # The uploaded asset is read with the session key and shown through a blob: URL.
            asset_img = page.locator("#data figure:has(figcaption:text-is('photo')) img")
            expect(asset_img).to_have_attribute("src", re.compile(r"^blob:"))
            page.wait_for_function(
                "img => img.complete && img.naturalWidth === 240", arg=asset_img.element_handle()
            )
            expect(page.locator("#data table")).to_contain_text("40")
            shot(page, "annotate-image-task")
        page.keyboard.press(key)
        expect(
            page.locator(f"#labels button.label[data-index='{int(key) - 1}']")
        ).to_have_attribute("aria-pressed", "true")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_have_text(f"Saved task {task_id}: {label}")
        chosen.append((int(task_id), label))
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#done")).to_have_text("3")
    expect(page.locator("#remaining")).to_have_text("0")
    shot(page, "annotate-done")
    assert page.outside_requests == ["https://images.example.com/shoes.png"]

    status = team.ok("GET", f"/v1/projects/{pid}/status")
    assert (status["completed"], status["judgements"], status["state"]) == (3, 3, "completed")
    export = team.ok("GET", f"/v1/projects/{pid}/export")
    by_id = {record["id"]: record for record in export}
    for task_id, label in chosen:
        record = by_id[task_id]
        assert record["annotations"][0]["result"]["value"] == label
        assert [(j["annotator_id"], j["label"]) for j in record["judgements"]] == [
            (member["id"], label)
        ]
        assert record["judgements"][0]["duration"] > 0
    assert {by_id[t]["external_id"] for t, _ in chosen} == {"p1", "p2", "p3"}

    # The customer's read-only dashboard shows the same progress (an annotator key is refused).
    page.goto(team.base + "/ui/dashboard")
    expect(page.locator("#signin-error")).to_contain_text("for customer or admin keys")
    sign_in(page, team.base, team.key, "/ui/dashboard")
    expect(page.locator("#completed")).to_have_text("3")
    expect(page.locator("#judgements")).to_have_text("3")
    expect(page.locator("#state")).to_have_text("completed")
    expect(page.locator("#annotators")).to_contain_text("Browser annotator")
    expect(page.locator("#final-labels")).to_contain_text("Home & Garden")
    expect(page.locator("#histogram .bin")).to_have_count(10)
    shot(page, "dashboard")


def test_annotator_skips_a_task_with_the_s_key(page: Page, platform: LocalPlatform) -> None:
    team = Team(platform, LABELS)
    pid = team.project(
        [{"data": {"text": "first item"}}, {"data": {"text": "second item"}}],
        min_annotators=1,
        name="Skips",
        instructions="Label or skip.",
    )
    member = team.member("Skipping annotator")
    sign_in(page, team.base, member["api_key"])
    expect(page.locator("#task")).to_be_visible()
    first = page.locator("#task-id").inner_text()
    page.keyboard.press("S")
    expect(page.locator("#status")).to_have_text(f"Skipped task {first}")
    expect(page.locator("#skipped")).to_have_text("1")
    second = page.locator("#task-id").inner_text()
    assert second != first
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(f"Saved task {second}: {LABELS[1]}")
    expect(page.locator("#empty")).to_be_visible()  # a skipped task is never handed back
    progress = team.ok("GET", "/v1/annotator/progress", member["api_key"])
    assert (progress["judgements"], progress["skips"]) == (1, 1)
    assert team.ok("GET", f"/v1/projects/{pid}/status")["judgements"] == 1


def test_expert_resolves_a_disputed_task_from_an_invite_link(
    page: Page, platform: LocalPlatform
) -> None:
    team = Team(platform, LABELS)
    pid = team.project(
        [{"data": {"text": "A yoga mat with a carrying strap"}}],
        min_annotators=2,
        name="Disputed products",
        instructions="Pick the best category.",
    )
    for name, label in (("Voter one", "Sports"), ("Voter two", "Home & Garden")):
        key = team.member(name)["api_key"]
        task = team.ok("GET", "/v1/annotator/next", key)
        team.ok(
            "POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": label}
        )
    assert team.ok("GET", f"/v1/projects/{pid}/status")["disputed"] == 1
    expert = team.member("Expert reviewer", "expert")
    invite = team.ok("POST", f"/v1/annotators/{expert['id']}/invites")

    page.goto(team.base + invite["path"])
    expect(page.locator("#task")).to_be_visible()
    assert "#" not in page.url and "inv_" not in page.url  # the token left the address bar
    expect(page.locator("#who")).to_have_text("Expert reviewer (expert)")
    expect(page.locator("#votes tr")).to_have_count(2)
    expect(page.locator("#votes")).to_contain_text("Sports")
    expect(page.locator("#votes")).to_contain_text("Home & Garden")
    expect(page.locator("#agreement")).to_have_text("50%")
    expect(page.locator("#distribution meter")).to_have_count(2)
    expect(page.locator("#data")).to_contain_text("A yoga mat with a carrying strap")
    page.keyboard.press("4")
    shot(page, "review-task")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#done")).to_have_text("1")
    shot(page, "review-done")

    status = team.ok("GET", f"/v1/projects/{pid}/status")
    assert (status["completed"], status["disputed"], status["state"]) == (1, 0, "completed")
    record = team.ok("GET", f"/v1/projects/{pid}/export")[0]
    assert record["annotations"][0]["result"]["value"] == "Sports"
    assert record["consensus"]["label_source"] == "expert"
    # The invite was used up: opening the link again does not sign anyone in.
    page.evaluate("sessionStorage.clear()")
    page.goto("about:blank")  # a real load, not a same-document fragment change
    page.goto(team.base + invite["path"])
    expect(page.locator("#signin-error")).to_contain_text("invalid, already used or expired")
    expect(page.locator("#app")).to_be_hidden()


def test_hostile_task_data_is_shown_as_text_and_runs_nothing(
    page: Page, platform: LocalPlatform
) -> None:
    team = Team(platform, LABELS)
    img = "<img src=x onerror=\"window.__xss='img'\">"
    script = "<script>window.__xss='script'</script>"
    tasks = [
        {
            "data": {
                "text": f"Review: {img} and {script}",
                f"field {img}": script,
                "image": "javascript:window.__xss='js-url'",
                "photo": "data:image/svg+xml,<svg onload=\"window.__xss='data'\"/>",
                "thumbnail": "/ui/static/common.js",
                "meta": {"html": img},
            }
        }
    ]
    team.project(
        tasks,
        min_annotators=1,
        name=f"Project {script}",
        instructions=f"Read {img} carefully",
        labels=[f"<b>{img}</b>", "plain"],
    )
    member = team.member(f"Mallory {script}")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, team.base, member["api_key"])
    expect(page.locator("#task")).to_be_visible()
    data = page.locator("#data")
    expect(data).to_contain_text(f"Review: {img} and {script}")
    expect(data).to_contain_text(f"field {img}")
    expect(data).to_contain_text("javascript:window.__xss='js-url'")
    expect(page.locator("#project-name")).to_have_text(f"Project {script}")
    expect(page.locator("#instructions")).to_have_text(f"Read {img} carefully")
    expect(page.locator("#labels button.label").first).to_contain_text(f"<b>{img}</b>")
    expect(page.locator("#who")).to_contain_text(script)
    shot(page, "hostile-task")
    # Nothing was parsed as markup: no <img>/<script>/<svg>/<b> came from the data, and no
    # URL other than http(s) or our own assets reached an <img>.
    assert page.locator("#data img, #data script, #data svg, #labels b, main script").count() == 0
    assert page.evaluate("window.__xss") is None
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    assert page.evaluate("window.__xss") is None and dialogs == []
    assert page.outside_requests == []
