"""docs/testing.md's example of the HTTP side through Flask's test client, run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.server import ROOT

SECTION = "## The HTTP side with Flask's test client\n"


def test_the_docs_test_client_example_passes(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "testing.md").read_text()
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, text.index(SECTION))
    assert match is not None, "no Python block under the HTTP section"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), "docs/testing.md", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0](tmp_path)
