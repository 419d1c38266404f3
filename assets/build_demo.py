"""Build HierTune's demo dataset: the Unicode emoji taxonomy in three art styles.

The tree is Unicode's own emoji ordering, category -> subcategory -> emoji, as
carried by the emoji-datasource metadata (iamcal/emoji-data). Leaves are named
by their CLDR short name (OpenMoji's ``annotation`` field, lower-cased). Every
kept emoji is drawn three times: Twemoji and Noto Color Emoji (PNG, from the
emoji-datasource packages) are the training styles, OpenMoji (SVG, rendered
here with CairoSVG) is the held-out validation style.

This script is not run in CI; only its output under ``assets/demo/`` is
shipped. Re-run it with the three npm tarballs::

    npm pack emoji-datasource-twitter@16.0.0 emoji-datasource-google@16.0.0 openmoji@17.0.0
    python3 assets/build_demo.py emoji-datasource-twitter-16.0.0.tgz \\
        emoji-datasource-google-16.0.0.tgz openmoji-17.0.0.tgz

or with no paths, in which case it runs that ``npm pack`` itself in a
temporary folder. Needs Pillow and CairoSVG (which needs the system cairo
library, Debian's libcairo2). The output is a pure function of the tarballs
and the constants below.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

NPM_PACKAGES = (
    "emoji-datasource-twitter@16.0.0",
    "emoji-datasource-google@16.0.0",
    "openmoji@17.0.0",
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
IMAGE_SIZE = 64
# OpenMoji is rendered at this multiple of IMAGE_SIZE, then cropped and
# downsampled, so its thin outlines keep their weight.
RENDER_SCALE = 4
# Share of the frame the longer side of an OpenMoji glyph fills after
# cropping, the median of Twemoji and Noto at 64 px (measured: 0.97-1.0).
OPENMOJI_FILL = 0.97
# Alpha at or below this counts as empty when finding a glyph's extent, so
# faint antialiasing fringes do not widen the crop.
ALPHA_FLOOR = 16
STYLES = ("twemoji", "noto", "openmoji")
SPLIT_OF_STYLE = {"twemoji": "train", "noto": "train", "openmoji": "val"}
RANKS = ("category", "subcategory", "emoji")

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


def spread_evenly(items: list, cap: int) -> list:
    """At most ``cap`` items, taken at evenly spaced positions, order kept."""
    if len(items) <= cap:
        return list(items)
    step = len(items) / cap
    return [items[int(i * step)] for i in range(cap)]


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
        keywords = [clean_name(art["annotation"])]
        keywords += [n.replace("_", " ").replace("-", " ") for n in entry["short_names"]]
        keywords += [t.strip() for t in art.get("tags", "").split(",")]
        keywords += [t.strip() for t in art.get("openmoji_tags", "").split(",")]
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


def flatten_on_white(image: Image.Image) -> Image.Image:
    """RGB at IMAGE_SIZE: transparency composited onto white, then resized."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return rgb


def render_svg(svg: bytes) -> Image.Image:
    """An OpenMoji SVG as RGBA, framed like the Twemoji and Noto bitmaps.

    OpenMoji draws inside a 72-unit canvas with a wide margin (the median
    glyph spans ~70% of it), while Twemoji and Noto fill their 64 px frame on
    the longer side. Cropping each glyph to a square around its drawn pixels
    removes that scale difference, so the held-out style differs in drawing,
    not in framing.
    """
    import cairosvg  # imported here so the rest of the module loads without cairo

    side = IMAGE_SIZE * RENDER_SCALE
    png = cairosvg.svg2png(bytestring=svg, output_width=side, output_height=side)
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    box = image.getchannel("A").point(lambda a: 255 if a > ALPHA_FLOOR else 0).getbbox()
    if box is None:
        raise SystemExit("an OpenMoji SVG rendered as an empty image")
    left, top, right, bottom = box
    half = max(right - left, bottom - top) / OPENMOJI_FILL / 2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    # crop() pads with transparent pixels where the square leaves the canvas.
    return image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))


def save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)


def npm_pack(folder: Path) -> list[Path]:
    # npm lists every packed file on stderr; keep it for when the pack fails.
    done = subprocess.run(
        ["npm", "pack", "--pack-destination", str(folder), *NPM_PACKAGES],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"npm pack failed:\n{done.stderr[-2000:]}")
    names = [p.replace("@", "-") + ".tgz" for p in NPM_PACKAGES]
    return [folder / name for name in names]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def build(twitter: Path, google: Path, openmoji_tgz: Path, out: Path) -> list[Emoji]:
    """Write images, taxonomy.csv, manifest.csv and captions.csv under ``out``."""
    with (
        tarfile.open(twitter) as tw,
        tarfile.open(google) as go,
        tarfile.open(openmoji_tgz) as om,
    ):
        datasource = read_json_member(tw, "package/emoji.json")
        leaves = select_emoji(datasource, read_json_member(om, "package/data/openmoji.json"))

        if out.exists():
            shutil.rmtree(out)
        manifest = []
        for leaf in leaves:
            svg = om.extractfile(f"package/color/svg/{leaf.openmoji_hexcode}.svg")
            sources = {
                "twemoji": Image.open(tw.extractfile(f"package/img/twitter/64/{leaf.image}")),
                "noto": Image.open(go.extractfile(f"package/img/google/64/{leaf.image}")),
                "openmoji": render_svg(svg.read()),
            }
            for style in STYLES:
                relative = f"images/{style}/{leaf.unified}.png"
                save_png(flatten_on_white(sources[style]), out / relative)
                labels = (leaf.category, leaf.subcategory, leaf.name)
                manifest.append((relative, style, SPLIT_OF_STYLE[style], *labels))

    write_csv(out / "taxonomy.csv", RANKS, [(e.category, e.subcategory, e.name) for e in leaves])
    write_csv(out / "manifest.csv", ("path", "style", "split", *RANKS), manifest)
    write_csv(
        out / "captions.csv",
        ("unified", "emoji", "category", "subcategory", "keywords"),
        [(e.unified, e.name, e.category, e.subcategory, "|".join(e.keywords)) for e in leaves],
    )
    return leaves


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tarballs", nargs="*", type=Path, help="twitter, google, openmoji .tgz")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "demo")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        tarballs = args.tarballs or npm_pack(Path(scratch))
        if len(tarballs) != 3:
            parser.error("give the twitter, google and openmoji tarballs, or none")
        leaves = build(*tarballs, out=args.out)
        for path in tarballs:
            print(f"{sha256(path)}  {path.name}")

    subcategories = {(e.category, e.subcategory) for e in leaves}
    categories = {e.category for e in leaves}
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(
        f"{len(categories)} categories, {len(subcategories)} subcategories, "
        f"{len(leaves)} emoji, {3 * len(leaves)} images, {size / 1e6:.2f} MB in {args.out}"
    )


if __name__ == "__main__":
    sys.exit(main())
