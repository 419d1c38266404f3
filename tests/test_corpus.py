"""The pretraining corpus builder (hiercore.corpus) on tiny npm tarballs written here.

Every package is a fake: an iconify emoji set with a chars.json, one without (matched by
name), a named icon set with categories, a non-commercial set, an OpenMoji set, and a
slice of emoji-datasource's metadata. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import pytest

from hiercore import corpus
from hiercore.corpus import (
    CORPUS_COLUMNS,
    is_held_out,
    licence_allowed,
    normalise_code,
    plan_corpus,
    read_package,
)

# A filled red square that leaves a margin, and a black stroke in currentColor.
RED_SQUARE = '<path fill="#e00" d="M4 4h8v8H4z"/>'
STROKE = '<path fill="none" stroke="currentColor" stroke-width="2" d="M2 8h12"/>'

DATASOURCE = [
    {
        "unified": "1F426",
        "name": "BIRD",
        "short_names": ["bird"],
        "category": "Animals & Nature",
        "subcategory": "animal-bird",
    },
    {
        "unified": "1F468-200D-1F373",
        "name": "MAN COOK",
        "short_names": ["male-cook"],
        "category": "People & Body",
        "subcategory": "person-role",
    },
    {  # an old emoji: its Unicode name is not its CLDR short name
        "unified": "1F603",
        "name": "SMILING FACE WITH OPEN MOUTH",
        "short_names": ["smiley"],
        "category": "Smileys & Emotion",
        "subcategory": "face-smiling",
    },
    {
        "unified": "2601-FE0F",
        "name": "CLOUD",
        "short_names": ["cloud"],
        "category": "Travel & Places",
        "subcategory": "sky & weather",
    },
]


def write_tgz(path: Path, package: dict, members: dict[str, object]) -> Path:
    """An npm tarball: every member under ``package/``, JSON-encoded."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content in {"package.json": package, **members}.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def iconify_set(prefix: str, licence: str, icons: dict[str, str], **info) -> dict[str, object]:
    return {
        "icons.json": {
            "prefix": prefix,
            "width": 16,
            "height": 16,
            "icons": {name: {"body": body} for name, body in icons.items()},
        },
        "info.json": {"prefix": prefix, "name": prefix, "license": {"spdx": licence}, **info},
    }


@pytest.fixture
def tarballs(tmp_path: Path) -> dict[str, Path]:
    emoji = iconify_set(
        "fxemoji",
        "Apache-2.0",
        {
            "bird": RED_SQUARE,
            "bird-medium-dark": RED_SQUARE,
            "man-cook": RED_SQUARE,
            "cloud": STROKE,
            "grinning-face-with-big-eyes": RED_SQUARE,
        },
        category="Emoji",
    )
    emoji["chars.json"] = {
        "1f426": "bird",
        "1f426-1f3fe": "bird-medium-dark",
        "1f468-200d-1f373": "man-cook",
        "2601-fe0f": "cloud",
        "1f603": "grinning-face-with-big-eyes",
    }
    # No chars.json content: matched by name, skin tones recognised by name.
    unmapped = iconify_set(
        "noto-v1",
        "Apache-2.0",
        {"bird": RED_SQUARE, "man-cook-dark-skin-tone": RED_SQUARE, "sparkle-wand": STROKE},
        category="Emoji",
    )
    unmapped["chars.json"] = {}
    unmapped["metadata.json"] = {"categories": {"Magic": ["sparkle-wand"]}}
    icons = iconify_set(
        "tinyicons",
        "MIT",
        {"wolf-head": STROKE, "wolf-head-outline": STROKE, "acme-logo": RED_SQUARE},
    )
    icons["metadata.json"] = {"categories": {"Animals": ["wolf-head"], "Brand": ["acme-logo"]}}
    openmoji = iconify_set(
        "openmoji", "CC-BY-SA-4.0", {"bird": RED_SQUARE, "heldoutword": RED_SQUARE}
    )
    openmoji["chars.json"] = {"1f426": "bird", "1f9a9": "heldoutword"}
    nc = iconify_set("ncicons", "CC-BY-NC-4.0", {"tool": STROKE})
    # A set whose npm name looks harmless but whose icon set is OpenMoji.
    disguised = iconify_set("om-copy", "MIT", {"heldoutword": RED_SQUARE}, name="OpenMoji")
    return {
        "datasource": write_tgz(
            tmp_path / "ds.tgz",
            {"name": "emoji-datasource-twitter", "version": "16.0.0", "license": "MIT"},
            {"emoji.json": DATASOURCE},
        ),
        "emoji": write_tgz(
            tmp_path / "fx.tgz",
            {"name": "@iconify-json/fxemoji", "version": "1.0.0", "license": "Apache-2.0"},
            emoji,
        ),
        "unmapped": write_tgz(
            tmp_path / "nv1.tgz",
            {"name": "@iconify-json/noto-v1", "version": "1.0.0", "license": "Apache-2.0"},
            unmapped,
        ),
        "icons": write_tgz(
            tmp_path / "ti.tgz",
            {"name": "@iconify-json/tinyicons", "version": "1.0.0", "license": "MIT"},
            icons,
        ),
        "openmoji": write_tgz(
            tmp_path / "om.tgz",
            {"name": "@iconify-json/openmoji", "version": "1.0.0", "license": "CC-BY-SA-4.0"},
            openmoji,
        ),
        "nc": write_tgz(
            tmp_path / "nc.tgz",
            {"name": "@iconify-json/ncicons", "version": "1.0.0", "license": "MIT"},
            nc,
        ),
        "disguised": write_tgz(
            tmp_path / "dis.tgz",
            {"name": "@iconify-json/om-copy", "version": "1.0.0", "license": "MIT"},
            disguised,
        ),
    }


@pytest.fixture
def demo_manifest(tmp_path: Path) -> Path:
    """A demo manifest in which the bird is a leaf (the demo's name and tree win)."""
    path = tmp_path / "manifest.csv"
    path.write_text(
        "path,style,split,category,subcategory,emoji\n"
        "images/twemoji/1F426.png,twemoji,train,Animals & Nature,animal-bird,bird\n"
        "images/openmoji/1F426.png,openmoji,val,Animals & Nature,animal-bird,bird\n",
        encoding="utf-8",
    )
    return path


def plan(tarballs: dict[str, Path], demo_manifest: Path):
    packages = [read_package(p) for p in tarballs.values()]
    return plan_corpus(packages, corpus.demo_leaves(demo_manifest))


@pytest.mark.parametrize(
    "spdx",
    ["MIT", "Apache-2.0", "ISC", "OFL-1.1", "CC-BY-4.0", "CC-BY-3.0", "CC-BY-SA-4.0", "CC0-1.0"],
)
def test_permissive_licences_are_allowed(spdx: str) -> None:
    assert licence_allowed(spdx)


@pytest.mark.parametrize(
    "spdx",
    [
        *("CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC-BY-ND-4.0"),
        *("GPL-3.0", "LGPL-2.1", "AGPL-3.0"),
        *("UNLICENSED", "", "Proprietary", "custom"),
    ],
)
def test_restrictive_or_unknown_licences_are_refused(spdx: str) -> None:
    assert not licence_allowed(spdx)


def test_held_out_style_is_recognised_in_any_spelling() -> None:
    assert is_held_out("openmoji")
    assert is_held_out("@iconify-json/openmoji")
    assert is_held_out("", "Open Moji")
    assert not is_held_out("@iconify-json/noto", "noto", "Noto Emoji")


def test_code_points_are_normalised() -> None:
    assert normalise_code("1F426") == "1f426"
    assert normalise_code("2601-FE0F") == "2601"
    assert normalise_code("1F468-200D-1F373") == "1f468-200d-1f373"
    assert normalise_code("00A9") == "00a9"


def test_iconify_icons_become_standalone_svgs() -> None:
    icons = {
        "prefix": "x",
        "width": 24,
        "height": 24,
        "icons": {
            "a": {"body": STROKE},
            "b": {"body": STROKE, "width": 32, "left": 2},
            "gone": {"body": STROKE, "hidden": True},
            "turned": {"body": STROKE, "rotate": 1},
        },
        "aliases": {"c": {"parent": "a"}},
    }
    svgs = dict(corpus.iconify_icons(icons))
    assert list(svgs) == ["a", "b"]
    assert 'viewBox="0 0 24 24"' in svgs["a"]
    assert 'viewBox="2 0 32 24"' in svgs["b"]
    assert "currentColor" not in svgs["a"] and 'stroke="#000"' in svgs["a"]


def test_plan_maps_code_points_and_captions(tarballs, demo_manifest) -> None:
    items, _ = plan(tarballs, demo_manifest)
    by_style = {}
    for item in items:
        by_style.setdefault(item.style, {})[item.codepoints or item.name] = item
    fx = by_style["fxemoji"]
    assert set(fx) == {"1f426", "1f468-200d-1f373", "2601", "1f603"}  # no skin tone
    bird = fx["1f426"]
    assert (bird.name, bird.subcategory, bird.category) == (
        "bird",
        "animal-bird",
        "Animals & Nature",
    )
    cook = fx["1f468-200d-1f373"]
    assert (cook.name, cook.subcategory, cook.category) == (
        "man cook",
        "person-role",
        "People & Body",
    )
    assert "male cook" in cook.keywords
    assert cook.path == "images/fxemoji/1f468-200d-1f373.png"
    assert cook.package == "@iconify-json/fxemoji" and cook.license == "Apache-2.0"
    # The CLDR short name, not the older Unicode character name, which becomes a keyword.
    grin = fx["1f603"]
    assert grin.name == "grinning face with big eyes"
    assert {"smiling face with open mouth", "smiley"} <= set(grin.keywords)
    assert (grin.subcategory, grin.category) == ("face-smiling", "Smileys & Emotion")


def test_sets_without_chars_are_matched_by_name(tarballs, demo_manifest) -> None:
    items, _ = plan(tarballs, demo_manifest)
    noto_v1 = {i.name: i for i in items if i.style == "noto-v1"}
    assert set(noto_v1) == {"bird", "sparkle wand"}  # the dark-skinned cook is dropped
    assert noto_v1["bird"].codepoints == "1f426"
    wand = noto_v1["sparkle wand"]
    assert (wand.codepoints, wand.category, wand.kind) == ("", "Magic", "emoji")


def test_icon_sets_keep_named_icons_without_variants_or_logos(tarballs, demo_manifest) -> None:
    items, _ = plan(tarballs, demo_manifest)
    icons = [i for i in items if i.kind == "icon"]
    assert [(i.style, i.name, i.category, i.codepoints) for i in icons] == [
        ("tinyicons", "wolf head", "Animals", "")
    ]
    assert corpus.spread_evenly(list(range(10)), 4) == [0, 2, 5, 7]


def test_drawing_variants_are_dropped_only_beside_their_base() -> None:
    names = ["bell", "bell-outline", "bell-off", "lamp-outline", "van", "van-24px"]
    names += ["van-outline-24px", "kite-24px", "kite-outline-24px"]
    assert corpus.drop_variants(names) == ["bell", "bell-off", "lamp-outline", "van", "kite-24px"]


def test_held_out_and_unlicensed_packages_contribute_nothing(tarballs, demo_manifest) -> None:
    items, sources = plan(tarballs, demo_manifest)
    status = {s["package"]: s["status"] for s in sources}
    assert status["@iconify-json/openmoji"].startswith("refused: held out")
    assert status["@iconify-json/om-copy"].startswith("refused: held out")
    assert "CC-BY-NC-4.0" in status["@iconify-json/ncicons"]
    assert status["@iconify-json/fxemoji"] == "used"
    assert not [i for i in items if "openmoji" in i.package or i.style in ("openmoji", "om-copy")]
    assert not [i for i in items if i.package == "@iconify-json/ncicons"]
    # No caption either: the word only OpenMoji's data carries appears nowhere.
    assert not [i for i in items if "heldoutword" in "|".join(i.row())]


def test_build_writes_white_64px_pngs_and_the_contract_csvs(
    tarballs, demo_manifest, tmp_path: Path
) -> None:
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError):  # the package, or the cairo library it loads, is absent
        pytest.skip("cairosvg cannot load the cairo library")
    from PIL import Image

    out = tmp_path / "corpus"
    logged: list[str] = []
    rows = corpus.build_corpus(out, tarballs.values(), demo_manifest, workers=1, log=logged.append)
    with (out / "corpus.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CORPUS_COLUMNS
        table = list(reader)
    assert len(table) == len(rows) == 7
    assert {r["style"] for r in table} == {"fxemoji", "noto-v1", "tinyicons"}
    assert "heldoutword" not in (out / "corpus.csv").read_text(encoding="utf-8")
    assert not list(out.glob("images/openmoji*"))
    for row in table:
        image = Image.open(out / row["path"])
        assert (image.mode, image.size) == ("RGB", (64, 64))
    square = Image.open(out / "images/fxemoji/1f426.png")
    assert square.getpixel((0, 0)) == (255, 255, 255)  # transparency is white
    red, green, blue = square.getpixel((32, 32))
    assert red > 200 and green < 60 and blue < 60
    stroke = Image.open(out / "images/tinyicons/wolf-head.png")
    assert min(stroke.getpixel((32, 32))) < 60  # currentColor drawn black
    with (out / "sources.csv").open(newline="", encoding="utf-8") as handle:
        sources = {r["package"]: r for r in csv.DictReader(handle)}
    assert sources["@iconify-json/fxemoji"]["rows"] == "4"
    assert sources["@iconify-json/openmoji"]["rows"] == "0"
    assert sources["emoji-datasource-twitter"]["kind"] == "metadata"


def test_cli_names_missing_tarballs(tmp_path: Path, capsys) -> None:
    from hiercore.cli import main

    code = main(
        ["pretrain-default", "--build-corpus", str(tmp_path / "c"), "--packages-dir", str(tmp_path)]
    )
    assert code == 2
    assert "iconify-json-mdi-1.2.3.tgz" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_cli_builds_the_corpus_from_a_packages_folder(tarballs, tmp_path: Path, monkeypatch):
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError):
        pytest.skip("cairosvg cannot load the cairo library")
    from hiercore.cli import main

    packages = tmp_path / "packages"
    packages.mkdir()
    specs = ("emoji-datasource-twitter@16.0.0", "@iconify-json/fxemoji@1.0.0")
    for key, spec in zip(("datasource", "emoji"), specs, strict=True):
        tarballs[key].rename(packages / corpus.tarball_name(spec))
    monkeypatch.setattr(corpus, "DEFAULT_PACKAGES", specs)
    out = tmp_path / "built"
    assert (
        main(["pretrain-default", "--build-corpus", str(out), "--packages-dir", str(packages)]) == 0
    )
    with (out / "corpus.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["style"] for r in rows} == {"fxemoji"} and len(rows) == 4
    assert (out / "sources.csv").is_file()
