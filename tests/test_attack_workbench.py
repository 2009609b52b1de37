"""Attacks on the annotator workbench and the expert review page (real platform, real Chromium)."""

from __future__ import annotations

import pytest

from cynaps_data.server.platform import LocalPlatform

from . import test_ui_browser as ui
from .workbench_team import Team

# the browser tests' fixtures (Debian Chromium, a page kept on the loopback platform) and helpers
browser_type_launch_args, page = ui.browser_type_launch_args, ui.page
LABELS, sign_in = ui.LABELS, ui.sign_in

pytest.importorskip("playwright")
from playwright.sync_api import Page, expect  # noqa: E402


def typed_project(
    team: Team,
    annotation_type: str,
    labels,
    tasks: list[dict],
    *,
    votes: int = 1,
    expert: bool = True,
    name: str = "Typed project",
    instructions: str = "Do it.",
) -> str:
    return team.project(
        tasks,
        annotation_type=annotation_type,
        labels=labels,
        min_annotators=votes,
        expert=expert,
        name=name,
        instructions=instructions,
    )


def test_shortcuts_still_work_after_clicking_the_much_better_checkbox(
    page: Page, platform: LocalPlatform
) -> None:
    """Failed before the fix: a focused checkbox counted as typing, so after ticking "much
    better" with the mouse 1/2/3 and Enter did nothing (the answer could not be sent by key)."""
    team = Team(platform, LABELS)
    config = {"prompt": "prompt", "candidates": ["a", "b"], "strength": True}
    pid = typed_project(team, "pairwise", config, [{"data": {"prompt": "p", "a": "x", "b": "y"}}])
    sign_in(page, team.base, team.member("Pair")["api_key"])
    expect(page.locator(".pairwise-widget")).to_be_visible()
    page.click(".pairwise-much")
    expect(page.locator(".pairwise-much")).to_be_focused()
    page.keyboard.press("1")
    expect(page.locator(".pairwise-choice[aria-pressed=true]")).to_have_count(1)
    left = page.locator(".pairwise-column[data-side=left] .pairwise-pane").get_attribute(
        "data-candidate"
    )
    task_id = page.locator("#task-id").inner_text()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text(f"Saved task {task_id}")
    record = team.ok("GET", f"/v1/projects/{pid}/export")[0]
    assert record["judgements"][0]["label"]["choice"] == left
    assert record["judgements"][0]["label"]["strength"] == "much"


def disputed_project(team: Team, texts: list[str]) -> str:
    """A classification project whose tasks two annotators split on (all disputed)."""
    pid = team.project([{"data": {"text": t}} for t in texts], min_annotators=2)
    for name, label in (("Voter one", "Sports"), ("Voter two", "Other")):
        key = team.member(name)["api_key"]
        for _ in texts:
            task = team.ok("GET", "/v1/annotator/next", key)
            path = f"/v1/annotator/tasks/{task['task_id']}/judgements"
            team.ok("POST", path, key, json={"label": label})
    assert team.ok("GET", f"/v1/projects/{pid}/status")["disputed"] == len(texts)
    return pid


def test_review_page_moves_on_when_its_task_was_decided_elsewhere(
    page: Page, platform: LocalPlatform
) -> None:
    """Failed before the fix: the expert decided the shown task in another tab; Enter here was
    refused (409 not_disputed) and the page stayed on the decided task for good (no way on but
    reloading), every Enter repeating the error."""
    team = Team(platform, LABELS)
    pid = disputed_project(team, ["one", "two"])
    expert = team.member("Expert", "expert")["api_key"]
    sign_in(page, team.base, expert, "/ui/review")
    expect(page.locator("#task")).to_be_visible()
    first = page.locator("#task-id").inner_text()
    team.ok("POST", f"/v1/review/tasks/{first}/decision", expert, json={"label": "Sports"})
    page.keyboard.press("2")
    expect(page.locator("#labels button.label[data-index='1']")).to_have_attribute(
        "aria-pressed", "true"
    )
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text(f"Task {first} is not awaiting review")
    expect(page.locator("#task-id")).not_to_have_text(first)  # the next disputed task
    second = page.locator("#task-id").inner_text()
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    export = {r["id"]: r for r in team.ok("GET", f"/v1/projects/{pid}/export")}
    assert export[int(first)]["annotations"][0]["result"]["value"] == "Sports"  # not overwritten
    assert export[int(second)]["annotations"][0]["result"]["value"] == "Sports"
    assert [j["role"] for j in export[int(first)]["judgements"]].count("expert") == 1


def expire_lease(platform: LocalPlatform, task_id: str) -> None:
    """The task's assignment ran out and was swept (as ``assignment._sweep`` does)."""
    import sqlalchemy as sa

    from cynaps_data.server.tables import assignments

    with platform.db.write() as conn:
        conn.execute(sa.delete(assignments).where(assignments.c.task_id == int(task_id)))


def test_an_answer_written_past_the_lease_is_saved_or_said_lost(
    page: Page, platform: LocalPlatform
) -> None:
    """Failed before the fix: a transcript typed for longer than the assignment lease was
    refused (409) and the same task came back with an empty text box, the typed answer gone
    and the status telling the annotator to call ``GET /v1/annotator/next``."""
    team = Team(platform, LABELS)
    pid = typed_project(
        team, "text", {"field": "audio"}, [{"data": {"audio": "hello"}}, {"data": {"audio": "bye"}}]
    )
    writer = team.member("Writer")
    sign_in(page, team.base, writer["api_key"])
    expect(page.locator("textarea.text-answer")).to_be_focused()
    first = page.locator("#task-id").inner_text()
    page.keyboard.type("A long careful transcript")
    expire_lease(platform, first)
    page.keyboard.press("Enter")  # the task is still free: it is taken again and the answer sent
    expect(page.locator("#status")).to_have_text(f"Saved task {first}: A long careful transcript")
    second = page.locator("#task-id").inner_text()
    assert second != first
    page.keyboard.type("Too late")
    expire_lease(platform, second)
    other = team.member("Other")["api_key"]
    assert team.ok("GET", "/v1/annotator/next", other)["task_id"] == int(second)
    page.keyboard.press("Enter")  # now someone else holds it: said plainly, nothing recorded
    expect(page.locator("#status")).to_contain_text(f"Task {second} was no longer assigned to you")
    expect(page.locator("#status")).to_contain_text("not saved")
    expect(page.locator("#empty")).to_be_visible()
    export = {r["id"]: r for r in team.ok("GET", f"/v1/projects/{pid}/export")}
    assert [j["label"] for j in export[int(first)]["judgements"]] == ["A long careful transcript"]
    assert export[int(second)]["judgements"] == []
    assert team.ok("GET", "/v1/annotator/progress", writer["api_key"])["judgements"] == 1


# Per annotation type: (labels config, task data, two votes the annotators split on, what the
# votes table shows of them).
ODD_VOTES = {
    "classification": (
        ['😀 "quoted"', "עברית RTL", "<i>x</i>"],
        {"text": "t"},
        ['😀 "quoted"', "עברית RTL"],
        ['😀 "quoted"', "עברית RTL"],
    ),
    "multi_label": (["a", "b", "c"], {"text": "t"}, [[], ["a", "b"]], ["[]", '["a","b"]']),
    "rating": (
        {"min": 1, "max": 5, "labels": {"1": "<b>bad</b>", "5": "good 😀"}},
        {"text": "t"},
        [1, 5],
        ["1", "5"],
    ),
    "text": (
        {"field": "audio"},
        {"audio": "x"},
        ["", "something else"],
        ["(empty answer)", "something else"],
    ),
    "pairwise": (
        {"prompt": "prompt", "candidates": ["a", "b"]},
        {"prompt": "p", "a": "x", "b": "y"},
        [{"choice": "a"}, {"choice": "b"}],
        ['{"choice":"a"}', '{"choice":"b"}'],
    ),
    "ranking": (
        {"prompt": "prompt", "candidates": "items"},
        {"prompt": "p", "items": ["alpha", "beta", "gamma"]},
        [[0, 1, 2], [2, 1, 0]],
        ["alpha > beta > gamma", "gamma > beta > alpha"],
    ),
}


@pytest.mark.parametrize("atype", list(ODD_VOTES))
def test_review_page_shows_split_and_empty_votes_of_every_type(
    page: Page, platform: LocalPlatform, atype: str
) -> None:
    """Failed before the fix for text (an empty answer was a blank cell, like a missing vote)
    and ranking (votes and mean ranks named candidates by data position, "{"order":[0,1,2]}"
    and "#1", while the expert sees them shuffled and numbered in another order)."""
    team = Team(platform, LABELS)
    labels, data, votes, shown = ODD_VOTES[atype]
    pid = typed_project(team, atype, labels, [{"data": data}], votes=2)
    for i, vote in enumerate(votes):
        key = team.member(f"Voter {i}")["api_key"]
        task = team.ok("GET", "/v1/annotator/next", key)
        path = f"/v1/annotator/tasks/{task['task_id']}/judgements"
        team.ok("POST", path, key, json={"label": vote})
    assert team.ok("GET", f"/v1/projects/{pid}/status")["disputed"] == 1
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, team.base, team.member("Expert", "expert")["api_key"], "/ui/review")
    expect(page.locator("#task")).to_be_visible()
    rows = page.locator("#votes tr td:nth-child(2)")
    expect(rows).to_have_text(shown)
    expect(page.locator("#distribution")).not_to_be_empty()
    if atype == "ranking":
        expect(page.locator("#distribution .share-label")).to_have_text(["alpha", "beta", "gamma"])
    assert errors == [] and page.evaluate("window.__xss") is None
    assert page.locator("#labels b, #labels i, #data b").count() == 0


def test_a_double_enter_and_double_click_record_one_judgement_each(
    page: Page, platform: LocalPlatform
) -> None:
    """Held up: the page's busy guard sends one submission however fast Enter is repeated."""
    team = Team(platform, LABELS)
    pid = team.project([{"data": {"text": f"item {i}"}} for i in range(3)], min_annotators=1)
    sign_in(page, team.base, team.member("Hasty")["api_key"])
    expect(page.locator("#task")).to_be_visible()
    first = page.locator("#task-id").inner_text()
    page.keyboard.press("1")
    expect(page.locator("#submit")).to_be_enabled()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(f"Saved task {first}: {LABELS[0]}")
    second = page.locator("#task-id").inner_text()
    page.keyboard.press("2")
    page.locator("#submit").dblclick()
    expect(page.locator("#status")).to_have_text(f"Saved task {second}: {LABELS[1]}")
    expect(page.locator("#remaining")).to_have_text("1")
    status = team.ok("GET", f"/v1/projects/{pid}/status")
    assert (status["judgements"], status["completed"]) == (2, 2)
