"""The workbench API over real HTTP: pages and headers, skips, invites, scoping, dashboard.

Every test builds its own customer team (annotators and experts owned by that customer), so
it sees only its own projects on the shared ``platform``.
"""

from __future__ import annotations

import requests

from cynaps_data.server.platform import LocalPlatform

from .workbench_team import Team

LABELS = ["cat", "dog", "bird"]


def test_pages_are_served_with_a_strict_csp(platform: LocalPlatform) -> None:
    for path in (
        "/ui/",
        "/ui/review",
        "/ui/dashboard",
        "/ui/static/common.js",
        "/ui/static/style.css",
    ):
        response = requests.get(platform.base_url + path, timeout=10)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert (
            "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        )
        assert "img-src 'self' blob: https: http:" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    assert (
        requests.get(platform.base_url + "/ui/static/common.js", timeout=10)
        .headers["content-type"]
        .startswith("text/javascript")
    )
    html = requests.get(platform.base_url + "/ui/", timeout=10).text
    assert "<script>" not in html and " on" + "click=" not in html  # no inline script or handlers
    for bad in ("/ui/static/..%2Frouters%2Fui.py", "/ui/static/missing.js", "/ui/nope"):
        assert requests.get(platform.base_url + bad, timeout=10).status_code == 404, bad


def test_shipped_scripts_never_parse_strings_as_html_or_code(platform: LocalPlatform) -> None:
    """Every script the pages load (served, as the browser gets it) puts task data in the page
    only as text: no HTML sinks, no string evaluation (comments may name them)."""
    import re

    from cynaps_data.server.routers.ui import _static

    scripts = [name for name in _static() if name.endswith(".js")]
    assert {"common.js", "queue.js", "annotate.js", "review.js", "dashboard.js"} <= set(scripts)
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function|"
        r"setTimeout\s*\(\s*[\"'`]|setInterval\s*\(\s*[\"'`]|createContextualFragment"
    )
    for name in scripts:
        source = requests.get(f"{platform.base_url}/ui/static/{name}", timeout=10).text
        code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
        code = re.sub(r"(?m)^\s*//.*$|\s//\s.*$", "", code)
        assert not sinks.search(code), (name, sinks.search(code).group(0))


def test_annotator_sees_only_its_task_without_gold_or_other_labels(platform: LocalPlatform) -> None:
    team = Team(platform, LABELS)
    pid = team.project([{"data": {"text": "a"}, "gold": "cat"}], min_annotators=2)
    first, second = team.member("A1")["api_key"], team.member("A2")["api_key"]
    task = team.ok("GET", "/v1/annotator/next", first)
    assert task["project_id"] == pid and task["data"] == {"text": "a"}
    assert "gold" not in task and "votes" not in task and "judgements" not in task
    team.ok(
        "POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", first, json={"label": "dog"}
    )
    other = team.ok("GET", "/v1/annotator/next", second)
    assert other["task_id"] == task["task_id"]
    assert "dog" not in str({k: v for k, v in other.items() if k != "labels"})
    # The first annotator may not judge it again, nor submit for a task it does not hold.
    assert team.call("GET", "/v1/annotator/next", first).status_code == 204
    again = team.call(
        "POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", first, json={"label": "cat"}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_assigned"
    # Customers' endpoints stay closed to annotators.
    assert team.call("GET", f"/v1/projects/{pid}/dashboard", first).status_code == 404


def test_submit_with_next_returns_the_following_task(platform: LocalPlatform) -> None:
    team = Team(platform, LABELS)
    team.project([{"data": {"text": f"t{i}"}} for i in range(3)])
    key = team.member("Fast")["api_key"]
    task = team.ok("GET", "/v1/annotator/next", key)
    seen = [task["data"]["text"]]
    while task is not None:
        answer = team.ok(
            "POST",
            f"/v1/annotator/tasks/{task['task_id']}/judgements?next=true",
            key,
            json={"label": "cat"},
        )
        assert answer["task_status"] == "completed"
        task = answer["next"]
        if task:
            seen.append(task["data"]["text"])
    assert seen == ["t0", "t1", "t2"]
    progress = team.ok("GET", "/v1/annotator/progress", key)
    assert progress["judgements"] == 3 and progress["remaining"] == 0


def test_a_repeated_submission_answers_as_the_first_and_records_nothing(
    platform: LocalPlatform,
) -> None:
    """Judgements skip the Idempotency-Key table: a retry (with its key) of a submission that
    already went through gets the first answer again and never a second judgement."""
    team = Team(platform, LABELS)
    pid = team.project([{"data": {"text": f"r{i}"}} for i in range(3)], min_annotators=2)
    key = team.member("Retrier")["api_key"]
    task = team.ok("GET", "/v1/annotator/next", key)
    path = f"/v1/annotator/tasks/{task['task_id']}/judgements?next=true"
    retry = {"Authorization": f"Bearer {key}", "Idempotency-Key": "submit-once"}
    first = requests.post(
        platform.base_url + path, headers=retry, json={"label": "dog"}, timeout=30
    )
    assert first.status_code == 201, first.text
    assert first.json()["next"] is not None
    for _ in range(2):  # the retry of a client whose answer was lost
        again = requests.post(
            platform.base_url + path, headers=retry, json={"label": "dog"}, timeout=30
        )
        assert again.status_code == 201, again.text
        assert again.json() == first.json()  # same label, status, and the same next task
    changed = requests.post(
        platform.base_url + path, headers=retry, json={"label": "cat"}, timeout=30
    )
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "not_assigned"
    # without a key a repeat is a second submission: refused, as it always was
    plain = team.call("POST", path, key, json={"label": "dog"})
    assert plain.status_code == 409 and plain.json()["error"]["code"] == "not_assigned"
    assert team.ok("GET", "/v1/annotator/progress", key)["judgements"] == 1
    status = team.ok("GET", f"/v1/projects/{pid}/status")
    assert status["judgements"] == 1
    # the next task is still the caller's own live assignment, and can be judged as usual
    follow = first.json()["next"]["task_id"]
    team.ok("POST", f"/v1/annotator/tasks/{follow}/judgements", key, json={"label": "cat"})
    assert team.ok("GET", f"/v1/projects/{pid}/status")["judgements"] == 2


def test_skip_releases_the_task_and_never_offers_it_again(platform: LocalPlatform) -> None:
    team = Team(platform, LABELS)
    team.project([{"data": {"text": "hard"}}, {"data": {"text": "easy"}}])
    skipper, other = team.member("Skipper")["api_key"], team.member("Other")["api_key"]
    hard = team.ok("GET", "/v1/annotator/next", skipper)
    assert hard["data"]["text"] == "hard"
    assert team.ok("POST", f"/v1/annotator/tasks/{hard['task_id']}/skip", skipper) == {
        "object": "skip",
        "task_id": hard["task_id"],
    }
    assert (
        team.call("POST", f"/v1/annotator/tasks/{hard['task_id']}/skip", skipper).status_code == 409
    )
    easy = team.ok("GET", "/v1/annotator/next", skipper)
    assert easy["data"]["text"] == "easy"
    team.ok(
        "POST", f"/v1/annotator/tasks/{easy['task_id']}/judgements", skipper, json={"label": "dog"}
    )
    assert team.call("GET", "/v1/annotator/next", skipper).status_code == 204
    # The released task goes to someone else.
    assert team.ok("GET", "/v1/annotator/next", other)["task_id"] == hard["task_id"]
    assert team.ok("GET", "/v1/annotator/progress", skipper)["skips"] == 1


def test_invite_link_is_one_time_and_scoped_to_the_owner(platform: LocalPlatform) -> None:
    team, stranger = Team(platform, LABELS), Team(platform, LABELS)
    member = team.member("Invited", "expert")
    invite = team.ok("POST", f"/v1/annotators/{member['id']}/invites")
    assert (
        invite["path"].startswith("/ui/review#invite=inv_")
        and invite["token"] not in invite["path"].split("#")[0]
    )
    assert stranger.call("POST", f"/v1/annotators/{member['id']}/invites").status_code == 404
    session = requests.post(
        platform.base_url + "/v1/invites/redeem", json={"token": invite["token"]}, timeout=10
    )
    assert session.status_code == 201, session.text
    me = team.ok("GET", "/v1/me", session.json()["api_key"])
    assert me["id"] == member["id"] and me["role"] == "expert"
    reused = requests.post(
        platform.base_url + "/v1/invites/redeem", json={"token": invite["token"]}, timeout=10
    )
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "invalid_invite"
    bogus = requests.post(
        platform.base_url + "/v1/invites/redeem", json={"token": "inv_" + "x" * 40}, timeout=10
    )
    assert bogus.status_code == 401


def test_experts_see_only_disputed_tasks_of_their_owners_projects(platform: LocalPlatform) -> None:
    team, other_team = Team(platform, LABELS), Team(platform, LABELS)
    pid = team.project(
        [{"data": {"text": "split"}}, {"data": {"text": "agreed"}}], min_annotators=2
    )
    a1, a2 = team.member("V1")["api_key"], team.member("V2")["api_key"]
    outsider = other_team.member("Outside expert", "expert")["api_key"]
    expert = team.member("Expert", "expert")["api_key"]
    assert team.call("GET", "/v1/review/next", expert).status_code == 204  # nothing disputed yet
    for key, labels in ((a1, ["cat", "dog"]), (a2, ["dog", "dog"])):
        for label in labels:
            task = team.ok("GET", "/v1/annotator/next", key)
            team.ok(
                "POST",
                f"/v1/annotator/tasks/{task['task_id']}/judgements",
                key,
                json={"label": label},
            )
    assert team.call("GET", "/v1/review/next", outsider).status_code == 204
    review = team.ok("GET", "/v1/review/next", expert)
    assert review["data"] == {"text": "split"} and review["agreement"] == 0.5
    assert sorted(v["label"] for v in review["votes"]) == ["cat", "dog"]
    assert review["vote_distribution"] == {"cat": 0.5, "dog": 0.5}
    denied = team.call(
        "POST", f"/v1/review/tasks/{review['task_id']}/decision", outsider, json={"label": "cat"}
    )
    assert denied.status_code == 404
    assert (
        team.call(
            "POST",
            f"/v1/annotator/tasks/{review['task_id']}/judgements",
            expert,
            json={"label": "cat"},
        ).status_code
        == 403
    )
    decided = team.ok(
        "POST", f"/v1/review/tasks/{review['task_id']}/decision", expert, json={"label": "bird"}
    )
    assert decided["task_status"] == "completed"
    status = team.ok("GET", f"/v1/projects/{pid}/status")
    assert status["completed"] == 2 and status["state"] == "completed"


def test_dashboard_summarises_and_is_owner_scoped(platform: LocalPlatform) -> None:
    team, stranger = Team(platform, LABELS), Team(platform, LABELS)
    pid = team.project([{"data": {"text": f"t{i}"}} for i in range(4)], min_annotators=1)
    key = team.member("Dash")["api_key"]
    for label in ("cat", "cat", "dog"):
        task = team.ok("GET", "/v1/annotator/next", key)
        team.ok(
            "POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": label}
        )
    board = team.ok("GET", f"/v1/projects/{pid}/dashboard")
    assert board["status"]["completed"] == 3 and board["status"]["total"] == 4
    assert (
        board["agreement_histogram"]["counts"][-1] == 3
        and sum(board["agreement_histogram"]["counts"]) == 3
    )
    assert board["final_labels"] == {"cat": 2, "dog": 1}
    assert [(a["name"], a["judgements"], a["simulated"]) for a in board["annotators"]] == [
        ("Dash", 3, False)
    ]
    assert stranger.call("GET", f"/v1/projects/{pid}/dashboard").status_code == 404


def test_cli_adds_a_member_with_key_and_invite_link(
    platform: LocalPlatform, tmp_path, capsys
) -> None:
    import json

    from cynaps_data.cli import main

    team = Team(platform, LABELS)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_key": team.key, "base_url": platform.base_url}))
    assert (
        main(
            [
                "annotators",
                "add",
                "--name",
                "Ada",
                "--role",
                "expert",
                "--config",
                str(config),
                "--json",
            ]
        )
        == 0
    )
    added = json.loads(capsys.readouterr().out)
    assert added["role"] == "expert" and added["name"] == "Ada"
    assert added["invite_link"].startswith(platform.base_url + "/ui/review#invite=inv_")
    assert team.ok("GET", "/v1/me", added["api_key"])["id"] == added["id"]
    token = added["invite_link"].split("#invite=")[1]
    session = requests.post(
        platform.base_url + "/v1/invites/redeem", json={"token": token}, timeout=10
    ).json()
    assert team.ok("GET", "/v1/me", session["api_key"])["id"] == added["id"]
    assert main(["annotators", "list", "--config", str(config)]) == 0
    assert f"{added['id']}  expert     Ada" in capsys.readouterr().out


def test_sandbox_workforce_members_are_listed_as_annotators(
    staffed_platform: LocalPlatform,
) -> None:
    team = Team(staffed_platform, LABELS)
    pool = team.ok("GET", "/v1/workforce")["data"]
    simulated = [m for m in pool if m["simulated"]]
    assert {m["role"] for m in simulated} == {"annotator", "expert"}
    assert all(m["name"].startswith("Sandbox ") for m in simulated)
    annotator = Team(staffed_platform, LABELS).member("Not a customer")["api_key"]
    assert team.call("GET", "/v1/workforce", annotator).status_code == 404
