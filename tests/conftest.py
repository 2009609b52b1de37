"""Shared fixtures: a real platform on 127.0.0.1 (uvicorn thread, real SQLite file).

``platform`` has no sandbox workforce, so tests decide who labels what; ``staffed_platform``
runs the simulated workforce. ``client`` is a fresh customer on ``platform``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import cynaps_data as cynaps
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED_LABELS = ["Electronics", "Clothing", "Home & Garden", "Sports", "Other"]


@pytest.fixture(scope="session")
def platform(tmp_path_factory) -> Iterator[LocalPlatform]:
    db = tmp_path_factory.mktemp("platform") / "cynaps.db"
    with LocalPlatform(db, workforce=False) as running:
        yield running


@pytest.fixture(scope="session")
def staffed_platform(tmp_path_factory) -> Iterator[LocalPlatform]:
    db = tmp_path_factory.mktemp("staffed") / "cynaps.db"
    workforce = WorkforceSettings(annotators=5, experts=1, seconds_per_judgement=0.05)
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


@pytest.fixture
def client(platform: LocalPlatform) -> Iterator[cynaps.Client]:
    with cynaps.Client(
        api_key=platform.create_customer(), base_url=platform.base_url, max_retries=0
    ) as c:
        yield c


@pytest.fixture
def annotator_key(platform: LocalPlatform):
    """A factory of platform-pool annotator keys."""
    return lambda name="Test annotator", role="annotator": platform.create_member(role, name)


def make_project(client: cynaps.Client, **overrides) -> cynaps.Project:
    options = {
        "name": "Test project",
        "annotation_type": "classification",
        "labels": SEED_LABELS,
        "instructions": "Pick one.",
        "quality_settings": {
            "min_annotators": 3,
            "consensus_threshold": 0.66,
            "enable_expert_review": True,
        },
    }
    options.update(overrides)
    return client.projects.create(**options)
