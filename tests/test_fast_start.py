"""Commands that need no model start without torch: `taxonomy check` on a 10k-leaf tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hiercore.taxonomy import Node, Taxonomy
from hiercore.taxonomy.formats import save_taxonomy

ROOT = Path(__file__).resolve().parents[1]


def test_taxonomy_check_imports_neither_torch_nor_pandas(tmp_path):
    nodes = [Node(f"g{g}", f"Genus {g}", "__root__") for g in range(1000)]
    nodes += [Node(f"s{s}", f"species {s}", f"g{s // 10}") for s in range(10_000)]
    path = save_taxonomy(Taxonomy.from_nodes(nodes), tmp_path / "big.csv", "wide_csv")
    argv = [sys.executable, "-X", "importtime", "-m", "hiercore", "taxonomy", "check", str(path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "11000 nodes, 10000 leaves, 2 levels" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "hiercore.taxonomy" in imported  # the listing is real
    assert not imported & {"torch", "open_clip", "gradio", "pandas"}
