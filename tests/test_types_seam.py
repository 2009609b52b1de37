"""The annotation type is the seam: a type defined and registered only here runs end to end.

``yes_no`` (a bool answer to the project's question) lives in this file and nowhere else: its
config is an object (``{"question": ...}``, not a label list), its values are JSON booleans, its
vote summary is a share (not label counts), its export columns are Arrow ``bool``, its widget is
a JavaScript module this test writes to a temporary directory, and its simulated annotators
answer from gold or its own pseudo-truth. The platform, exports, workforce and workbench run
unchanged: create, upload, sandbox workforce, platform consensus, export, browser.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests

import cynaps_data as cynaps
from cynaps_data import types
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings
from cynaps_data.types import Decision, VoteArrays

WIDGET_JS = """\
// yes_no widget (test-only type): two buttons, keys y / n.
export function mount(box, task, onReady) {
  let answer = null;
  const question = document.createElement("p");
  question.className = "yes-no-question";
  question.textContent = task.labels.question;
  const buttons = [[true, "Yes", "y"], [false, "No", "n"]].map(([value, text, key]) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "label yes-no";
    button.dataset.answer = String(value);
    button.textContent = `${text} (${key})`;
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => choose(value));
    return button;
  });
  function choose(value) {
    answer = value;
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.answer === String(value)));
    onReady(true);
  }
  box.replaceChildren(question, ...buttons);
  return {
    value: () => answer,
    key(event) {
      const k = event.key.toLowerCase();
      if (k === "y") { choose(true); return true; }
      if (k === "n") { choose(false); return true; }
      return false;
    },
  };
}
"""


def _bools(texts: pa.Array) -> pa.Array:
    """JSON texts ``"true"``/``"false"`` as Arrow bool; ``""`` (none) is null."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    missing = pc.equal(texts, "")
    return pc.if_else(missing, pa.scalar(None, pa.bool_()), pc.equal(texts, "true"))


class YesNo:
    """A bool answer to ``config["question"]``."""

    name = "yes_no"
    price_per_judgement_cents = 500
    aggregation_methods = ("share",)
    default_method = "share"
    agreement_metrics = ("percent_agreement",)

    def __init__(self, widget_dir: Path) -> None:
        self.widget_dir = widget_dir
        #: the task data each hook was given (the protocol passes it to both)
        self.validated_with: list[Any] = []
        self.simulated_with: list[Any] = []

    def validate_config(self, config: Any) -> dict:
        if not isinstance(config, dict) or set(config) != {"question"}:
            raise ValueError('labels must be {"question": "<text>"}')
        if not isinstance(config["question"], str) or not config["question"].strip():
            raise ValueError("labels.question must be a non-empty string")
        return {"question": config["question"]}

    def validate_value(self, value: Any, config: dict, data: Any = None) -> bool:
        self.validated_with.append(data)
        if isinstance(value, dict) and "choices" in value:
            value = self.from_label_studio({"type": "choices", "value": value}, config)
        if not isinstance(value, bool):
            raise ValueError(f"the answer must be true or false, got {value!r}")
        return value

    def to_label_studio(self, value: Any, config: dict) -> dict:
        return {"type": "choices", "value": {"choices": ["yes" if value else "no"]}}

    def from_label_studio(self, region: dict, config: dict) -> Any:
        choices = (region.get("value") or {}).get("choices")
        if region.get("type") != "choices" or choices not in (["yes"], ["no"]):
            raise ValueError("not a yes/no 'choices' result")
        return choices == ["yes"]

    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        yes = sum(votes)
        top = yes * 2 >= len(votes) if yes * 2 != len(votes) else votes[0]
        share = max(yes, len(votes) - yes) / len(votes)
        if share >= quality["consensus_threshold"]:
            return Decision("completed", needed, top, "consensus", share)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, share)
        if needed < quality["max_annotators"]:
            return Decision("pending", needed + 1, None, None, share)
        return Decision("completed", needed, top, "majority", share)

    def summarize(self, votes: list[Any], config: dict | None) -> dict[str, Any]:
        return {"yes_share": sum(votes) / len(votes) if votes else None}

    def wide_columns(self, votes: VoteArrays, config: dict) -> dict[str, pa.Array]:
        yes = np.bincount(
            votes.pos,
            weights=pc.equal(votes.values, "true").to_numpy(zero_copy_only=False).astype(float),
            minlength=votes.n_tasks,
        )
        none = votes.n_votes == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            share = yes / votes.n_votes
        label = _bools(votes.final)
        final = label.fill_null(False).to_numpy(zero_copy_only=False)
        picked = np.where(final, share, 1 - share)
        return {
            "gold": _bools(votes.gold),
            "label": label,
            "agreement": pa.array(np.maximum(share, 1 - share), pa.float64(), mask=none),
            "confidence": pa.array(
                picked, pa.float64(), mask=none | label.is_null().to_numpy(zero_copy_only=False)
            ),
            "yes_share": pa.array(share, pa.float64(), mask=none),
            "expert_label": _bools(votes.expert),
        }

    def long_label(self, values: pa.Array, config: dict) -> pa.Array:
        return _bools(values)

    def aggregate(self, votes: Any, method: Any, config: dict, **params: Any) -> Any:
        """One client method, ``share``: the yes share and the answer it implies."""
        import pandas as pd

        if method not in ("auto", "share") or params:
            raise cynaps.errors.ValidationError(f"unknown method {method!r}", param="method")
        share = votes.assign(yes=votes["label"].astype(float)).groupby("task")["yes"].mean()
        return pd.DataFrame({f"{method}_label": share > 0.5, f"{method}_share": share})

    def features(self, config: dict) -> dict[str, Any]:
        import datasets

        return {c: datasets.Value("bool") for c in ("label", "gold", "expert_label")}

    def widget(self) -> Path:
        return self.widget_dir / "yes_no.js"

    def pseudo_truth(self, data_json: str, config: dict) -> Any:
        return hashlib.sha256(data_json.encode()).digest()[0] % 2 == 0

    def simulate(
        self, truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
    ) -> Any:
        self.simulated_with.append(data)
        return truth if rng.random() < accuracy else not truth


QUESTION = {"question": "Is this a cat?"}
QUALITY = {"min_annotators": 3, "consensus_threshold": 0.66, "enable_expert_review": True}


@pytest.fixture(scope="module")
def yes_no(tmp_path_factory) -> Iterator[YesNo]:
    widget_dir = tmp_path_factory.mktemp("yes_no_widget")
    (widget_dir / "yes_no.js").write_text(WIDGET_JS)
    atype = types.register(YesNo(widget_dir))
    yield atype
    types.unregister("yes_no")


@pytest.fixture(scope="module")
def crowd(tmp_path_factory, yes_no) -> Iterator[LocalPlatform]:
    """A platform of its own with a sandbox workforce (3 annotators of 0.9 accuracy, 1 expert)."""
    db = tmp_path_factory.mktemp("seam") / "cynaps.db"
    workforce = WorkforceSettings(
        annotators=3, experts=1, seconds_per_judgement=0.02, accuracy=(0.9, 0.9), seed=7
    )
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


def test_registry_refuses_incomplete_or_clashing_types(yes_no) -> None:
    assert types.get_type("yes_no") is yes_no
    with pytest.raises(TypeError, match="lacks"):
        types.register(type("Half", (), {"name": "half"})())
    with pytest.raises(ValueError, match="already registered"):
        types.register(YesNo(Path(".")))
    with pytest.raises(KeyError, match="supported: .*yes_no"):
        types.get_type("nope")


def test_a_type_registered_in_the_tests_runs_end_to_end(crowd: LocalPlatform, yes_no) -> None:
    with cynaps.Client(api_key=crowd.create_customer(), base_url=crowd.base_url) as client:
        with pytest.raises(cynaps.errors.ValidationError, match="question"):
            client.projects.create(name="bad", annotation_type="yes_no", labels=["cat"])
        project = client.projects.create(
            name="Cats?", annotation_type="yes_no", labels=QUESTION, quality_settings=QUALITY
        )
        gold = [i % 3 != 0 for i in range(12)]
        tasks = [{"data": {"n": i}, "external_id": f"t{i}", "gold": g} for i, g in enumerate(gold)]
        with pytest.raises(cynaps.errors.CynapsError, match="true or false"):
            project.upload_tasks([{"data": {"n": 99}, "gold": "cat"}])
        assert project.upload_tasks(tasks).created == 12
        # the price is the type's: 12 × (3 × 5.00 + 5.00 expert reserve)
        assert project.calculate_deposit().amount == "240.00"
        project.pay_deposit(payment_method="credits")
        project.start()
        project.wait(timeout=120, poll_interval=0.2, progress=False)

        # the task's data reaches the hooks whose values may point into it
        uploaded = [{"n": i} for i in range(12)]
        assert [d for d in yes_no.simulated_with if d not in uploaded] == []
        assert {d["n"] for d in yes_no.simulated_with} == set(range(12))
        assert {d["n"] for d in yes_no.validated_with if d is not None} == {*range(12), 99}

        wide = project.to_arrow()
        assert wide.schema.field("label").type == pa.bool_()
        assert wide.schema.field("gold").type == pa.bool_()
        assert wide.schema.field("expert_label").type == pa.bool_()
        assert wide.schema.field("yes_share").type == pa.float64()
        assert wide.column_names.index("yes_share") == wide.column_names.index("n_annotations") + 1
        rows = wide.to_pylist()
        assert [r["gold"] for r in rows] == gold
        assert all(r["status"] == "completed" and r["n_annotations"] >= 3 for r in rows)
        right = sum(r["label"] == r["gold"] for r in rows)
        assert right >= 10, rows  # 3 annotators of 0.9 accuracy plus an expert of 0.98
        for r in rows:  # the summary and the decision agree with the votes
            assert r["agreement"] == pytest.approx(max(r["yes_share"], 1 - r["yes_share"]))
            if r["label_source"] == "consensus":
                assert r["label"] == (r["yes_share"] > 0.5)
        long = project.to_arrow("long")
        assert long.schema.field("label").type == pa.bool_()
        assert long.num_rows == sum(r["n_annotations"] for r in rows) + sum(
            r["expert_label"] is not None for r in rows
        )
        frame = project.to_pandas()
        assert frame["label"].tolist() == [r["label"] for r in rows]
        # the type's own client aggregation (a typo fails before downloading)
        with pytest.raises(cynaps.errors.ValidationError, match="unknown method"):
            project.to_pandas(method="dawid_skene")
        again = project.to_pandas(method="share")
        assert again["share_share"].tolist() == pytest.approx([r["yes_share"] for r in rows])
        dataset = project.to_dataset()
        assert dataset.features["label"].dtype == "bool"
        records = project.export(format="json")
        assert records[0]["annotations"][0]["type"] == "yes_no"
        assert records[0]["annotations"][0]["result"]["value"] is rows[0]["label"]
        assert set(records[0]["consensus"]) >= {"yes_share", "agreement", "n_annotations"}


def test_the_widget_is_served_per_type_without_html_sinks(crowd: LocalPlatform, yes_no) -> None:
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(")
    for name in types.REGISTRY:
        r = requests.get(f"{crowd.base_url}/ui/widgets/{name}.js", timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert "export function mount" in r.text and not sinks.search(r.text), name
    assert requests.get(f"{crowd.base_url}/ui/widgets/nope.js", timeout=10).status_code == 404


# -- the widget in a real browser (as tests/test_ui_browser.py) ---------------------------------
CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


def test_annotator_and_expert_answer_with_the_types_own_widget(
    platform: LocalPlatform, yes_no, page
):
    """The annotate page draws the type's widget (question, y/n keys) and sends its bool; the
    review page shows a disputed task's votes and decides it with the same widget."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(platform.base_url) else r.abort(),
    )
    page.set_default_timeout(10_000)
    customer = platform.create_customer("Seam customer")

    def ok(method: str, path: str, key: str = customer, **kw) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def project(min_annotators: int, text: str) -> str:
        quality = {**QUALITY, "min_annotators": min_annotators}
        body = {"name": text, "annotation_type": "yes_no", "labels": QUESTION}
        pid = ok("POST", "/v1/projects", json={**body, "quality_settings": quality})["id"]
        ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": {"text": text}}]})
        ok("POST", f"/v1/projects/{pid}/deposit/quote")
        ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
        ok("POST", f"/v1/projects/{pid}/start")
        return pid

    def sign_in(key: str, path: str) -> None:
        if page.url.startswith("http"):  # another role signed in before: forget its key
            page.evaluate("sessionStorage.clear()")
        page.goto(platform.base_url + path)
        page.fill("#signin-key", key)
        page.click("#signin-form button[type=submit]")

    # a disputed task for the expert: one yes, one no (agreement 0.5 < 0.66)
    disputed = project(2, "a tabby?")
    for name, answer in (("Voter yes", True), ("Voter no", False)):
        key = ok("POST", "/v1/annotators", json={"name": name})["api_key"]
        task = ok("GET", "/v1/annotator/next", key)
        ok("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": answer})
    assert ok("GET", f"/v1/projects/{disputed}/status")["disputed"] == 1
    single = project(1, "a cat")
    annotator = ok("POST", "/v1/annotators", json={"name": "Yes-no annotator"})["api_key"]

    sign_in(annotator, "/ui/")
    expect(page.locator("#labels .yes-no-question")).to_have_text("Is this a cat?")
    expect(page.locator("#labels button.yes-no")).to_have_count(2)
    expect(page.locator("#submit")).to_be_disabled()
    task_id = page.locator("#task-id").inner_text()
    page.keyboard.press("y")
    expect(page.locator("#labels button[data-answer=true]")).to_have_attribute(
        "aria-pressed", "true"
    )
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(f"Saved task {task_id}: true")
    expect(page.locator("#empty")).to_be_visible()
    record = ok("GET", f"/v1/projects/{single}/export")[0]
    assert record["annotations"][0]["result"]["value"] is True
    assert record["consensus"]["yes_share"] == 1.0

    expert = ok("POST", "/v1/annotators", json={"name": "Yes-no expert", "role": "expert"})
    sign_in(expert["api_key"], "/ui/review")
    expect(page.locator("#votes tr")).to_have_count(2)
    expect(page.locator("#agreement")).to_have_text("50%")
    expect(page.locator("#distribution")).to_be_empty()  # the widget draws no summary
    expect(page.locator("#data")).to_contain_text("a tabby?")
    page.keyboard.press("n")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    record = ok("GET", f"/v1/projects/{disputed}/export")[0]
    assert record["annotations"][0]["result"]["value"] is False
    assert record["consensus"]["label_source"] == "expert"
    assert orjson.loads(orjson.dumps(record["consensus"]))["yes_share"] == 0.5
