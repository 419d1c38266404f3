"""The demo project: created once from a demo folder, then reopened."""

from __future__ import annotations

from PIL import Image

from hiercore.demo import open_demo_project
from hiercore.store import Workspace


def test_demo_project_is_built_once(tmp_path):
    demo = tmp_path / "demo"
    (demo / "images" / "a").mkdir(parents=True)
    (demo / "images" / "b").mkdir(parents=True)
    (demo / "taxonomy.csv").write_text("category,emoji\nAnimals,cat\nAnimals,dog\nFood,apple\n")
    rows = ["path,style,split,category,emoji"]
    for style, shade in (("a", 10), ("b", 200)):
        leaves = (("Animals", "cat"), ("Animals", "dog"), ("Food", "apple"))
        for k, (cat, leaf) in enumerate(leaves):
            Image.new("RGB", (8, 8), (shade, 40 * k, 0)).save(demo / "images" / style / f"{k}.png")
            split = "train" if style == "a" else "val"
            rows.append(f"images/{style}/{k}.png,{style},{split},{cat},{leaf}")
    (demo / "manifest.csv").write_text("\n".join(rows) + "\n")
    seen = []
    with Workspace(tmp_path / "ws") as ws:
        pid = open_demo_project(ws, demo, progress=lambda f, m: seen.append(f))
        df = ws.images(pid)
        assert len(df) == 6
        assert (
            sorted(df["label"])
            == ["Animals / cat"] * 2 + ["Animals / dog"] * 2 + ["Food / apple"] * 2
        )
        assert set(df["name"]) == {f"{s}/{k}.png" for s in "ab" for k in range(3)}
        assert ws.taxonomy(pid).level_names == ["category", "emoji"]
        # the held-out style stays the validation side of every run's split
        splits = {s.path.split("/")[-1]: s.split for s in ws.samples(pid)}
        assert sorted(splits.values()) == ["train"] * 3 + ["val"] * 3
        assert dict(zip(df["name"], df["split"], strict=True))["b/0.png"] == "val"
        assert seen[-1] == 1.0
        assert open_demo_project(ws, demo) == pid
        assert len(ws.list_projects()) == 1
