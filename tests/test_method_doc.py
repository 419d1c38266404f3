"""Docstrings cite the method contract by section; every cited section must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_cited_section_of_the_method_contract_exists():
    doc = (ROOT / "docs" / "method.md").read_text()
    sections = set(re.findall(r"^##+ §(\d+(?:\.\d+)?)", doc, flags=re.M))
    cited = {}
    for path in [*ROOT.glob("hiercore/**/*.py"), *ROOT.glob("webapp/**/*.py")]:
        for number in re.findall(r"docs/method\.md §(\d+(?:\.\d+)?)", path.read_text()):
            cited.setdefault(number, path.relative_to(ROOT))
    assert cited, "no docstring cites docs/method.md"
    missing = {n: str(p) for n, p in cited.items() if n not in sections}
    assert not missing, missing
    assert "SPEC.md" not in "".join(p.read_text() for p in ROOT.glob("hiercore/**/*.py"))
