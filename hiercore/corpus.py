"""The open pretraining corpus: emoji and icons from npm, rendered to 64×64 image–caption rows.

The embedded small CLIP learns what things look like and what they are called from
openly licensed art published on npm. Emoji come in many art styles with exact code-point
maps (the ``@iconify-json/*`` emoji sets and their ``chars.json``); named icon sets add
vocabulary ("bird", "wrench", "tooth") beyond the emoji. Names and keywords come from the
emoji-datasource metadata (Unicode groups, CLDR names) and from the icon sets themselves.

Two rules are enforced here rather than trusted to the caller:

- **Licence.** A package is used only when both its npm ``license`` and the icon set's own
  ``info.license`` allow redistributing derived model weights (MIT, Apache, ISC, BSD, OFL,
  CC0, CC-BY, CC-BY-SA); non-commercial, no-derivatives and GPL-family licences are refused.
- **Held-out style.** OpenMoji is the demo's validation art style, so no OpenMoji image and
  no caption read from OpenMoji's data may enter pretraining: any package whose name or
  icon-set prefix mentions OpenMoji is refused.

Output contract (read by the pretraining code): ``DIR/corpus.csv`` with the columns of
``CORPUS_COLUMNS``, one row per 64×64 RGB PNG (transparency composited on white) under
``DIR/images/<style>/``, and ``DIR/sources.csv`` naming every package, version and licence.
Everything except `rasterise_svg` and `build_corpus` is a pure function of its inputs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

IMAGE_SIZE = 64
# SVGs are rendered at this multiple of IMAGE_SIZE, cropped, then downsampled, so thin
# outlines keep their weight.
RENDER_SCALE = 2
# Share of the frame the longer side of a glyph fills after cropping: the demo's Twemoji
# and Noto bitmaps fill 97-100% of their frame, and every style is framed the same way.
GLYPH_FILL = 0.97
# Alpha at or below this counts as empty when finding a glyph's extent.
ALPHA_FLOOR = 16

CORPUS_COLUMNS = (
    "path",
    "kind",
    "style",
    "package",
    "license",
    "codepoints",
    "name",
    "keywords",
    "subcategory",
    "category",
)
SOURCE_COLUMNS = (
    "package",
    "version",
    "npm_license",
    "set_license",
    "kind",
    "style",
    "rows",
    "status",
    "sha256",
)

# The packages of the default corpus, pinned. emoji-datasource gives only metadata (names,
# keywords, Unicode groups); every image comes from an iconify set.
DATASOURCE_PACKAGE = "emoji-datasource-twitter@16.0.0"
EMOJI_PACKAGES = (
    "@iconify-json/fluent-emoji@1.2.7",
    "@iconify-json/fluent-emoji-flat@1.2.6",
    "@iconify-json/fluent-emoji-high-contrast@1.2.6",
    "@iconify-json/noto@1.2.9",
    "@iconify-json/noto-v1@1.2.5",
    "@iconify-json/emojione@1.2.3",
    "@iconify-json/emojione-v1@1.2.3",
    "@iconify-json/emojione-monotone@1.2.1",
    "@iconify-json/fxemoji@1.2.2",
    "@iconify-json/streamline-emojis@1.2.4",
    "@iconify-json/twemoji@1.2.5",
)
ICON_PACKAGES = (
    "@iconify-json/mdi@1.2.3",
    "@iconify-json/tabler@1.2.41",
    "@iconify-json/game-icons@1.2.4",
    "@iconify-json/lucide@1.2.137",
    "@iconify-json/fa6-solid@1.2.4",
    "@iconify-json/healthicons@1.2.13",
    "@iconify-json/flat-color-icons@1.2.3",
    "@iconify-json/icon-park-outline@1.2.4",
)
DEFAULT_PACKAGES = (DATASOURCE_PACKAGE, *EMOJI_PACKAGES, *ICON_PACKAGES)

# Short style ids of the emoji sets (iconify prefix -> style); other prefixes are their own id.
EMOJI_STYLES = {
    "fluent-emoji": "fluent-color",
    "fluent-emoji-flat": "fluent-flat",
    "fluent-emoji-high-contrast": "fluent-hc",
    "noto": "noto",
    "noto-v1": "noto-v1",
    "emojione": "emojione",
    "emojione-v1": "emojione-v1",
    "emojione-monotone": "emojione-mono",
    "fxemoji": "fxemoji",
    "streamline-emojis": "streamline",
    "twemoji": "twemoji",
}
# Icons per icon set, so that no set dominates and the corpus stays trainable on a CPU
# (about 19k icons in all with the default packages).
ICON_CAP = {
    "mdi": 4000,
    "tabler": 3000,
    "game-icons": 3500,
    "lucide": 1900,
    "fa6-solid": 1500,
    "healthicons": 2000,
    "flat-color-icons": 400,
    "icon-park-outline": 2700,
}
DEFAULT_ICON_CAP = 2000
# Logos are trademarks whatever the icon set's licence, and teach no words.
BRAND_CATEGORIES = {"Brand / Logo", "Brand", "Brands", "Logos"}
# A name ending in one of these is a drawing variant of the name without it.
VARIANT_SUFFIXES = ("outline", "outlined", "filled", "fill", "solid", "negative", "sharp")
SIZE_SUFFIX = re.compile(r"-\d+px$")

HELD_OUT = "openmoji"
# npm's "UNLICENSED" means proprietary, so it is refused like any licence not listed here.
ALLOWED_LICENCES = ("MIT", "APACHE", "ISC", "BSD", "OFL", "CC0", "CC-BY")
REFUSED_LICENCE_PARTS = ("NC", "ND", "GPL", "PROPRIETARY")

SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}
VARIATION_SELECTORS = {"fe0f", "fe0e"}


@dataclass(frozen=True)
class EmojiMeta:
    """What the caption of one emoji says, keyed by its normalised code points."""

    name: str
    keywords: tuple[str, ...] = ()
    subcategory: str = ""
    category: str = ""


@dataclass
class Package:
    """One npm tarball's parsed JSON members (nothing is unpacked to disk)."""

    name: str
    version: str
    license: str
    files: dict[str, object] = field(default_factory=dict)
    sha256: str = ""

    @property
    def prefix(self) -> str:
        info = self.files.get("icons.json") or {}
        return str(info.get("prefix", "")) if isinstance(info, dict) else ""


@dataclass
class CorpusItem:
    """One row of corpus.csv before its image is written (``svg`` is what gets rendered)."""

    kind: str
    style: str
    package: str
    license: str
    codepoints: str
    name: str
    keywords: tuple[str, ...]
    subcategory: str
    category: str
    svg: str
    source_name: str = ""

    @property
    def path(self) -> str:
        stem = self.codepoints or re.sub(r"[^a-z0-9]+", "-", self.source_name or self.name)
        return f"images/{self.style}/{stem.strip('-')}.png"

    def row(self) -> tuple[str, ...]:
        return (
            self.path,
            self.kind,
            self.style,
            self.package,
            self.license,
            self.codepoints,
            self.name,
            "|".join(self.keywords),
            self.subcategory,
            self.category,
        )


# --- rules ------------------------------------------------------------------------------


def licence_allowed(spdx: str) -> bool:
    """Whether a licence id lets us redistribute weights trained on the art."""
    text = spdx.strip().upper()
    if not text:
        return False
    parts = re.split(r"[-_ ./()]+", text)
    if any(part in REFUSED_LICENCE_PARTS for part in parts) or "GPL" in text:
        return False
    return text.startswith(ALLOWED_LICENCES)


def is_held_out(*names: str) -> bool:
    """Whether any of a package's names (npm name, iconify prefix, set name) is OpenMoji."""
    return any(HELD_OUT in re.sub(r"[^a-z]", "", n.lower()) for n in names if n)


def refusal(package: Package) -> str:
    """Why a package may not enter the corpus, or "" when it may."""
    info = package.files.get("info.json") or {}
    set_name = str(info.get("name", "")) if isinstance(info, dict) else ""
    if is_held_out(package.name, package.prefix, set_name):
        return "held out: OpenMoji is the validation art style"
    if not licence_allowed(package.license):
        return f"npm licence {package.license or 'missing'} is not allowed"
    set_licence = set_license(package)
    if package.prefix and not licence_allowed(set_licence):
        return f"icon set licence {set_licence or 'missing'} is not allowed"
    return ""


def set_license(package: Package) -> str:
    info = package.files.get("info.json") or {}
    lic = info.get("license", {}) if isinstance(info, dict) else {}
    return str(lic.get("spdx") or lic.get("title") or "") if isinstance(lic, dict) else ""


def normalise_code(code: str) -> str:
    """Lower-case code points joined by ``-``, without variation selectors."""
    parts = re.split(r"[-_ ]+", code.strip().lower())
    return "-".join(
        p.lstrip("0").rjust(4, "0") for p in parts if p and p not in VARIATION_SELECTORS
    )


def has_skin_tone(code: str) -> bool:
    return any(part in SKIN_TONES for part in code.split("-"))


def spaced(name: str) -> str:
    """An icon name as words: ``wolf-head`` -> ``wolf head``."""
    return re.sub(r"\s+", " ", name.replace("-", " ").replace("_", " ")).strip().lower()


def spread_evenly(items: list, cap: int) -> list:
    """At most ``cap`` items taken at evenly spaced positions, order kept."""
    if len(items) <= cap:
        return list(items)
    step = len(items) / cap
    return [items[int(i * step)] for i in range(cap)]


# --- parsing ----------------------------------------------------------------------------


def read_package(tgz: Path) -> Package:
    """The JSON members of an npm tarball that the corpus reads."""
    wanted = ("package.json", "icons.json", "info.json", "chars.json", "metadata.json")
    files: dict[str, object] = {}
    with tarfile.open(tgz) as archive:
        for member in archive.getmembers():
            name = member.name.split("/", 1)[-1]
            if name in wanted or name == "emoji.json":
                handle = archive.extractfile(member)
                if handle is not None:
                    files[name] = json.load(handle)
    meta = files.get("package.json") or {}
    if not isinstance(meta, dict) or "name" not in meta:
        raise ValueError(f"{tgz}: not an npm package (no package/package.json)")
    return Package(
        name=meta["name"],
        version=str(meta.get("version", "")),
        license=_licence_field(meta.get("license")),
        files=files,
        sha256=hashlib.sha256(tgz.read_bytes()).hexdigest(),
    )


def _licence_field(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("type", ""))
    return str(value or "")


def iconify_svg(icon: dict, defaults: dict) -> str:
    """A standalone SVG document for one icon of an iconify set.

    Iconify stores only the body; the frame (``left``, ``top``, ``width``, ``height``)
    comes from the icon or else the set. Monochrome sets draw in ``currentColor``, which
    is made black here.
    """
    left = icon.get("left", defaults.get("left", 0))
    top = icon.get("top", defaults.get("top", 0))
    width = icon.get("width", defaults.get("width", 16))
    height = icon.get("height", defaults.get("height", 16))
    body = icon["body"].replace("currentColor", "#000")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="{left} {top} {width} {height}">'
        f"{body}</svg>"
    )


def iconify_icons(icons_json: dict) -> Iterator[tuple[str, str]]:
    """(name, svg) of every drawable icon in a set, in the set's order.

    Aliases repeat another icon, hidden icons are retired ones, and transformed icons
    (rotated or flipped) are drawings of another icon; all three are skipped.
    """
    for name, icon in icons_json.get("icons", {}).items():
        if icon.get("hidden") or icon.get("rotate") or icon.get("hFlip") or icon.get("vFlip"):
            continue
        yield name, iconify_svg(icon, icons_json)


def set_categories(metadata: dict | None) -> dict[str, str]:
    """Icon name -> the set's category for it (the first one listed)."""
    out: dict[str, str] = {}
    for category, names in (metadata or {}).get("categories", {}).items():
        for name in names:
            out.setdefault(name, category)
    return out


def emoji_codes(chars: dict[str, str]) -> dict[str, str]:
    """Icon name -> normalised code points, default skin tone only, one code per icon."""
    out: dict[str, str] = {}
    for code, name in chars.items():
        norm = normalise_code(code)
        if not norm or has_skin_tone(norm):
            continue
        if name not in out or len(norm) < len(out[name]):
            out[name] = norm
    return out


def datasource_meta(emoji_json: list[dict]) -> dict[str, EmojiMeta]:
    """Caption fields of every emoji in emoji-datasource's emoji.json, by code points."""
    out = {}
    for entry in emoji_json:
        code = normalise_code(entry["unified"])
        name = entry.get("name", "").replace("\u2019", "'").strip().lower()
        words = [spaced(s) for s in entry.get("short_names", [])]
        keywords = tuple(dict.fromkeys(w for w in words if w and w != name))
        out[code] = EmojiMeta(name, keywords, entry.get("subcategory", ""), entry["category"])
    return out


def demo_leaves(manifest_csv: Path) -> dict[str, EmojiMeta]:
    """The demo's leaves by code points, read from its manifest (``images/<style>/<code>.png``)."""
    out = {}
    with manifest_csv.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            code = normalise_code(Path(row["path"]).stem)
            out.setdefault(code, EmojiMeta(row["emoji"], (), row["subcategory"], row["category"]))
    return out


def drop_variants(names: list[str]) -> list[str]:
    """Icon names without drawing variants of another name in the set.

    A variant is the name plus a style suffix (``bell-outline`` beside ``bell``) or a
    grid size (Health Icons' ``ambulance-24px`` beside its 48 px ``ambulance``), or both
    (``ambulance-outline-24px``).
    """
    present = set(names)
    kept = []
    for name in names:
        size = SIZE_SUFFIX.search(name)
        unsized = SIZE_SUFFIX.sub("", name)
        base = _styled_base(unsized)
        simpler = {unsized, base, base + size.group() if base and size else ""}
        if (simpler - {name, ""}) & present:
            continue
        kept.append(name)
    return kept


def _styled_base(name: str) -> str:
    base, _, suffix = name.rpartition("-")
    return base if base and suffix in VARIANT_SUFFIXES else ""


# --- items ------------------------------------------------------------------------------


def name_key(name: str) -> str:
    """A name reduced to its letters and digits, so ``admission-tickets``, ``admissiontickets``
    and ``ADMISSION TICKETS`` match."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def names_index(packages: Iterable[Package], meta: dict[str, EmojiMeta]) -> dict[str, str]:
    """Name key -> code points, from the emoji sets' chars.json and emoji-datasource's names.

    Most iconify emoji sets ship an empty chars.json; their icon names are CLDR names
    (``face-with-tears-of-joy``), so they are matched through this index instead.
    """
    out: dict[str, str] = {}
    for package in packages:
        chars = package.files.get("chars.json")
        if is_emoji_set(package) and isinstance(chars, dict):
            for name, code in emoji_codes(chars).items():
                out.setdefault(name_key(name), code)
    for code, info in meta.items():
        for name in (info.name, *info.keywords):
            out.setdefault(name_key(name), code)
    return out


SKIN_TONE_NAME = re.compile(
    r"(?:[-_ ](?:medium[-_ ])?(?:light|dark)|[-_ ]medium)(?:[-_ ]skin[-_ ]tone)?$|[-_ ]tone[1-5]$"
)


def is_skin_tone_name(name: str, known: dict[str, str]) -> bool:
    """Whether an icon name is a skin-tone version of a known emoji (``artist-dark``)."""
    if "skin-tone" in name or "skin_tone" in name:
        return name_key(name) not in known
    base = SKIN_TONE_NAME.sub("", name)
    return base != name and name_key(name) not in known and name_key(base) in known


def cldr_names(packages: Iterable[Package]) -> dict[str, str]:
    """Code points -> CLDR short name as the iconify sets with a chars.json spell it.

    Iconify names emoji by their CLDR short name without punctuation
    (``grinning-face-with-big-eyes``), while emoji-datasource's ``name`` is, for the
    older emoji, the Unicode character name ("smiling face with open mouth").
    """
    out: dict[str, str] = {}
    for package in packages:
        chars = package.files.get("chars.json")
        if is_emoji_set(package) and isinstance(chars, dict):
            for name, code in emoji_codes(chars).items():
                out.setdefault(code, spaced(name))
    return out


def emoji_caption(
    code: str,
    own: str,
    meta: dict[str, EmojiMeta],
    leaves: dict[str, EmojiMeta],
    cldr: dict[str, str],
    set_category: str = "",
) -> EmojiMeta:
    """Name, keywords and groups of one emoji.

    Name: the demo's leaf name for a demo leaf; else the CLDR short name, spelt as
    emoji-datasource spells it when the two agree but for punctuation ("kiss: woman,
    man"), else as iconify does; else the icon's own name. Keywords: every other name
    the emoji goes by (Unicode name, short codes, the set's icon name).
    """
    data = meta.get(code)
    words = [data.name, *data.keywords] if data else []
    if code in leaves:
        name, sub, cat = leaves[code].name, leaves[code].subcategory, leaves[code].category
    elif data is not None:
        name, sub, cat = data.name, data.subcategory, data.category
        short = cldr.get(code, "")
        if short and name_key(short) != name_key(name):
            name = short
    else:
        name, sub, cat = cldr.get(code, own), "", set_category
    words += [cldr.get(code, ""), own]
    keywords = tuple(dict.fromkeys(w for w in words if w and w != name))
    return EmojiMeta(name, keywords, sub, cat)


def emoji_items(
    package: Package,
    meta: dict[str, EmojiMeta],
    leaves: dict[str, EmojiMeta],
    known: dict[str, str] | None = None,
    cldr: dict[str, str] | None = None,
) -> list[CorpusItem]:
    """One item per default-tone emoji of an iconify emoji set.

    A set with a non-empty chars.json maps its icons to code points directly; the others
    are matched by icon name through ``known`` (`names_index`). An icon that matches no
    emoji keeps its own name and the set's category and has no code points.
    """
    icons_json = package.files["icons.json"]
    chars = package.files.get("chars.json")
    codes = emoji_codes(chars) if isinstance(chars, dict) and chars else None
    known = known or {}
    categories = set_categories(package.files.get("metadata.json"))
    style = EMOJI_STYLES.get(package.prefix, package.prefix)
    lic = set_license(package) or package.license
    items, seen = [], set()
    for name, svg in iconify_icons(icons_json):
        if codes is not None:
            code = codes.get(name, "")
            if not code:  # skin-tone glyphs and extras without a code point
                continue
        elif is_skin_tone_name(name, known):
            continue
        else:
            code = known.get(name_key(name), "")
        if code and code in seen:
            continue
        seen.add(code)
        # Streamline numbers its versions of one emoji (astronaut-1, astronaut-2).
        own = re.sub(r"(?<=[a-z]) \d+$", "", spaced(name))
        info = emoji_caption(code, own, meta, leaves, cldr or {}, categories.get(name, ""))
        items.append(
            CorpusItem(
                "emoji",
                style,
                package.name,
                lic,
                code,
                info.name,
                info.keywords,
                info.subcategory,
                info.category,
                svg,
                name,
            )
        )
    return items


def icon_items(package: Package, cap: int | None = None) -> list[CorpusItem]:
    """Up to ``cap`` icons of a named icon set, without logos and drawing variants."""
    icons_json = package.files["icons.json"]
    categories = set_categories(package.files.get("metadata.json"))
    style = package.prefix
    svgs = dict(iconify_icons(icons_json))
    names = [
        n
        for n in drop_variants(list(svgs))
        if categories.get(n, "") not in BRAND_CATEGORIES and not n.startswith("brand-")
    ]
    names = spread_evenly(names, cap if cap is not None else ICON_CAP.get(style, DEFAULT_ICON_CAP))
    lic = set_license(package) or package.license
    return [
        CorpusItem(
            "icon",
            style,
            package.name,
            lic,
            "",
            spaced(n),
            (),
            "",
            categories.get(n, ""),
            svgs[n],
            n,
        )
        for n in names
    ]


def is_emoji_set(package: Package) -> bool:
    info = package.files.get("info.json") or {}
    category = str(info.get("category", "")) if isinstance(info, dict) else ""
    return package.prefix in EMOJI_STYLES or category.lower() == "emoji"


def plan_corpus(
    packages: Iterable[Package], leaves: dict[str, EmojiMeta]
) -> tuple[list[CorpusItem], list[dict]]:
    """Every corpus item of the given packages, and one source record per package.

    Refused packages (licence, held-out style) contribute no item; their record says why.
    emoji-datasource contributes captions only.
    """
    packages = list(packages)
    meta: dict[str, EmojiMeta] = {}
    sources, usable = [], []
    for package in packages:
        why = refusal(package)
        record = {
            "package": package.name,
            "version": package.version,
            "npm_license": package.license,
            "set_license": set_license(package),
            "kind": "",
            "style": "",
            "rows": 0,
            "status": f"refused: {why}" if why else "used",
            "sha256": package.sha256,
        }
        sources.append(record)
        if why:
            continue
        if "emoji.json" in package.files:
            meta.update(datasource_meta(package.files["emoji.json"]))
            record["kind"] = "metadata"
        elif "icons.json" in package.files:
            usable.append((package, record))
        else:
            record["status"] = "refused: neither an iconify set nor emoji-datasource"
    known = names_index((p for p, _ in usable), meta)
    cldr = cldr_names(p for p, _ in usable)
    items: list[CorpusItem] = []
    paths: set[str] = set()
    for package, record in usable:
        if is_emoji_set(package):
            new = emoji_items(package, meta, leaves, known, cldr)
            record["kind"] = "emoji"
        else:
            new = icon_items(package)
            record["kind"] = "icon"
        new = _unique_paths(new, paths)
        record["style"] = new[0].style if new else ""
        record["rows"] = len(new)
        items.extend(new)
    return items, sources


def _unique_paths(items: list[CorpusItem], seen: set[str]) -> list[CorpusItem]:
    """Items whose image path is not taken yet (two icon names can slug alike)."""
    kept = []
    for item in items:
        if item.path not in seen:
            seen.add(item.path)
            kept.append(item)
    return kept


# --- images -----------------------------------------------------------------------------


def crop_to_glyph(image: Image.Image, fill: float = GLYPH_FILL) -> Image.Image | None:
    """A square around the drawn pixels of an RGBA image, the glyph filling ``fill`` of it.

    Icon sets leave different margins around their drawings; framing every glyph the same
    way makes styles differ in drawing, not in scale. None when nothing is drawn.
    """
    box = image.getchannel("A").point(lambda a: 255 if a > ALPHA_FLOOR else 0).getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    half = max(right - left, bottom - top) / fill / 2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    # crop() pads with transparent pixels where the square leaves the canvas.
    return image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))


def flatten_on_white(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """RGB at ``size``: transparency composited onto white, then resized (Lanczos)."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return rgb


def rasterise_svg(
    svg: str | bytes, size: int = IMAGE_SIZE, scale: int = RENDER_SCALE
) -> Image.Image | None:
    """An SVG as a framed ``size``×``size`` RGB image on white (None if it draws nothing).

    Rendered at ``scale`` times ``size``, cropped around the glyph, then downsampled.
    """
    import cairosvg  # here, so that the module loads where the cairo library is absent

    data = svg.encode("utf-8") if isinstance(svg, str) else svg
    side = size * scale
    png = cairosvg.svg2png(bytestring=data, output_width=side, output_height=side)
    glyph = crop_to_glyph(Image.open(io.BytesIO(png)).convert("RGBA"))
    return None if glyph is None else flatten_on_white(glyph, size)


def _render_one(job: tuple[str, str]) -> tuple[str, str]:
    svg, target = job
    try:
        image = rasterise_svg(svg)
    except Exception as exc:  # a broken drawing drops one row, not the corpus
        return target, f"render failed: {exc}"
    if image is None:
        return target, "empty drawing"
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="PNG")
    return target, ""


def render_items(
    items: list[CorpusItem], out: Path, workers: int | None = None, log=print
) -> list[CorpusItem]:
    """Write every item's PNG under ``out`` and return the items that rendered."""
    jobs = [(item.svg, str(out / item.path)) for item in items]
    workers = workers or max(1, os.cpu_count() or 1)
    failed: dict[str, str] = {}
    if workers == 1:
        results: Iterable[tuple[str, str]] = map(_render_one, jobs)
        pool = None
    else:
        from multiprocessing import get_context

        pool = get_context("spawn").Pool(workers)
        results = pool.imap(_render_one, jobs, chunksize=32)
    try:
        for done, (target, why) in enumerate(results, 1):
            if why:
                failed[target] = why
            if done % 2000 == 0:
                log(f"rendered {done}/{len(jobs)}")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    for target, why in list(failed.items())[:10]:
        log(f"skipped {target}: {why}")
    return [item for item in items if str(out / item.path) not in failed]


def write_csv(path: Path, header: tuple[str, ...], rows: Iterable[tuple]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def build_corpus(
    out: Path,
    tarballs: Iterable[Path],
    demo_manifest: Path,
    workers: int | None = None,
    log=print,
) -> list[CorpusItem]:
    """Render the corpus of ``tarballs`` into ``out`` and write corpus.csv and sources.csv."""
    out = Path(out)
    packages = [read_package(Path(t)) for t in tarballs]
    items, sources = plan_corpus(packages, demo_leaves(demo_manifest))
    for record in sources:
        log(f"{record['package']}@{record['version']}: {record['status']} ({record['rows']} rows)")
    if (out / "corpus.csv").is_file():  # a rebuild: no image of the old corpus may linger
        import shutil

        shutil.rmtree(out / "images", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    rendered = render_items(items, out, workers, log)
    rows_per_package: dict[str, int] = {}
    for item in rendered:
        rows_per_package[item.package] = rows_per_package.get(item.package, 0) + 1
    for record in sources:
        if record["status"] == "used" and record["kind"] != "metadata":
            record["rows"] = rows_per_package.get(record["package"], 0)
    write_csv(out / "corpus.csv", CORPUS_COLUMNS, (item.row() for item in rendered))
    write_csv(out / "sources.csv", SOURCE_COLUMNS, (tuple(r.values()) for r in sources))
    return rendered


def rows_per_style(items: Iterable[CorpusItem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.style] = counts.get(item.style, 0) + 1
    return counts


def tarball_name(spec: str) -> str:
    """The file ``npm pack`` writes for ``@scope/name@version``: ``scope-name-version.tgz``."""
    return spec.lstrip("@").replace("/", "-").replace("@", "-") + ".tgz"


def npm_pack(folder: Path, specs: Iterable[str] | None = None) -> list[Path]:
    """Download the pinned packages (default: `DEFAULT_PACKAGES`) with ``npm pack``."""
    import subprocess

    specs = list(DEFAULT_PACKAGES if specs is None else specs)
    done = subprocess.run(
        ["npm", "pack", "--pack-destination", str(folder), *specs],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm pack failed:\n{done.stderr[-2000:]}")
    return [folder / tarball_name(s) for s in specs]


def default_tarballs(packages_dir: Path, specs: Iterable[str] | None = None) -> list[Path]:
    """The pinned packages' tarballs in ``packages_dir`` (as ``npm pack`` names them)."""
    specs = DEFAULT_PACKAGES if specs is None else specs
    paths = [Path(packages_dir) / tarball_name(s) for s in specs]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{packages_dir} lacks {', '.join(missing)} (npm pack them)")
    return paths
