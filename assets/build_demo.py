"""Build HierTune's demo dataset: the Unicode emoji taxonomy in nine art styles.

The tree is Unicode's own emoji ordering, category -> subcategory -> emoji, as
carried by the emoji-datasource metadata (iamcal/emoji-data). Leaves are named
by their CLDR short name (OpenMoji's ``annotation`` field, lower-cased); every
subcategory and category also gets a short plain-English description (the
tables below), which prompt templates can use through ``{description}``.

Every kept emoji is drawn in up to nine styles. Training styles: Twemoji and
Noto Color Emoji (PNG, from the emoji-datasource packages) and six iconify
emoji sets (SVG: Fluent colour, flat and high-contrast, EmojiOne, EmojiOne v1,
Noto v1), rendered with `hiercore.corpus`, the same code that builds the
pretraining corpus. OpenMoji (SVG) is the held-out validation style and appears
nowhere else: not in the training styles and not in the captions.

This script is not run in CI; only its output under ``assets/demo/`` is
shipped. Re-run it with the npm tarballs (``NPM_PACKAGES``, any order)::

    npm pack emoji-datasource-twitter@16.0.0 ...   # every entry of NPM_PACKAGES
    python3 assets/build_demo.py *.tgz

or with no paths, in which case it runs that ``npm pack`` itself in a
temporary folder. Needs Pillow and CairoSVG (which needs the system cairo
library, Debian's libcairo2). The output is a pure function of the tarballs
and the constants below.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from hiercore.corpus import (  # noqa: E402
    EMOJI_STYLES,
    Package,
    flatten_on_white,
    normalise_code,
    npm_pack,
    plan_corpus,
    rasterise_svg,
    read_package,
    spread_evenly,
    write_csv,
)

TWITTER, GOOGLE, OPENMOJI = "emoji-datasource-twitter", "emoji-datasource-google", "openmoji"
NPM_PACKAGES = (
    f"{TWITTER}@16.0.0",
    f"{GOOGLE}@16.0.0",
    f"{OPENMOJI}@17.0.0",
    "@iconify-json/fluent-emoji@1.2.7",
    "@iconify-json/fluent-emoji-flat@1.2.6",
    "@iconify-json/fluent-emoji-high-contrast@1.2.6",
    "@iconify-json/emojione@1.2.3",
    "@iconify-json/emojione-v1@1.2.3",
    "@iconify-json/noto-v1@1.2.5",
)
# Flags are ~270 near-identical rectangles told apart by tiny details, Symbols
# are mostly text-like glyphs (letters, keycaps, arrows, zodiac signs) that the
# three styles draw as the same coloured box, and Component holds only skin
# tone swatches and hair pieces. None of them is a picture of a thing.
KEPT_CATEGORIES = (
    "Smileys & Emotion",
    "People & Body",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
)
# A subcategory with fewer emoji than this gives a leaf level with (nearly)
# nothing to choose between, so it is left out.
MIN_PER_SUBCATEGORY = 4
# Cap per subcategory keeps the leaf count at a size a small CLIP can learn on
# a CPU; the kept emoji are spread evenly over Unicode's sort order so that a
# long subcategory (mammals, ground transport) keeps its variety.
MAX_PER_SUBCATEGORY = 10
# SVG styles are rendered at this multiple of the 64 px frame, cropped to the
# glyph (filling 97% of the frame, like Twemoji and Noto) and downsampled, so
# thin outlines keep their weight (`hiercore.corpus.rasterise_svg`).
RENDER_SCALE = 4
# The iconify emoji sets drawn as extra training styles, by style id
# (`hiercore.corpus.EMOJI_STYLES`); a set may lack a few leaves.
ICONIFY_STYLES = ("fluent-color", "fluent-flat", "fluent-hc", "emojione", "emojione-v1", "noto-v1")
STYLES = ("twemoji", "noto", *ICONIFY_STYLES, "openmoji")
SPLIT_OF_STYLE = {style: "val" if style == "openmoji" else "train" for style in STYLES}
RANKS = ("category", "subcategory", "emoji")

# Short descriptions of the inner nodes, in the words a caption would use.
CATEGORY_DESCRIPTIONS = {
    "Smileys & Emotion": "smiley faces and feelings",
    "People & Body": "people and body parts",
    "Animals & Nature": "animals and plants",
    "Food & Drink": "food and drink",
    "Travel & Places": "places, vehicles, time and weather",
    "Activities": "celebrations, sports and games",
    "Objects": "everyday objects",
}
SUBCATEGORY_DESCRIPTIONS = {
    "face-smiling": "smiling faces",
    "face-affection": "faces showing love",
    "face-tongue": "faces sticking out the tongue",
    "face-hand": "faces with a hand",
    "face-neutral-skeptical": "blank and doubtful faces",
    "face-sleepy": "sleepy faces",
    "face-unwell": "sick faces",
    "face-concerned": "worried and sad faces",
    "face-negative": "angry faces",
    "face-costume": "monster and costume faces",
    "cat-face": "cat faces",
    "heart": "hearts",
    "emotion": "symbols of feelings",
    "hand-fingers-open": "open hands",
    "hand-fingers-partial": "hands showing a few fingers",
    "hand-single-finger": "pointing hands",
    "hand-fingers-closed": "fists and thumbs",
    "hands": "pairs of hands",
    "body-parts": "body parts",
    "person": "people",
    "person-gesture": "people making gestures",
    "person-role": "people at work",
    "person-fantasy": "fairy-tale characters",
    "person-activity": "people doing everyday things",
    "person-sport": "people playing sports",
    "family": "couples and families",
    "person-symbol": "silhouettes of people",
    "animal-mammal": "mammals",
    "animal-bird": "birds",
    "animal-reptile": "reptiles",
    "animal-marine": "sea animals",
    "animal-bug": "insects and bugs",
    "plant-flower": "flowers",
    "plant-other": "plants and trees",
    "food-fruit": "fruit",
    "food-vegetable": "vegetables",
    "food-prepared": "cooked food",
    "food-asian": "asian food",
    "food-sweet": "sweets and desserts",
    "drink": "drinks",
    "dishware": "cutlery and dishes",
    "place-map": "globes and maps",
    "place-geographic": "mountains and landscapes",
    "place-building": "buildings",
    "place-religious": "places of worship",
    "place-other": "city and outdoor scenes",
    "transport-ground": "trains, cars and bicycles",
    "transport-water": "boats",
    "transport-air": "aircraft",
    "time": "clocks and timers",
    "sky & weather": "sky and weather",
    "event": "celebrations",
    "award-medal": "medals and trophies",
    "sport": "sports balls and gear",
    "game": "games and toys",
    "arts & crafts": "arts and crafts",
    "clothing": "clothes",
    "sound": "speakers and bells",
    "music": "musical notes and microphones",
    "musical-instrument": "musical instruments",
    "phone": "phones",
    "computer": "computers and electronics",
    "light & video": "cameras, film and lights",
    "book-paper": "books and paper",
    "money": "coins and banknotes",
    "mail": "mail and envelopes",
    "writing": "pens and pencils",
    "office": "office supplies",
    "lock": "locks and keys",
    "tool": "tools and weapons",
    "science": "science equipment",
    "medical": "medicine",
    "household": "household things",
    "other-object": "other objects",
}

VARIATION_SELECTOR = "-FE0F"
ZWJ = "200D"
# Female sign, male sign, and the rightwards arrow of Emoji 15.1's
# "facing right" direction sequences.
VARIANT_SUFFIXES = ("2640", "2642", "27A1")
MAN, WOMAN, PERSON = "1F468", "1F469", "1F9D1"


@dataclass
class Emoji:
    """One kept leaf with everything the output files need."""

    unified: str
    category: str
    subcategory: str
    name: str
    sort_order: int
    image: str
    openmoji_hexcode: str
    keywords: list[str] = field(default_factory=list)


def strip_variation(code: str) -> str:
    """Drop emoji presentation selectors so datasource and OpenMoji codes compare equal."""
    return code.upper().replace(VARIATION_SELECTOR, "")


def variant_base(code: str, known: set[str]) -> str | None:
    """The base emoji that ``code`` is a gender or direction variant of, if any.

    Unicode makes such variants in two ways: a ZWJ sequence ending in the
    female/male sign or a rightwards arrow ("woman surfing" = surfer + ZWJ +
    female sign; "person running facing right" = runner + ZWJ + arrow), and a
    man/woman base joined to a role ("man health worker" = man + ZWJ + staff
    of aesculapius, beside "health worker" = person + ZWJ + the same). Skin
    tones need no rule: the datasource keeps them inside their base entry.
    """
    parts = code.split("-")
    if len(parts) >= 3 and parts[-2] == ZWJ and parts[-1] in VARIANT_SUFFIXES:
        base = "-".join(parts[:-2])
        if base in known:
            return base
    if len(parts) >= 3 and parts[0] in (MAN, WOMAN) and parts[1] == ZWJ:
        base = "-".join([PERSON, *parts[1:]])
        if base in known:
            return base
    return None


def clean_name(annotation: str) -> str:
    """A leaf name: the CLDR short name, lower-case, with a plain apostrophe."""
    return annotation.replace("\u2019", "'").strip().lower()


def read_json_member(archive: tarfile.TarFile, name: str) -> list:
    handle = archive.extractfile(name)
    if handle is None:
        raise SystemExit(f"{archive.name}: member {name} is missing")
    return json.load(handle)


def select_emoji(datasource: list[dict], openmoji: list[dict]) -> list[Emoji]:
    """Apply the documented selection rules and return the leaves in sort order."""
    openmoji_by_code = {}
    for entry in openmoji:
        # OpenMoji lists skin-tone variants separately; only base glyphs are wanted.
        if entry.get("skintone"):
            continue
        openmoji_by_code[strip_variation(entry["hexcode"])] = entry
    known = {strip_variation(e["unified"]) for e in datasource}

    by_subcategory: dict[tuple[str, str], list[Emoji]] = {}
    for entry in sorted(datasource, key=lambda e: e["sort_order"]):
        if entry["category"] not in KEPT_CATEGORIES:
            continue
        code = strip_variation(entry["unified"])
        if variant_base(code, known) is not None:
            continue
        art = openmoji_by_code.get(code)
        if art is None or not (entry["has_img_twitter"] and entry["has_img_google"]):
            continue
        # OpenMoji's tags are left out: nothing read from the held-out style's
        # records may reach a training caption. The leaf name (CLDR's) stays.
        keywords = [clean_name(art["annotation"]), clean_name(entry["name"])]
        keywords += [n.replace("_", " ").replace("-", " ") for n in entry["short_names"]]
        unique = list(dict.fromkeys(k.lower() for k in keywords if k.strip()))
        leaf = Emoji(
            unified=entry["unified"],
            category=entry["category"],
            subcategory=entry["subcategory"],
            name=clean_name(art["annotation"]),
            sort_order=entry["sort_order"],
            image=entry["image"],
            openmoji_hexcode=art["hexcode"],
            keywords=unique,
        )
        by_subcategory.setdefault((leaf.category, leaf.subcategory), []).append(leaf)

    kept: list[Emoji] = []
    for (category, subcategory), leaves in by_subcategory.items():
        if len(leaves) < MIN_PER_SUBCATEGORY:
            continue
        chosen = spread_evenly(leaves, MAX_PER_SUBCATEGORY)
        names = [leaf.name for leaf in chosen]
        if len(set(names)) != len(names):
            raise SystemExit(f"duplicate leaf names under {category} / {subcategory}: {names}")
        kept.extend(chosen)
    kept.sort(key=lambda leaf: leaf.sort_order)
    return kept


def describe(leaves: list[Emoji]) -> dict[str, str]:
    """Every kept category and subcategory with its description; refuse a missing one."""
    out = {}
    for leaf in leaves:
        for name, table in (
            (leaf.category, CATEGORY_DESCRIPTIONS),
            (leaf.subcategory, SUBCATEGORY_DESCRIPTIONS),
        ):
            if name not in table:
                raise SystemExit(f"{name!r} has no description in build_demo.py")
            out[name] = table[name]
    return out


def taxonomy_rows(leaves: list[Emoji]) -> list[tuple[str, str, str, str]]:
    """Wide-CSV rows: each category and subcategory once with its description, then its leaves.

    hiercore's wide CSV reader takes a row that stops above the last rank and carries a
    description as that inner node's description.
    """
    descriptions = describe(leaves)
    rows, seen = [], set()
    for leaf in leaves:
        for path in ((leaf.category,), (leaf.category, leaf.subcategory)):
            if path not in seen:
                seen.add(path)
                cells = (*path, "", "")[:3]
                rows.append((*cells, descriptions[path[-1]]))
        rows.append((leaf.category, leaf.subcategory, leaf.name, ""))
    return rows


def save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_name(tgz: Path) -> str:
    with tarfile.open(tgz) as archive:
        return json.load(archive.extractfile("package/package.json"))["name"]


def iconify_art(packages: list[Package]) -> dict[tuple[str, str], str]:
    """(style, normalised code points) -> SVG for the iconify emoji styles of the demo.

    The same mapping (chars.json, else CLDR icon names) as the pretraining corpus.
    """
    items, sources = plan_corpus(packages, {})
    for record in sources:
        if record["status"] != "used":
            raise SystemExit(f"{record['package']}: {record['status']}")
    return {(i.style, i.codepoints): i.svg for i in items if i.codepoints}


def render(svg: str | bytes, what: str) -> Image.Image:
    image = rasterise_svg(svg, scale=RENDER_SCALE)
    if image is None:
        raise SystemExit(f"{what} rendered as an empty image")
    return image


def build(tarballs: dict[str, Path], out: Path) -> tuple[list[Emoji], dict[str, int]]:
    """Write images, taxonomy.csv, manifest.csv and captions.csv under ``out``.

    ``tarballs`` maps npm package names to their .tgz. Returns the leaves and the
    number of images of each style.
    """
    iconify = [read_package(tarballs[name]) for name in tarballs if name.startswith("@iconify")]
    art = iconify_art([read_package(tarballs[TWITTER]), *iconify])
    wanted = {EMOJI_STYLES[p.prefix] for p in iconify}
    if wanted != set(ICONIFY_STYLES):
        raise SystemExit(f"the iconify tarballs give styles {sorted(wanted)}, not {ICONIFY_STYLES}")
    with (
        tarfile.open(tarballs[TWITTER]) as tw,
        tarfile.open(tarballs[GOOGLE]) as go,
        tarfile.open(tarballs[OPENMOJI]) as om,
    ):
        datasource = read_json_member(tw, "package/emoji.json")
        leaves = select_emoji(datasource, read_json_member(om, "package/data/openmoji.json"))

        if out.exists():
            shutil.rmtree(out)
        manifest = []
        counts = dict.fromkeys(STYLES, 0)
        # A few sets draw two leaves alike (Fluent high contrast: angry and enraged
        # face); such a drawing labels neither, so it is left out for both.
        drawn = Counter(
            (style, art[(style, normalise_code(leaf.unified))])
            for leaf in leaves
            for style in ICONIFY_STYLES
            if (style, normalise_code(leaf.unified)) in art
        )
        for leaf in leaves:
            code = normalise_code(leaf.unified)
            svg = om.extractfile(f"package/color/svg/{leaf.openmoji_hexcode}.svg").read()
            sources = {
                "twemoji": flatten_on_white(
                    Image.open(tw.extractfile(f"package/img/twitter/64/{leaf.image}"))
                ),
                "noto": flatten_on_white(
                    Image.open(go.extractfile(f"package/img/google/64/{leaf.image}"))
                ),
                "openmoji": render(svg, f"OpenMoji {leaf.openmoji_hexcode}"),
            }
            for style in ICONIFY_STYLES:
                if (style, code) not in art or drawn[(style, art[(style, code)])] > 1:
                    continue
                try:
                    sources[style] = render(art[(style, code)], f"{style} {code}")
                except MemoryError:  # cairo gives up on a few Fluent gradients
                    print(f"skipped {style} {leaf.unified} ({leaf.name}): cairo failed")
            for style in STYLES:
                if style not in sources:
                    continue
                relative = f"images/{style}/{leaf.unified}.png"
                save_png(sources[style], out / relative)
                labels = (leaf.category, leaf.subcategory, leaf.name)
                manifest.append((relative, style, SPLIT_OF_STYLE[style], *labels))
                counts[style] += 1

    write_csv(out / "taxonomy.csv", (*RANKS, "description"), taxonomy_rows(leaves))
    write_csv(out / "manifest.csv", ("path", "style", "split", *RANKS), manifest)
    write_csv(
        out / "captions.csv",
        ("unified", "emoji", "category", "subcategory", "keywords"),
        [(e.unified, e.name, e.category, e.subcategory, "|".join(e.keywords)) for e in leaves],
    )
    return leaves, counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tarballs", nargs="*", type=Path, help="the NPM_PACKAGES .tgz files")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "demo")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        paths = args.tarballs or npm_pack(Path(scratch), NPM_PACKAGES)
        tarballs = {package_name(p): p for p in paths}
        needed = {spec.rpartition("@")[0] for spec in NPM_PACKAGES}
        if set(tarballs) != needed:
            parser.error(f"give the tarballs of {', '.join(sorted(needed))}, or none")
        leaves, counts = build(tarballs, out=args.out)
        for path in sorted(paths, key=lambda p: p.name):
            print(f"{sha256(path)}  {path.name}")

    subcategories = {(e.category, e.subcategory) for e in leaves}
    categories = {e.category for e in leaves}
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(
        f"{len(categories)} categories, {len(subcategories)} subcategories, "
        f"{len(leaves)} emoji, {sum(counts.values())} images, {size / 1e6:.2f} MB in {args.out}"
    )
    for style, n in counts.items():
        folder = args.out / "images" / style
        style_size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"  {style} ({SPLIT_OF_STYLE[style]}): {n}/{len(leaves)} emoji, {style_size:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
