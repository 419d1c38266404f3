"""Labelled image sets: import (class-folder trees, CSV manifests, zips), splits, datasets.

A `Sample` is one image file and one label, a node id at any depth of the taxonomy (an
inner node is a partial label, docs/method.md §1) or None when the image is unlabelled.
`ImageLabelDataset` turns samples into (image tensor, per-level target) pairs through
`LevelIndex.target`, and skips images that cannot be read instead of failing mid-epoch.
`extract_zip_safely` unpacks an uploaded zip only when no member could escape the
destination or blow up on disk.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from hiercore.errors import DataError, HierTuneError
from hiercore.images import MAX_PIXELS, open_rgb, size_problem
from hiercore.taxonomy import LevelIndex, Taxonomy
from hiercore.taxonomy.formats import load_taxonomy, walk_class_folders
from hiercore.taxonomy.pathtree import PathTreeBuilder
from hiercore.taxonomy.tree import ROOT

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
SPLITS = ("train", "val")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
}
DEFAULT_ZIP_LIMIT = 2 * 1024**3  # 2 GiB uncompressed, for everything one import unpacks
DEFAULT_ZIP_MAX_RATIO = 200
"""Most a zip member may inflate relative to its packed size (images: about 1; text: <20)."""
DEFAULT_ZIP_RATIO_FLOOR = 16 * 1024**2
"""Members inflating to less than this are never refused for their ratio."""
DEFAULT_ZIP_MAX_FILES = 200_000


@dataclass
class Sample:
    """One image and its label (a node id at any depth, or None when unlabelled)."""

    path: str
    node_id: str | None
    split: str | None = None
    """'train' or 'val' when the source fixed it; None lets `split_samples` decide."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = os.fspath(self.path)


def is_image_file(path: str | os.PathLike) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# ---------------------------------------------------------------------- import
def samples_from_folder_tree(root: str | os.PathLike) -> tuple[Taxonomy, list[Sample]]:
    """Class folders nested one level per taxonomy level, images inside.

    Images in a leaf folder are labelled with that leaf; images directly in an inner
    folder get a partial label at that node; images directly in `root` are unlabelled.
    Hidden files and folders and non-image files are ignored. Node ids are derived from
    folder paths, so they match `load_taxonomy(root)`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder.")
    builder = PathTreeBuilder(str(root))
    ids: dict[tuple[str, ...], str] = {(): ROOT}
    samples = [Sample(p, None) for p in _images_in(root)]
    for names, folder in walk_class_folders(root):
        node = builder.child(ids[names[:-1]], names[-1], f"folder {folder}", unique=True)
        ids[names] = node
        samples.extend(Sample(p, node) for p in _images_in(folder))
    if len(ids) == 1:
        raise DataError(f"{root} has no class sub-folders.")
    return builder.build(), samples


def _images_in(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.path for e in entries if e.is_file() and is_image_file(e.name))


METADATA_COLUMNS = frozenset({"style", "source", "note", "notes", "id", "weight"})
"""Manifest columns that describe an image but are not taxonomy levels (kept in `extra`)."""


def samples_from_manifest(
    csv_path: str | os.PathLike, taxonomy: Taxonomy | None = None, max_rows: int | None = None
) -> tuple[Taxonomy, list[Sample]]:
    """A CSV manifest: a `path` column, one column per level, an optional `split` column.

    Columns named in `METADATA_COLUMNS` (style, source, ...) are kept in `Sample.extra`,
    as is every column that is not one of the taxonomy's rank names when a taxonomy with
    rank names is given.

    Paths are relative to the CSV's folder (absolute paths are kept), which suits the CLI
    reading its own files; the cell as written is kept in `extra["path_cell"]`. Nothing
    here opens the image files, and an uploaded manifest's paths must never be opened as
    they are: the studio resolves them against the upload instead (`hiercore.ingest`).

    Blank trailing level cells give a partial label; a row with every level blank is
    unlabelled. With `taxonomy`, every name path must already exist in it; without, the
    taxonomy is built from the rows (header = rank names, ids derived from name paths).
    With `max_rows` (the studio's uploads), a longer manifest is refused as it is read.
    """
    csv_path = Path(csv_path)
    source = csv_path.name
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{csv_path}: no such manifest file.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: the manifest is not UTF-8 text (byte {exc.start}).") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if any(c.strip() for c in row):
                rows.append((reader.line_num, [c.strip() for c in row]))
                if max_rows is not None and len(rows) > max_rows + 1:  # + the header
                    raise DataError(
                        f"{source} has more than {max_rows:,} rows, the limit for one "
                        "manifest; split it into several imports."
                    )
    except csv.Error as exc:
        raise DataError(f"{source} line {reader.line_num + 1}: malformed CSV ({exc}).") from None
    if not rows:
        raise DataError(f"{source}: the manifest is empty.")
    head_line, header = rows[0]
    lowered = [h.lower() for h in header]
    if "path" not in lowered:
        raise DataError(f"{source} line {head_line}: the header has no 'path' column.")
    path_col = lowered.index("path")
    split_col = lowered.index("split") if "split" in lowered else None
    if taxonomy is not None and taxonomy.level_names and set(taxonomy.level_names) <= set(header):
        # the taxonomy names its ranks: those columns are the levels, the rest is metadata
        level_cols = [header.index(r) for r in taxonomy.level_names]
    else:
        level_cols = [
            i
            for i in range(len(header))
            if i not in (path_col, split_col) and lowered[i] not in METADATA_COLUMNS
        ]
    extra_cols = [i for i in range(len(header)) if i not in (path_col, split_col, *level_cols)]
    ranks = [header[i] for i in level_cols]
    if taxonomy is None and any(not r for r in ranks):
        raise DataError(f"{source} line {head_line}: a level column has no name.")

    builder = None if taxonomy is not None else PathTreeBuilder(source)
    base = csv_path.parent
    samples = []
    for line, row in rows[1:]:
        where = f"{source} line {line}"
        row = row + [""] * (len(header) - len(row))
        if len(row) > len(header) and any(row[len(header) :]):
            raise DataError(f"{where}: the row has more cells than the header has columns.")
        if not row[path_col]:
            raise DataError(f"{where}: the 'path' cell is blank.")
        names = _name_path([row[i] for i in level_cols], ranks, where)
        split = _split_value(row[split_col], where) if split_col is not None else None
        if not names:
            node = None
        elif builder is not None:
            node = builder.add_path(names, where)
        else:
            node = taxonomy.find_by_path(names)
            if node is None:
                raise DataError(f"{where}: {' / '.join(names)!r} is not a path of the taxonomy.")
        path = base / row[path_col]
        extra = {"line": line, **{header[i]: row[i] for i in extra_cols}}
        extra["path_cell"] = row[path_col]
        samples.append(Sample(str(path), node, split, extra))
    if builder is not None:
        if not builder.records:
            raise DataError(f"{source}: no row has a label, so there is no taxonomy to build.")
        taxonomy = builder.build(ranks)
    return taxonomy, samples


def _name_path(cells: list[str], ranks: list[str], where: str) -> list[str]:
    depth = next((k for k, c in enumerate(cells) if not c), len(cells))
    deeper = next((k for k in range(depth, len(cells)) if cells[k]), None)
    if deeper is not None:
        raise DataError(
            f"{where}: the level {ranks[depth]!r} is blank but the deeper level "
            f"{ranks[deeper]!r} is filled ({cells[deeper]!r})."
        )
    return cells[:depth]


def _split_value(cell: str, where: str) -> str | None:
    if not cell:
        return None
    split = _SPLIT_ALIASES.get(cell.lower())
    if split is None:
        raise DataError(f"{where}: the split {cell!r} is neither 'train' nor 'val'.")
    return split


# ---------------------------------------------------------------------- splits
def split_samples(
    samples: Sequence[Sample], index: LevelIndex, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """(train, val): explicit `split` values first, the rest stratified by label.

    Samples labelled with a leaf are stratified by that leaf, partial labels by their
    node. Each stratum of n free samples sends floor(n * val_fraction) to val; the places
    left to reach round(N * val_fraction) go one each to the strata with the largest
    remainders (ties broken by `seed`). A stratum always keeps one sample in train, so a
    class with a single sample trains. Unlabelled samples train. The result depends only
    on the samples (by path) and `seed`, not on their order; both lists keep input order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise HierTuneError(f"The validation fraction must be in [0, 1), not {val_fraction}.")
    fixed: dict[int, str] = {}
    strata: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        if s.split is not None:
            if s.split not in SPLITS:
                raise DataError(f"{s.path}: the split {s.split!r} is neither 'train' nor 'val'.")
            fixed[i] = s.split
        elif s.node_id is None:
            fixed[i] = "train"
        else:
            try:
                index.target(s.node_id)
            except HierTuneError:
                raise DataError(
                    f"{s.path}: the label {s.node_id!r} is not in the taxonomy."
                ) from None
            strata[s.node_id].append(i)

    keys = sorted(strata)
    quota = np.array([len(strata[k]) * val_fraction for k in keys])
    cap = np.array([len(strata[k]) - 1 for k in keys])
    n_val = np.minimum(np.floor(quota).astype(int), cap)
    rng = np.random.default_rng(seed)
    total = min(round(sum(len(v) for v in strata.values()) * val_fraction), int(cap.sum()))
    # Hand the remaining val places to the largest remainders (ties broken by the seed).
    order = np.lexsort((rng.random(len(keys)), -(quota - n_val)))
    for j in order:
        if n_val.sum() >= total:
            break
        if n_val[j] < cap[j]:
            n_val[j] += 1
    for j, key in enumerate(keys):
        members = sorted(strata[key], key=lambda i: samples[i].path)
        chosen = rng.permutation(len(members))[: n_val[j]]
        picked = {members[c] for c in chosen}
        for i in members:
            fixed[i] = "val" if i in picked else "train"
    train = [s for i, s in enumerate(samples) if fixed[i] == "train"]
    val = [s for i, s in enumerate(samples) if fixed[i] == "val"]
    return train, val


# ---------------------------------------------------------------------- images
def load_data(
    data: str | os.PathLike, taxonomy_file: str | os.PathLike | None = None
) -> tuple[Taxonomy, list[Sample]]:
    """(taxonomy, samples) of a folder tree or a CSV manifest; with `taxonomy_file`, the
    folder tree's labels are mapped onto that taxonomy by name path."""
    path = Path(data)
    if not path.exists():
        raise DataError(f"Data path {data} does not exist.")
    taxonomy = load_taxonomy(taxonomy_file) if taxonomy_file else None
    if path.is_dir():
        tree_tax, samples = samples_from_folder_tree(path)
        if taxonomy is not None:
            samples = _relabel(samples, tree_tax, taxonomy)
        else:
            taxonomy = tree_tax
    elif path.suffix.lower() == ".csv":
        taxonomy, samples = samples_from_manifest(path, taxonomy)
    else:
        raise DataError(f"{data} is neither a folder of class folders nor a .csv manifest.")
    if not samples:
        raise DataError(f"{data} holds no labelled images.")
    return taxonomy, samples


def _relabel(samples: list[Sample], source: Taxonomy, target: Taxonomy) -> list[Sample]:
    """Map labels of a folder-implied tree onto a given taxonomy by name path."""
    out = []
    for s in samples:
        names = source.path_names(s.node_id) if s.node_id else []
        node = target.find_by_path(names) if names else None
        if names and node is None:
            raise DataError(f"{s.path}: folder path {' / '.join(names)} is not in the taxonomy.")
        out.append(replace(s, node_id=node))
    return out


# (path, mtime, size) -> problem, so that rebuilding a dataset (every evaluation) does
# not decode every image again; a changed file has a new key.
_checked: dict[tuple[str, int, int], str | None] = {}


def image_problem(path: str | os.PathLike) -> str | None:
    """None when `path` is a readable image, else one sentence saying what is wrong."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "The file does not exist."
    except OSError as exc:
        return f"The file cannot be read ({exc.strerror})."
    if not stat.S_ISREG(st.st_mode):
        return "The path is not a file."
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _checked:
        if len(_checked) > 1_000_000:
            _checked.clear()
        _checked[key] = _decode_problem(path)
    return _checked[key]


def _decode_problem(path: str) -> str | None:
    try:
        with Image.open(path) as img:
            too_big = size_problem(*img.size)
            if too_big is not None:
                return f"The image is refused: {too_big}."
            img.verify()  # structure and checksums without decoding every pixel
        with Image.open(path) as img:
            img.load()
    except UnidentifiedImageError:
        return "The file is not an image format Pillow can read."
    except Image.DecompressionBombError:
        return f"The image is refused: it has more than the {MAX_PIXELS} pixel limit."
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        return f"The image data is corrupt or truncated ({exc})."
    return None


def check_images(
    items: Iterable[Sample | str | os.PathLike],
) -> tuple[list, list[tuple[str, str]]]:
    """(readable items, [(path, reason)] of the unreadable ones), items being samples or paths."""
    good, bad = [], []
    for item in items:
        path = item.path if isinstance(item, Sample) else os.fspath(item)
        problem = image_problem(path)
        if problem is None:
            good.append(item)
        else:
            bad.append((path, problem))
    return good, bad


def _to_tensor(img: Image.Image) -> torch.Tensor:
    array = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class ImageLabelDataset(Dataset):
    """(image tensor, LongTensor target of shape (L,)) pairs; unreadable images are dropped.

    Every image is checked when the dataset is built; those that cannot be read are
    logged and left out (`.bad` lists them with a reason). An image that breaks later
    anyway is logged and replaced by the next readable one, so an epoch never dies on it.
    `transform` maps a PIL image to a tensor (default: float CHW in [0, 1]).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        index: LevelIndex,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
    ) -> None:
        targets = []
        for s in samples:
            try:
                targets.append(index.target(s.node_id))
            except HierTuneError:
                raise DataError(
                    f"{s.path}: the label {s.node_id!r} is not in the taxonomy."
                ) from None
        good, self.bad = check_images(samples)
        for path, reason in self.bad:
            log.warning("Skipping unreadable image %s: %s", path, reason)
        keep = {id(s) for s in good}
        self.samples: list[Sample] = list(good)
        self.targets = torch.tensor(
            [t for s, t in zip(samples, targets, strict=True) if id(s) in keep],
            dtype=torch.long,
        ).reshape(len(good), index.depth)
        self.transform = transform or _to_tensor

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        for k in range(len(self.samples)):
            j = (i + k) % len(self.samples)
            try:
                image = open_rgb(self.samples[j].path)
            except (DataError, OSError, SyntaxError, ValueError) as exc:
                log.warning("Skipping image %s that failed to load: %s", self.samples[j].path, exc)
                continue
            return self.transform(image), self.targets[j]
        raise DataError("None of the images in the dataset can be read any more.")


# ---------------------------------------------------------------------- zips
def extract_zip_safely(
    zip_path: str | os.PathLike,
    dest: str | os.PathLike,
    max_total_bytes: int = DEFAULT_ZIP_LIMIT,
    max_files: int = DEFAULT_ZIP_MAX_FILES,
    max_ratio: float = DEFAULT_ZIP_MAX_RATIO,
    ratio_floor: int = DEFAULT_ZIP_RATIO_FLOOR,
    limit_note: str = "the limit for an upload",
) -> list[Path]:
    """Extract `zip_path` into `dest` and return the extracted files.

    Refused, with nothing written, when a member has an absolute path or a '..'
    component, is a symlink, or when the files would exceed `max_total_bytes` (checked
    on the declared sizes first and on the bytes actually inflated while extracting, to
    catch archives that lie) or `max_files`. A member that inflates past `ratio_floor`
    bytes to more than `max_ratio` times its compressed size is refused while it streams
    (a bomb that stays under the total still fills a disk). `__MACOSX/` metadata is
    skipped. `limit_note` says in the size sentence what `max_total_bytes` is.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    name = zip_path.name
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise DataError(f"{name}: no such zip file.") from None
    except (zipfile.BadZipFile, OSError):
        raise DataError(f"{name} is not a readable zip archive.") from None
    with archive:
        members = _checked_members(archive, name, max_total_bytes, max_files, limit_note)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            written = 0
            for info, parts in members:
                target = staging.joinpath(*parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                ratio_cap = max(ratio_floor, max_ratio * info.compress_size)
                with archive.open(info) as src, open(target, "wb") as out:
                    entry = 0
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        entry += len(chunk)
                        if written > max_total_bytes:
                            raise DataError(
                                f"{name} inflates to more than {_size(max_total_bytes)}, "
                                f"{limit_note} (a zip bomb?)."
                            )
                        if entry > ratio_cap:
                            raise DataError(
                                f"{name}: the entry {_entry(info.filename)} inflates more than "
                                f"{max_ratio:g} times its packed size (a zip bomb?)."
                            )
                        out.write(chunk)
            return _move_into(staging, dest, [p for i, p in members if not i.is_dir()])
        except OSError as exc:  # the server's paths stay out of the sentence
            why = exc.strerror or type(exc).__name__
            raise DataError(f"{name} cannot be extracted here ({why}).") from None
        except RuntimeError as exc:  # encrypted members
            raise DataError(f"{name} cannot be extracted ({exc}).") from None
        except (zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"{name} is damaged ({exc}).") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


MAX_NAME_BYTES = 255
"""The longest file or folder name most file systems store (ext4, APFS, NTFS)."""


def _checked_members(
    archive: zipfile.ZipFile,
    name: str,
    max_total_bytes: int,
    max_files: int,
    limit_note: str = "the limit for an upload",
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    infos = archive.infolist()
    if len(infos) > max_files:
        raise DataError(f"{name} holds {len(infos)} entries, more than the limit of {max_files}.")
    out = []
    total = 0
    for info in infos:
        raw = info.filename
        parts = PurePosixPath(raw.replace("\\", "/")).parts
        if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
            raise DataError(f"{name}: the entry {raw!r} has an absolute path.")
        if ".." in parts:
            raise DataError(f"{name}: the entry {raw!r} points outside the folder ('..').")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{name}: the entry {raw!r} is a symbolic link.")
        if "\0" in raw:
            raise DataError(f"{name}: the entry {raw!r} has a NUL character in its name.")
        total += info.file_size
        if total > max_total_bytes:
            raise DataError(
                f"{name} would inflate to more than {_size(max_total_bytes)}, "
                f"{limit_note} (a zip bomb?)."
            )
        parts = tuple(p for p in parts if p not in ("", "."))
        if not parts or parts[0] == "__MACOSX":
            continue
        if any(len(os.fsencode(p)) > MAX_NAME_BYTES for p in parts):
            raise DataError(
                f"{name}: the entry {_entry(raw)} has a file or folder name longer than "
                f"{MAX_NAME_BYTES} bytes."
            )
        out.append((info, parts))
    # a name used both for a file and for a folder (or twice for a file: the second would
    # silently replace the first) cannot be unpacked as given
    folders = {parts[:i] for info, parts in out for i in range(1, len(parts))}
    folders |= {parts for info, parts in out if info.is_dir()}
    files: set[tuple[str, ...]] = set()
    for info, parts in out:
        if info.is_dir():
            continue
        if parts in folders or parts in files:
            what = "a file and a folder" if parts in folders else "two files"
            raise DataError(f"{name}: the entry {_entry(info.filename)} names {what}.")
        files.add(parts)
    return out


def _entry(raw: str) -> str:
    """A zip entry's name for a sentence, shortened."""
    return repr(raw) if len(raw) <= 80 else repr(raw[:60] + "...")


def _move_into(staging: Path, dest: Path, files: list[tuple[str, ...]]) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    for entry in staging.iterdir():
        target = dest / entry.name
        if target.is_dir() and entry.is_dir():
            shutil.copytree(entry, target, dirs_exist_ok=True)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    return sorted({dest.joinpath(*parts) for parts in files})


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024**2 else f"{n / 1024**2:.0f} MiB"


size_text = _size
