"""The README's example runs as written (against the embedded platform)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    block = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    namespace: dict = {}
    try:
        exec(compile(block, "README.md", "exec"), namespace)
        frame, ds, records = namespace["frame"], namespace["ds"], namespace["records"]
        labels = namespace["project"].labels
        assert list(frame["title"]) == ["USB-C cable", "Wool socks"]
        assert str(frame["added"].dtype).startswith("datetime64")
        assert list(frame["label"].cat.categories) == labels
        assert ds.features["label"].names == labels
        assert [r["external_id"] for r in records] == ["SKU001", "SKU002"]
        assert all(r["annotations"][0]["result"]["value"] in labels for r in records)
    finally:
        if "client" in namespace:
            namespace["client"].close()
