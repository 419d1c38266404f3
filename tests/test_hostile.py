"""Hostile input: every case is generated here, and each one asserts a clear refusal, an
unchanged workspace and, where a file outside the upload is named, that it is never read.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

import pytest
from conftest import write_image

from hiercore.ingest import import_files
from hiercore.store import Workspace

# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def file_access_spy():
    """Record every path opened, stat'ed or listed while the block runs."""
    seen: list[str] = []
    patched = {
        (builtins, "open"),
        (io, "open"),
        (os, "open"),
        (os, "stat"),
        (os, "lstat"),
        (os, "scandir"),
        (os, "listdir"),
        (os, "access"),
    }
    originals = {(mod, name): getattr(mod, name) for mod, name in patched}

    def spy(original):
        def wrapper(path=".", *args, **kwargs):
            if isinstance(path, str | bytes | os.PathLike):
                seen.append(os.fsdecode(os.fspath(path)))
            return original(path, *args, **kwargs)

        return wrapper

    for (mod, name), original in originals.items():
        setattr(mod, name, spy(original))
    try:
        yield seen
    finally:
        for (mod, name), original in originals.items():
            setattr(mod, name, original)


def state(ws: Workspace, pid: int) -> tuple:
    """What an import could change: images, labels, the taxonomy and its history, files."""
    files = sorted(
        p.relative_to(ws.root).as_posix() for p in (ws.root / "projects").rglob("*") if p.is_file()
    )
    return (
        ws.images(pid).to_dict("records"),
        ws.taxonomy(pid).to_dict(),
        ws.history(pid),
        files,
    )


@pytest.fixture
def ws(tmp_path):
    with Workspace(tmp_path / "ws") as w:
        yield w


@pytest.fixture
def secret(tmp_path) -> Path:
    """A real image outside every upload: a manifest must never reach it."""
    return write_image(tmp_path / "outside" / "secret.png", (200, 10, 10))


def climb_to(target: Path) -> str:
    """A relative path that, followed from any folder, climbs to / and down to `target`."""
    return "../" * 40 + str(target).lstrip("/")


def write_manifest(path: Path, cells: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["path,class"] + [f'"{c}",Aves' for c in cells]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- D1: manifest paths


def hostile_cells(secret: Path) -> dict[str, tuple[str, str]]:
    """case -> (path cell, words the refusal must contain)."""
    return {
        "etc-passwd": ("/etc/passwd", "absolute path"),
        "proc-environ": ("/proc/self/environ", "absolute path"),
        "absolute-real-image": (str(secret), "absolute path"),
        "dot-dot": (climb_to(secret), "points outside the upload"),
        "backslash-dot-dot": (climb_to(secret).replace("/", "\\"), "points outside the upload"),
        "windows-drive": ("C:\\outside\\secret.png", "absolute path"),
        "home": ("~/secret.png", "absolute path"),
    }


CASES = list(hostile_cells(Path("/x")))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("packed", ["loose", "zip"])
def test_manifest_cannot_name_a_file_outside_the_upload(ws, tmp_path, secret, case, packed):
    pid = ws.create_project("p")
    before = state(ws, pid)
    cell, words = hostile_cells(secret)[case]
    manifest = write_manifest(tmp_path / "upload" / "manifest.csv", [cell])
    upload = manifest
    if packed == "zip":
        upload = tmp_path / "upload" / "pack.zip"
        with zipfile.ZipFile(upload, "w") as zf:
            zf.write(manifest, "pack/manifest.csv")
    with file_access_spy() as seen:
        summary = import_files(ws, pid, [upload])
    assert summary.added == 0 and summary.nodes_added == 0
    assert len(summary.rejected) == 1
    name, why = summary.rejected[0]
    assert name == cell
    assert words in why and "manifest.csv line 2" in why
    assert summary.sentence().count(".") >= 1 and "refused" in summary.sentence()
    touched = [p for p in seen if "outside" in p or p.startswith(("/etc", "/proc", "C:", "~"))]
    assert touched == []
    assert state(ws, pid) == before


def test_refusal_does_not_reveal_whether_the_file_exists(ws, tmp_path, secret):
    pid = ws.create_project("p")
    manifest = write_manifest(
        tmp_path / "m.csv", [str(secret), str(secret.with_name("missing.png"))]
    )
    rejected = import_files(ws, pid, [manifest]).rejected
    reasons = [why.replace("line 2", "line N").replace("line 3", "line N") for _, why in rejected]
    assert len(reasons) == 2 and reasons[0] == reasons[1]


def test_manifest_next_to_an_unuploaded_image_does_not_import_it(ws, tmp_path):
    """Files beside a manifest on the server are not part of the upload."""
    pid = ws.create_project("p")
    beside = write_image(tmp_path / "upload" / "beside.png")
    manifest = write_manifest(tmp_path / "upload" / "m.csv", ["beside.png"])
    with file_access_spy() as seen:
        summary = import_files(ws, pid, [manifest])
    assert summary.added == 0
    assert summary.rejected == [("beside.png", "listed in m.csv line 2 but not uploaded")]
    assert str(beside) not in seen
    assert ws.images(pid).empty


def test_zip_manifest_resolves_inside_the_zip_and_refuses_the_rest(ws, tmp_path, secret):
    pid = ws.create_project("p")
    src = tmp_path / "src"
    write_image(src / "img" / "a.png", (1, 2, 3))
    write_image(src / "img" / "b.png", (4, 5, 6))
    manifest = write_manifest(
        src / "labels" / "m.csv",
        ["../img/a.png", "./../img/sub/../b.png", str(secret), climb_to(secret)],
    )
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in [src / "img" / "a.png", src / "img" / "b.png", manifest]:
            zf.write(p, "wrapper/" + p.relative_to(src).as_posix())
    with file_access_spy() as seen:
        summary = import_files(ws, pid, [archive])
    assert (summary.added, summary.labelled) == (2, 2)
    assert [why.split(" in ")[0] for _, why in summary.rejected] == [
        "an absolute path",
        "points outside the upload ('..')",
    ]
    assert not [p for p in seen if "outside" in p]
    assert sorted(ws.images(pid)["name"]) == ["a.png", "b.png"]
    assert set(ws.images(pid)["label"]) == {"Aves"}


def test_a_shared_file_name_needs_the_folder_to_tell_the_files_apart(ws, tmp_path):
    pid = ws.create_project("p")
    manifest = write_manifest(tmp_path / "m.csv", ["set1/a.png", "a.png"])
    pack = tmp_path / "pack.zip"
    with zipfile.ZipFile(pack, "w") as zf:
        zf.write(manifest, "m.csv")
        for k in range(2):
            image = write_image(tmp_path / f"set{k}" / "a.png", (9 + 90 * k, 9, 9))
            zf.write(image, f"set{k}/a.png")
    summary = import_files(ws, pid, [pack])
    assert summary.rejected == [
        ("a.png", "listed in m.csv line 3, but several uploaded files have that name")
    ]
    # set1/a.png is labelled by its row; set0/a.png, listed by no row, comes in unlabelled
    assert (summary.added, summary.labelled) == (2, 1)


def test_the_cli_manifest_reader_still_takes_local_paths(tmp_path, secret):
    """`python -m hiercore train --data m.csv` reads the user's own files, as documented."""
    from hiercore.data import samples_from_manifest

    manifest = write_manifest(tmp_path / "data" / "m.csv", ["img/a.png", str(secret)])
    _, samples = samples_from_manifest(manifest)
    assert [s.path for s in samples] == [str(tmp_path / "data" / "img" / "a.png"), str(secret)]
    assert [s.extra["path_cell"] for s in samples] == ["img/a.png", str(secret)]


# ---------------------------------------------------------------- D9: what HTTP serves


@pytest.fixture(scope="module")
def served_studio(tmp_path_factory):
    from test_webapp_api import free_port

    from webapp.app import launch

    root = tmp_path_factory.mktemp("served")
    port = free_port()
    app, studio = launch(root / "ws", port=port, prevent_thread_lock=True)
    pid = studio.workspace.create_project("p")
    image = write_image(root / "a.png")
    studio.workspace.add_images(pid, [("a.png", image)])
    (studio.root / "exports" / str(pid)).mkdir(parents=True)
    (studio.root / "exports" / str(pid) / "taxonomy.csv").write_text("a,b\n")
    (studio.root / "notes.txt").write_text("not for the web")
    yield f"http://127.0.0.1:{port}/gradio_api/file=", studio, pid
    app.close()
    studio.close()


def http_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("name", ["hiertune.sqlite", "hiertune.sqlite-wal", "hiertune.sqlite-shm"])
def test_the_database_is_not_served(served_studio, name):
    base, studio, pid = served_studio
    path = studio.root.resolve() / name
    assert path.is_file()  # it exists, so a refusal is the block and not a 404
    assert http_status(base + str(path)) != 200
    sneaky = studio.root.resolve() / "projects" / str(pid) / "images" / ".." / ".." / ".." / name
    assert http_status(base + str(sneaky)) != 200


def test_only_images_and_exports_are_served(served_studio):
    base, studio, pid = served_studio
    image = studio.workspace.images(pid)["path"].iloc[0]
    assert http_status(base + str(Path(image).resolve())) == 200
    export = studio.root.resolve() / "exports" / str(pid) / "taxonomy.csv"
    assert http_status(base + str(export)) == 200
    assert http_status(base + str(studio.root.resolve() / "notes.txt")) != 200


def test_the_browser_key_survives_a_restart_and_is_not_served(served_studio, tmp_path):
    # a key drawn at each start lost the browser's open project on every restart
    from webapp.app import BROWSER_SECRET, browser_secret

    base, studio, _ = served_studio
    path = studio.root.resolve() / BROWSER_SECRET
    assert path.is_file() and path.stat().st_mode & 0o077 == 0
    assert browser_secret(studio.root) == path.read_text() and len(path.read_text()) >= 24
    assert http_status(base + str(path)) != 200
    assert browser_secret(tmp_path) == browser_secret(tmp_path) != path.read_text()


# ---------------------------------------------------------------- D2: deep and cyclic trees


def edge_csv(rows: list[tuple[str, str, str]]) -> bytes:
    lines = ["id,name,parent_id,description"] + [f"{i},{n},{p}," for i, n, p in rows]
    return ("\n".join(lines) + "\n").encode()


def chain(n: int, prefix: str = "n", top: str = "") -> list[tuple[str, str, str]]:
    return [(f"{prefix}{i}", f"N{prefix}{i}", f"{prefix}{i - 1}" if i else top) for i in range(n)]


@pytest.mark.timeout(30)
def test_a_5000_node_chain_is_refused_quickly_by_the_depth_limit():
    from hiercore.errors import TaxonomyError
    from hiercore.taxonomy.formats import load_taxonomy
    from hiercore.taxonomy.pathtree import MAX_DEPTH

    with pytest.raises(TaxonomyError) as exc:
        load_taxonomy(edge_csv(chain(5000)), "edge_csv", name="taxonomy.csv")
    message = str(exc.value)
    assert message == (
        f"taxonomy.csv line {MAX_DEPTH + 2}: 'Nn{MAX_DEPTH}' is {MAX_DEPTH + 1} levels deep, "
        f"more than the {MAX_DEPTH} a taxonomy may have."
    )


@pytest.mark.timeout(30)
def test_5000_nodes_at_the_depth_limit_validate_quickly():
    from hiercore.taxonomy.formats import load_taxonomy
    from hiercore.taxonomy.pathtree import MAX_DEPTH

    rows = [r for k in range(10) for r in chain(MAX_DEPTH, prefix=f"c{k}-")]
    tax = load_taxonomy(edge_csv(rows), "edge_csv", name="taxonomy.csv")
    assert len(tax) == 10 * MAX_DEPTH and tax.max_depth == MAX_DEPTH


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cycle_length", [1, 3, 5000])
def test_a_cycle_in_a_big_file_is_refused_naming_a_node(cycle_length):
    from hiercore.errors import TaxonomyError
    from hiercore.taxonomy.formats import load_taxonomy

    rows = chain(400)  # a long tail hanging from the cycle, listed first
    rows[0] = ("n0", "Nn0", "k0")
    ring = [(f"k{i}", f"K{i}", f"k{(i + 1) % cycle_length}") for i in range(cycle_length)]
    with pytest.raises(TaxonomyError) as exc:
        load_taxonomy(edge_csv(rows + ring), "edge_csv", name="taxonomy.csv")
    message = str(exc.value)
    assert message.startswith("taxonomy.csv line 402: 'K0' is its own ancestor (K0 -> ")
    assert message.endswith("-> K0).") and "\n" not in message and len(message) < 300


def test_a_wide_csv_deeper_than_the_limit_is_refused():
    from hiercore.errors import TaxonomyError
    from hiercore.taxonomy.formats import load_taxonomy
    from hiercore.taxonomy.pathtree import MAX_DEPTH

    header = ",".join(f"rank{i}" for i in range(MAX_DEPTH + 1))
    row = ",".join(f"n{i}" for i in range(MAX_DEPTH + 1))
    with pytest.raises(TaxonomyError, match=r"line 2: 'n500' is 501 levels deep"):
        load_taxonomy(f"{header}\n{row}\n".encode(), "wide_csv", name="wide.csv")


# ---------------------------------------------------------------- D5: prompt templates

BAD_TEMPLATES = {
    "width": ("{name:x>5000000}", "formats the field {name} with ':x>5000000'"),
    "nested-spec": ("{name:{parent}}", "formats the field {name}"),
    "conversion": ("a {name!r}", "formats the field {name} with '!r'"),
    "attribute": ("{name.__class__}", "unknown field {name.__class__}"),
    "index": ("{name[0]}", "unknown field {name[0]}"),
    "positional": ("{} {name}", "unknown field {}"),
    "long": ("a photo of {name} " + "x" * 400, "characters long"),
    "broken": ("a {name", "not a valid template"),
}


@pytest.mark.parametrize("case", sorted(BAD_TEMPLATES))
def test_bad_templates_are_refused_by_the_config_and_the_form(case):
    from hiercore.config import RunConfig
    from hiercore.errors import HierTuneError
    from webapp.tabs.train import build_config

    template, words = BAD_TEMPLATES[case]
    form = {"model": "default", "epochs": 1, "batch_size": 8, "lr": 1e-4}
    for make in (
        lambda: RunConfig(templates=["a photo of a {name}.", template]),
        lambda: RunConfig.from_dict({"templates": [template]}),
        lambda: build_config({**form, "templates": "a photo of a {name}.\n" + template}),
    ):
        with pytest.raises(HierTuneError) as exc:
            make()
        message = str(exc.value)
        assert words in message and message.endswith(".") and "\n" not in message
        assert len(message) < 300


def test_too_many_or_non_text_templates_are_refused():
    from hiercore.config import RunConfig
    from hiercore.errors import HierTuneError
    from hiercore.models.prompts import MAX_TEMPLATES

    with pytest.raises(HierTuneError, match=f"at most {MAX_TEMPLATES} prompt templates"):
        RunConfig(templates=[f"{{name}} {i}" for i in range(MAX_TEMPLATES + 1)])
    for bad in ("a photo of a {name}.", [3], {"t": "{name}"}):
        with pytest.raises(HierTuneError, match="must be a list of strings"):
            RunConfig.from_dict({"templates": bad})
    good = ["a photo of a {name}, a kind of {parent}.", "{path}: {description} {root} {name}"]
    assert RunConfig(templates=good).templates == good


# ---------------------------------------------------------------- D11: names in Markdown

EVIL_NAME = "<img src=x onerror=alert(1)> **bold** [link](javascript:alert(1)) <script>x</script>"


def rendered(markdown: str) -> str:
    """The HTML a CommonMark renderer makes of `markdown` (raw HTML allowed, as in Gradio)."""
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").render(markdown)


def assert_inert(markdown: str) -> None:
    out = rendered(markdown)
    for active in ("<img", "<script", "<a ", "<strong>bold"):
        assert active not in out, (active, out)
    assert "&lt;img src=x onerror=alert(1)&gt;" in out  # shown as the characters it is


def test_names_with_html_or_markdown_show_as_text(tmp_path):
    from webapp.app import header_text
    from webapp.feedback import ok, problem
    from webapp.state import Studio
    from webapp.tabs.annotate import image_info
    from webapp.tabs.taxonomy import describe_node
    from webapp.tabs.train import status_text

    studio = Studio(tmp_path / "ws")
    try:
        ws = studio.workspace
        pid = ws.create_project(EVIL_NAME)
        node = ws.add_node(pid, EVIL_NAME)
        image = write_image(tmp_path / "x.png")
        ws.add_images(pid, [(EVIL_NAME + ".png", image)], node_id=node)
        row = ws.images(pid).iloc[0]
        assert_inert(image_info(row))
        assert_inert(header_text(studio, pid))
        assert_inert(describe_node(studio, pid, ws.taxonomy(pid), node))
        status = {"state": "failed", "name": EVIL_NAME, "error": EVIL_NAME}
        assert_inert(status_text(status))
        assert_inert(ok(f"Created project {EVIL_NAME!r}."))
        assert_inert(problem(EVIL_NAME))
    finally:
        studio.close()


def test_a_user_error_toast_shows_html_as_text(monkeypatch):
    import webapp.feedback as feedback
    from hiercore.errors import HierTuneError

    toasts = []
    monkeypatch.setattr(feedback.gr, "Warning", toasts.append)

    @feedback.user_errors(1)
    def handler():
        raise HierTuneError(f"The node {EVIL_NAME!r} is bad.")

    assert_inert(handler())
    assert "<img" not in toasts[0] and "&lt;img src=x" in toasts[0]


# ---------------------------------------------------------------- D12: CSV formula injection

FORMULAS = ['=HYPERLINK("http://evil","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "'=x"]


def formula_taxonomy():
    from hiercore.taxonomy import Taxonomy

    nodes = [{"id": "top", "name": "=top", "parent": None, "description": "=1+1"}]
    nodes += [
        {"id": f"-{i}" if i else "-0.5", "name": name, "parent": "top", "description": ""}
        for i, name in enumerate([*FORMULAS, "-0.5", "plain"])
    ]
    return Taxonomy.from_nodes(nodes, level_names=["@rank", "-rank"])


def assert_no_formula_cells(text: str) -> None:
    import csv

    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only numbers may start like a formula


@pytest.mark.parametrize("fmt", ["wide_csv", "edge_csv"])
def test_exported_csv_cells_cannot_run_as_formulas_and_read_back(fmt):
    import csv

    from hiercore.taxonomy.formats import export_taxonomy, load_taxonomy

    tax = formula_taxonomy()
    text = export_taxonomy(tax, fmt)
    assert_no_formula_cells(text)
    cells = {cell for row in csv.reader(io.StringIO(text)) for cell in row}
    assert "-0.5" in cells  # a number stays a number
    back = load_taxonomy(text.encode(), fmt, name="t.csv")
    names = sorted(back.name(n) for n in back.iter_dfs())
    assert names == sorted(tax.name(n) for n in tax.iter_dfs())
    top = back.find_by_path(["=top"])
    assert back.description(top) == "=1+1"


def test_the_studio_taxonomy_export_is_guarded(tmp_path):
    from webapp.state import Studio
    from webapp.tabs.taxonomy import export_taxonomy_file

    studio = Studio(tmp_path / "ws")
    try:
        pid = studio.workspace.create_project("p")
        studio.workspace.set_taxonomy(pid, formula_taxonomy())
        for fmt in ("wide_csv", "edge_csv"):
            assert_no_formula_cells(export_taxonomy_file(studio, pid, fmt).read_text())
    finally:
        studio.close()


def test_spreadsheet_guard_round_trips_and_keeps_numbers():
    from hiercore.spreadsheet import guard_cell, unguard_cell

    for cell in [*FORMULAS, "'hi", "''=x", "a=b", "", "-", "-inf"]:
        assert unguard_cell(guard_cell(cell)) == cell
    for number in ["-0.5", "+3", "-1e5", "-.5", "12"]:
        assert guard_cell(number) == number
    assert guard_cell("-inf") == "'-inf" and guard_cell(-0.5) == -0.5


# ---------------------------------------------------------------- D7: checkpoints and kill -9


class Killed(BaseException):
    """Stands for kill -9: nothing below the raise gets to clean up after it."""


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    from imagegen import write_tree

    from hiercore.data import samples_from_folder_tree, split_samples
    from hiercore.taxonomy import LevelIndex

    tax, samples = samples_from_folder_tree(write_tree(tmp_path_factory.mktemp("t"), per_leaf=4))
    train_s, val_s = split_samples(samples, LevelIndex.build(tax), 0.25, seed=0)
    return tax, train_s, val_s


def test_a_kill_during_a_checkpoint_save_keeps_the_previous_checkpoint(
    tiny_split, tmp_path, monkeypatch
):
    import json

    from hiercore.config import RunConfig
    from hiercore.training import train

    tax, train_s, val_s = tiny_split

    def config(epochs):
        return RunConfig(model="tiny-random", epochs=epochs, batch_size=8, device="cpu")

    ckpt = tmp_path / "checkpoint"
    train(config(1), tax, train_s, val_s, tmp_path)
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 1
    first_steps = state["step"]

    # epoch 2 is trained, then the process dies while its optimiser state is renamed into
    # place, leaving a half-written temp file behind as kill -9 would
    real_replace = os.replace

    def dying_replace(src, dst, *args, **kwargs):
        if Path(dst).name.startswith("optimizer-epoch2"):
            Path(src).write_bytes(b"half an optim")  # what was on disk when it died
            raise Killed
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", dying_replace)
    monkeypatch.setattr(os, "unlink", lambda *a, **k: None)  # a killed process removes nothing
    with pytest.raises(Killed):
        train(config(2), tax, train_s, val_s, tmp_path, resume=True)
    monkeypatch.undo()
    leftovers = sorted(p.name for p in ckpt.iterdir())
    assert any(n.endswith(".tmp") for n in leftovers), leftovers
    assert json.loads((ckpt / "state.json").read_text()) == state  # still the whole epoch 1
    for name in state["files"].values():
        assert (ckpt / name).stat().st_size > 0

    # resuming picks up epoch 1's checkpoint; no checkpoint file is written in place
    events, opened = [], []
    real_open = io.open

    def watching_open(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and Path(file).parent == ckpt and "w" in mode:
            opened.append(Path(file).name)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", watching_open)
    monkeypatch.setattr(builtins, "open", watching_open)
    result = train(config(2), tax, train_s, val_s, tmp_path, progress=events.append, resume=True)
    monkeypatch.undo()
    assert result.state == "finished"
    assert next(e.step for e in events if e.phase == "train") == first_steps + 1
    assert opened and all(n.endswith(".tmp") for n in opened), opened
    final = json.loads((ckpt / "state.json").read_text())
    assert final["epoch"] == 2
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(
        ["state.json", *final["files"].values()]
    )


def test_a_damaged_checkpoint_is_one_sentence(tiny_split, tmp_path):
    import json

    from hiercore.config import RunConfig
    from hiercore.errors import HierTuneError
    from hiercore.training import train

    tax, train_s, val_s = tiny_split
    config = RunConfig(model="tiny-random", epochs=1, batch_size=8, device="cpu")
    train(config, tax, train_s, val_s, tmp_path)
    files = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["files"]
    (tmp_path / "checkpoint" / files["optimizer"]).write_bytes(b"")
    with pytest.raises(HierTuneError, match=r"checkpoint in .* is damaged") as exc:
        train(config, tax, train_s, val_s, tmp_path, resume=True)
    assert "\n" not in str(exc.value)


CHECKPOINT_KILLER = """
import json, os, signal, sys
from pathlib import Path

from hiercore.config import RunConfig
from hiercore.data import Sample
from hiercore.taxonomy import Taxonomy
from hiercore.training import train

out, point, data = sys.argv[1:]
spec = json.loads(Path(data).read_text())


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if point == "written":  # the temp file of epoch 2's adapter written, not yet synced
    real_fsync = os.fsync

    def fsync(fd):
        if "adapter-epoch2" in os.readlink(f"/proc/self/fd/{fd}"):
            die()
        return real_fsync(fd)

    os.fsync = fsync
elif point == "rename":  # epoch 2's optimiser state whole in its temp file, not renamed
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name.startswith("optimizer-epoch2"):
            die()
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
elif point == "commit":  # epoch 2's state.json in place, epoch 1's files not yet removed
    os.unlink = lambda *args, **kwargs: die()
config = RunConfig(**spec["config"])
taxonomy = Taxonomy.from_dict(spec["taxonomy"])
samples = [[Sample(p, n) for p, n in spec[side]] for side in ("train", "val")]
train(config, taxonomy, *samples, out)
print("finished")
"""


@pytest.mark.parametrize("point", ["written", "rename", "commit"])
def test_a_kill_9_during_a_checkpoint_save_keeps_a_whole_checkpoint(tiny_split, tmp_path, point):
    """The subprocess version of the test above (#9 D7): a real SIGKILL while epoch 2's
    checkpoint is saved leaves a whole checkpoint (epoch 1's, or epoch 2's once its
    state.json is in place) that loads and from which the run resumes."""
    import json
    import signal
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    from hiercore.config import RunConfig
    from hiercore.run_folder import RunFolder
    from hiercore.training import train

    tax, train_s, val_s = tiny_split
    settings = dict(model="tiny-random", batch_size=8, device="cpu", eval_every_epoch=False)
    spec = {
        "config": {**settings, "epochs": 2},
        "taxonomy": tax.to_dict(),
        "train": [(s.path, s.node_id) for s in train_s],
        "val": [(s.path, s.node_id) for s in val_s],
    }
    (tmp_path / "data.json").write_text(json.dumps(spec))
    (tmp_path / "killer.py").write_text(CHECKPOINT_KILLER)
    out = tmp_path / "run"
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(tmp_path / "killer.py"), str(out), point, str(tmp_path / "data.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]

    folder = RunFolder(out)
    state, parts = folder.checkpoint_state()
    assert state["epoch"] == (2 if point == "commit" else 1)
    for path in parts.values():  # every part the commit point names is whole and loads
        assert path.stat().st_size > 0, path.name
    assert load_file(str(parts["adapter"]))
    torch.load(parts["optimizer"], map_location="cpu", weights_only=True)
    json.loads(parts["history"].read_text())
    assert folder.read_status().state == "training"  # the run never reached its end

    events = []
    result = train(
        RunConfig(**settings, epochs=3), tax, train_s, val_s, out, events.append, resume=True
    )
    assert result.state == "finished"
    assert next(e.step for e in events if e.phase == "train") == state["step"] + 1
    final, parts = folder.checkpoint_state()
    assert final["epoch"] == 3
    left = sorted(p.name for p in folder.checkpoint_dir.iterdir())
    assert left == sorted(["state.json", *(p.name for p in parts.values())])


# ---------------------------------------------------------------- D3: image sizes


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares `width` x `height` but holds a few bytes of data (a bomb's shape)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


SIZE_CASES = {
    "strip": ((1, 400), "aspect ratio beyond the 50:1 limit"),
    "tall": ((5000, 60), "aspect ratio beyond the 50:1 limit"),
    "over-the-limit": ((12_000, 9_000), "more than the 100000000"),
    "bomb": ((60_000, 60_000), "more than the 100000000"),
}


@pytest.mark.parametrize("case", sorted(SIZE_CASES))
def test_huge_or_extreme_images_are_refused_before_decoding(ws, tmp_path, monkeypatch, case):
    from PIL import ImageFile

    from hiercore.data import image_problem
    from hiercore.errors import DataError
    from hiercore.images import open_rgb

    (width, height), words = SIZE_CASES[case]
    image = png_header(tmp_path / f"{case}.png", width, height)
    pid = ws.create_project("p")
    before = state(ws, pid)

    def no_decoding(self):
        raise AssertionError("an image was decoded before its size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    summary = import_files(ws, pid, [image])
    assert summary.added == 0
    [(name, why)] = summary.rejected
    assert name == f"{case}.png" and words in why
    assert state(ws, pid) == before
    with pytest.raises(DataError) as exc:
        open_rgb(image)  # the predict path (API and studio)
    assert words in str(exc.value) and str(exc.value).endswith(".")
    assert words in image_problem(image)  # the training path


def test_a_normal_panorama_is_still_imported(ws, tmp_path):
    pid = ws.create_project("p")
    panorama = tmp_path / "wide.png"
    from PIL import Image

    Image.new("RGB", (400, 40), "blue").save(panorama)
    assert import_files(ws, pid, [panorama]).added == 1


def test_an_uploaded_strip_is_refused_before_prediction_resizes_it(small_taxonomy):
    from PIL import Image

    from hiercore.errors import DataError
    from hiercore.predict import Predictor

    predictor = Predictor.zero_shot(small_taxonomy, "tiny-random", device="cpu")
    with pytest.raises(DataError, match=r"^The image is refused: 2x400 pixels is an aspect ratio"):
        predictor.predict([Image.new("RGB", (2, 400))])
    assert len(predictor.predict([Image.new("RGB", (40, 30))])) == 1


# ---------------------------------------------------------------- D14: run configs


@pytest.fixture(scope="module")
def studio_app(tmp_path_factory):
    """A built (not launched) studio whose handlers and API functions are called directly;
    the training queue's train function is a no-op, so a config that passes would queue."""
    from webapp.app import build_app
    from webapp.state import Studio

    studio = Studio(tmp_path_factory.mktemp("studio"))
    studio.queue.train_fn = lambda *args: {}
    app = build_app(studio)
    fns = {f.api_name: f.fn for f in app.fns.values() if f.api_name}
    yield studio, fns
    studio.close()


def trainable_project(studio, tmp_path: Path) -> int:
    """A project a valid config would queue a run for: a taxonomy and two labelled images."""
    ws = studio.workspace
    pid = ws.create_project(f"p{len(ws.list_projects())}")
    node = ws.add_node(pid, "cat")
    ws.add_node(pid, "dog")
    images = [write_image(tmp_path / f"{i}.png", (i * 40, 20, 20)) for i in range(2)]
    ws.add_images(pid, [(p.name, p) for p in images], node_id=node)
    return pid


BAD_CONFIGS = {
    "alpha infinity": ({"alpha": float("inf")}, "alpha must be a finite number"),
    "lr nan": ({"lr": float("nan")}, "lr must be a finite number"),
    "negative max_steps": ({"max_steps": -5}, "max_steps=-5 is out of range"),
    "huge lr": ({"lr": 1e300}, "lr=1e+300 is out of range"),
    "zero lr": ({"lr": 0}, "lr=0.0 is out of range: it must be above 0"),
    "meta device": ({"device": "meta"}, "device must be auto, cpu, cuda"),
    "text epochs": ({"epochs": "5"}, "epochs must be a number"),
    "fractional epochs": ({"epochs": 2.5}, "epochs must be a whole number"),
    "absurd epochs": ({"epochs": 1e20}, "epochs=100000000000000000000 is out of range"),
    "absurd batch": ({"batch_size": 10**6}, "batch_size=1000000 is out of range"),
    "huge seed": ({"seed": 2**70}, "seed=1180591620717411303424 is out of range"),
    "bool rank": ({"rank": True}, "rank must be a number"),
    "bad targets": ({"lora_targets": "attn"}, "lora_targets must be a non-empty list"),
    "bad template": ({"templates": ["{name:>99999}"]}, "formats the field {name}"),
}


def assert_one_sentence(message: str, words: str) -> None:
    assert words in message, message
    assert message.endswith(".") and "\n" not in message and len(message) < 300, message


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_run_configs_are_refused_before_queueing(studio_app, tmp_path, case):
    import gradio as gr

    from hiercore.config import RunConfig
    from hiercore.errors import HierTuneError

    studio, fns = studio_app
    settings, words = BAD_CONFIGS[case]
    with pytest.raises(HierTuneError) as exc:
        RunConfig.from_dict(settings)
    assert_one_sentence(str(exc.value), words)

    pid = trainable_project(studio, tmp_path)
    with pytest.raises(gr.Error) as exc:
        fns["start_training"](str(pid), settings)
    assert_one_sentence(exc.value.message, words)
    assert studio.workspace.list_runs(pid).empty


FORM_DEFAULTS = dict(
    model="tiny-random", pretrained="", lora="vision", rank=8, lora_alpha=16.0, alpha=1.0,
    lam=1.0, eps=0.1, epochs=1, batch_size=8, lr=5e-4, val_fraction=0.2, max_steps=None,
    seed=0, templates="",
)  # fmt: skip


def form_inputs(changes: dict | None = None) -> list:
    """What the Train form's Start sends: the form's defaults, FORM_DEFAULTS, `changes`."""
    from webapp.tabs.train import FORM_FIELDS, default_form_config, form_values

    values = {**form_values(default_form_config()), **FORM_DEFAULTS, **(changes or {})}
    return [values[name] for name in FORM_FIELDS]


BAD_FORMS = {
    "infinite alpha": ({"alpha": float("inf")}, "alpha must be a finite number"),
    "infinite max steps": ({"max_steps": float("inf")}, "max_steps must be a finite number"),
    "negative max steps": ({"max_steps": -5}, "max_steps=-5 is out of range"),
    "nan epochs": ({"epochs": float("nan")}, "Give a value for epochs"),
    "huge lr": ({"lr": 1e300}, "lr=1e+300 is out of range"),
    "huge rank": ({"rank": 1e30}, "rank=1000000000000000019884624838656 is out of range"),
    "huge seed": ({"seed": 1e30}, "seed=1000000000000000019884624838656 is out of range"),
    "bad template": ({"templates": "{name!r}"}, "formats the field {name} with '!r'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FORMS))
def test_the_train_form_shows_one_sentence_and_queues_nothing(studio_app, tmp_path, case):
    studio, fns = studio_app
    changes, words = BAD_FORMS[case]
    pid = trainable_project(studio, tmp_path)
    status, *_ = fns["start"](pid, "", *form_inputs(changes))
    assert status.startswith("⚠️")
    assert_one_sentence(status.replace("\\", ""), words)
    assert studio.workspace.list_runs(pid).empty


def test_a_good_config_still_queues_from_the_form_and_the_api(studio_app, tmp_path):
    studio, fns = studio_app
    pid = trainable_project(studio, tmp_path)
    status, *_ = fns["start"](pid, "", *form_inputs())
    assert status.startswith("✅"), status
    out = fns["start_training"](str(pid), {"epochs": 2.0, "max_steps": 3, "device": "cpu"})
    assert out["run_id"] > 0
    assert len(studio.workspace.list_runs(pid)) == 2
    assert studio.workspace.get_run(out["run_id"])["config"]["epochs"] == 2


# ---------------------------------------------------------------- D8: raw exceptions

DEEP_JSON = {
    "brackets": "[" * 100_000 + "]" * 100_000,
    "deep nodes": '{"nodes": ' + "[" * 5000 + "]" * 5000 + "}",
    "deep items": '{"items": [' + '{"value": "a", "children": [' * 3000 + "]}" * 3000 + "]}",
}


@pytest.mark.parametrize("case", sorted(DEEP_JSON))
def test_deeply_nested_json_is_one_sentence(ws, tmp_path, case):
    from hiercore.errors import TaxonomyError
    from hiercore.taxonomy.formats import load_taxonomy
    from webapp.tabs.taxonomy import import_taxonomy_file

    text = DEEP_JSON[case]
    for fmt in (None, "json", "labelstudio"):
        with pytest.raises(TaxonomyError) as exc:
            load_taxonomy(text.encode(), fmt, name="deep.json")
        assert_one_sentence(str(exc.value), "deep.json: the JSON is nested more than")
    upload = tmp_path / "upload" / "deep.json"
    upload.parent.mkdir()
    upload.write_text(text)

    class FakeStudio:
        workspace = ws

    pid = ws.create_project("p")
    before = state(ws, pid)
    with pytest.raises(TaxonomyError) as exc:
        import_taxonomy_file(FakeStudio(), pid, str(upload), False)
    assert str(tmp_path) not in str(exc.value)
    assert state(ws, pid) == before


@pytest.mark.parametrize("fmt", ["json", "labelstudio"])
def test_a_taxonomy_at_the_depth_limit_round_trips_through_json(fmt):
    from hiercore.taxonomy.formats import export_taxonomy, load_taxonomy
    from hiercore.taxonomy.pathtree import MAX_DEPTH

    tax = load_taxonomy(edge_csv(chain(MAX_DEPTH)), "edge_csv", name="chain.csv")
    back = load_taxonomy(export_taxonomy(tax, fmt).encode(), fmt, name="chain.json")
    assert back.max_depth == MAX_DEPTH and back.to_dict() == tax.to_dict()


def zip_of(path: Path, entries: list[str]) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(buffer, "PNG")
    png = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for entry in entries:
            if entry.endswith("/"):
                zf.writestr(zipfile.ZipInfo(entry), b"")
            else:
                zf.writestr(entry, png)
    return path


BAD_ZIPS = {
    "long name": (["cats/" + "x" * 300 + ".png"], "longer than 255 bytes"),
    "long folder": (["c" * 256 + "/a.png"], "longer than 255 bytes"),
    "file then folder": (["cats/a.png", "cats/a.png/b.png"], "names a file and a folder"),
    "folder entry on a file": (["cats/a.png", "cats/a.png/"], "names a file and a folder"),
    "file over folder": (["cats/", "cats"], "names a file and a folder"),
    "same file twice": (["cats/a.png", "cats/a.png"], "names two files"),
}


@pytest.mark.parametrize("case", sorted(BAD_ZIPS))
def test_zip_entries_the_disk_cannot_hold_are_one_sentence(ws, tmp_path, case):
    import warnings

    from hiercore.errors import DataError

    entries, words = BAD_ZIPS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        archive = zip_of(tmp_path / "upload.zip", entries)
    pid = ws.create_project("p")
    before = state(ws, pid)
    with pytest.raises(DataError) as exc:
        import_files(ws, pid, [archive])
    assert_one_sentence(str(exc.value), words)
    assert str(exc.value).startswith("upload.zip: the entry ")
    assert "/tmp" not in str(exc.value) and str(tmp_path) not in str(exc.value)
    assert state(ws, pid) == before


HUGE_IDS = [10**30, float("inf"), float("nan"), "12abc", -1, 0]


@pytest.mark.parametrize("value", HUGE_IDS, ids=str)
def test_out_of_range_ids_from_the_api_are_one_sentence(studio_app, value):
    import gradio as gr

    studio, fns = studio_app
    for endpoint in ("training_status", "stop_training", "run_metrics"):
        with pytest.raises(gr.Error) as exc:
            fns[endpoint](value)
        message = exc.value.message
        assert message.endswith(".") and "\n" not in message, (endpoint, message)
        assert "SQLite" not in message and "convert" not in message, message
    for bad in (10**30, 2**63):
        with pytest.raises(Exception) as exc:
            studio.workspace.get_run(bad)
        assert str(exc.value).startswith("There is no run with id")
        with pytest.raises(Exception) as exc:
            studio.workspace.get_project(bad)
        assert str(exc.value).startswith("There is no project with id")


def test_predict_refuses_a_non_image_in_one_sentence_without_the_temp_path(studio_app, tmp_path):
    import gradio as gr

    from hiercore.errors import HierTuneError
    from webapp.tabs.predict import predict_upload

    studio, fns = studio_app
    pid = studio.workspace.create_project("predict-me")
    studio.workspace.add_node(pid, "cat")
    fake = tmp_path / "gradio-tmp" / "holiday.png"
    fake.parent.mkdir()
    fake.write_text("not a picture at all")
    with pytest.raises(HierTuneError) as exc:
        predict_upload(str(fake))
    assert_one_sentence(str(exc.value), "holiday.png is not an image")
    assert str(fake.parent) not in str(exc.value)
    with pytest.raises(HierTuneError, match="Upload an image first"):
        predict_upload(None)
    with pytest.raises(gr.Error) as exc:
        fns["predict"](str(pid), str(fake))
    assert_one_sentence(exc.value.message, "holiday.png is not an image")
    assert str(fake.parent) not in exc.value.message
    for k in (float("inf"), float("nan")):
        with pytest.raises(gr.Error, match="k must be a whole number"):
            fns["predict"](str(pid), str(fake), None, k)


def test_an_import_that_refuses_every_file_is_a_warning(ws, tmp_path, monkeypatch):
    import webapp.tabs.annotate as annotate

    toasts = []
    monkeypatch.setattr(annotate.gr, "Warning", toasts.append)
    pid = ws.create_project("p")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    fake = tmp_path / "fake.png"
    fake.write_text("x")
    refused = import_files(ws, pid, [notes, fake])
    line = annotate.import_status_line(refused)
    assert line.startswith("⚠️") and "Nothing was imported" in line.replace("\\", "")
    assert len(toasts) == 1 and "2 refused" in toasts[0]
    mixed = import_files(ws, pid, [write_image(tmp_path / "ok.png"), notes])
    assert annotate.import_status_line(mixed).startswith("⚠️") and len(toasts) == 1
    clean = import_files(ws, pid, [write_image(tmp_path / "ok2.png", (1, 2, 3))])
    assert annotate.import_status_line(clean).startswith("✅")
    # an empty zip holds nothing to refuse and nothing to import: not a success either
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    line = annotate.import_status_line(import_files(ws, pid, [empty]))
    assert line.startswith("⚠️") and "no image files" in line and len(toasts) == 2


# ---------------------------------------------------------------- D13, D15: manifests


def test_a_refused_image_adds_no_node(ws, tmp_path):
    """A manifest row and a class folder whose file is no image leave no node behind."""
    upload = tmp_path / "upload"
    upload.mkdir()
    write_image(upload / "cat.png")
    (upload / "snake.png").write_text("not an image")
    manifest = upload / "manifest.csv"
    manifest.write_text("path,class,kind\ncat.png,Mammalia,Cat\nsnake.png,Reptilia,Snake\n")
    archive = tmp_path / "folders.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(upload / "cat.png", "pets/Mammalia/Dog/dog.png")
        zf.writestr("pets/Aves/Crow/crow.png", b"not an image either")
    pid = ws.create_project("p")
    summary = import_files(ws, pid, [manifest, upload / "cat.png", upload / "snake.png"])
    assert (summary.added, summary.refused) == (1, 1)
    summary = import_files(ws, pid, [archive])
    assert (summary.duplicates, summary.refused) == (1, 1)
    tax = ws.taxonomy(pid)
    paths = {" / ".join(tax.path_names(n)) for n in tax.iter_dfs()}
    assert paths == {"Mammalia", "Mammalia / Cat", "Mammalia / Dog"}
    assert summary.nodes_added == 1


def test_an_import_refusing_everything_leaves_taxonomy_and_history_alone(ws, tmp_path):
    (tmp_path / "snake.png").write_text("not an image")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,class\nsnake.png,Reptilia\n")
    pid = ws.create_project("p")
    before = state(ws, pid)
    summary = import_files(ws, pid, [manifest, tmp_path / "snake.png"])
    assert (summary.added, summary.nodes_added, summary.refused) == (0, 0, 1)
    assert state(ws, pid) == before


def test_nodes_and_images_of_an_import_commit_together(ws, tmp_path, monkeypatch):
    """A failure after the nodes were added (here: while stamping the project) rolls the
    nodes back with the images, and the written files are removed."""
    image = write_image(tmp_path / "cat.png")
    pid = ws.create_project("p")
    before = state(ws, pid)

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(ws, "_touch", broken)
    with pytest.raises(OSError):
        ws.add_labelled_images(pid, [("cat.png", image, ("Mammalia", "Cat"), None)])
    assert state(ws, pid) == before


def test_a_manifest_over_the_row_limit_is_one_sentence(ws, tmp_path, monkeypatch):
    import hiercore.ingest as ingest
    from hiercore.errors import DataError

    monkeypatch.setattr(ingest, "MAX_MANIFEST_ROWS", 50)
    manifest = write_manifest(tmp_path / "big.csv", [f"{i}.png" for i in range(51)])
    pid = ws.create_project("p")
    before = state(ws, pid)
    with pytest.raises(DataError) as exc:
        import_files(ws, pid, [manifest])
    assert_one_sentence(str(exc.value), "big.csv has more than 50 rows, the limit")
    assert state(ws, pid) == before
    ok = write_manifest(tmp_path / "ok.csv", [f"{i}.png" for i in range(50)])
    assert import_files(ws, pid, [ok]).refused == 50


def test_refusals_are_counted_by_reason_with_a_few_examples(ws, tmp_path):
    from hiercore.ingest import MAX_REFUSAL_EXAMPLES

    cells = [f"missing{i}.png" for i in range(300)] + ["/etc/passwd"] * 3 + ["../x.png"]
    manifest = write_manifest(tmp_path / "upload" / "manifest.csv", cells)
    (tmp_path / "upload" / "notes.txt").write_text("x")
    pid = ws.create_project("p")
    summary = import_files(ws, pid, [manifest, tmp_path / "upload" / "notes.txt"])
    assert summary.refused == 305
    assert summary.reasons == {
        "listed but not uploaded": 300,
        "an absolute path": 3,
        "points outside the upload": 1,
        "not an image, a zip or a CSV manifest": 1,
    }
    assert len(summary.rejected) == MAX_REFUSAL_EXAMPLES
    sentence = summary.sentence()
    assert "305 refused" in sentence and "300 listed but not uploaded" in sentence
    assert len(sentence) < 500 and sentence.endswith(".")


# ---------------------------------------------------------------- D4: zip bombs, temp disk


def test_a_highly_compressible_entry_is_refused_while_it_streams(tmp_path):
    from hiercore.data import extract_zip_safely
    from hiercore.errors import DataError

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/zeros.png", b"\0" * 2_000_000)  # about 2 KB packed, 1000:1
    out = tmp_path / "out"
    with pytest.raises(DataError) as exc:
        extract_zip_safely(archive, out, max_ratio=200, ratio_floor=100_000)
    assert_one_sentence(str(exc.value), "the entry 'cats/zeros.png' inflates more than 200 times")
    assert not out.exists() and sorted(tmp_path.iterdir()) == [archive]
    # below the floor the ratio is not held against an entry (a small text file)
    assert len(extract_zip_safely(archive, out, max_ratio=200, ratio_floor=4_000_000)) == 1


def test_the_zips_of_one_import_share_one_size_limit(ws, tmp_path, monkeypatch):
    from hiercore.errors import DataError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    zips = []
    for i in range(2):
        path = tmp_path / f"z{i}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f"c{i}/noise.bin", os.urandom(60_000))
        zips.append(path)
    pid = ws.create_project("p")
    before = state(ws, pid)
    with pytest.raises(DataError) as exc:
        import_files(ws, pid, zips, max_unpacked_bytes=100_000)
    assert_one_sentence(str(exc.value), "z1.zip would inflate to more than 40000 bytes")
    assert "what is left of the 100000 bytes limit for one import" in str(exc.value)
    assert state(ws, pid) == before
    assert list((tmp_path / "tmp").iterdir()) == []  # the extraction folder went too
    assert import_files(ws, pid, zips[:1], max_unpacked_bytes=100_000).added == 0  # fits


@pytest.fixture
def gradio_uploads(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "gradio"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def upload_file(folder: Path, name: str, write) -> Path:
    path = folder / f"hash-{name}" / name
    path.parent.mkdir()
    write(path)
    return path


def test_uploads_are_deleted_after_an_import(studio_app, tmp_path, gradio_uploads):
    studio, fns = studio_app
    pid = studio.workspace.create_project("uploads")
    image = upload_file(gradio_uploads, "cat.png", write_image)
    archive = upload_file(
        gradio_uploads, "pack.zip", lambda p: zip_of(p, ["pets/Cat/a.png", "pets/Dog/b.png"])
    )
    own = write_image(tmp_path / "mine.png", (9, 9, 9))  # not in Gradio's folder: kept
    out = fns["import_images"](str(pid), [str(image), str(archive), str(own)], "")
    assert out["added"] == 2 and out["duplicates"] == 2
    assert list(gradio_uploads.iterdir()) == [] and own.exists()
    # the API discards a refused upload too; the studio's form keeps it for a retry
    bad = upload_file(gradio_uploads, "bad.zip", lambda p: p.write_text("not a zip"))
    with pytest.raises(Exception, match=r"bad\.zip is not a readable zip archive"):
        fns["import_images"](str(pid), [str(bad)], "")
    assert not bad.exists()
    bad = upload_file(gradio_uploads, "bad.zip", lambda p: p.write_text("not a zip"))
    status, *_ = fns["do_import"](pid, [str(bad)], None, True, "unlabelled", False)
    assert status.startswith("⚠️") and bad.exists()
    good = upload_file(gradio_uploads, "dog.png", lambda p: write_image(p, (1, 200, 1)))
    status, *_ = fns["do_import"](pid, [str(good)], None, True, "unlabelled", False)
    assert status.startswith("✅") and not good.exists()


def test_taxonomy_uploads_are_deleted_after_an_import(studio_app, gradio_uploads):
    studio, fns = studio_app
    pid = studio.workspace.create_project("taxonomy upload")
    text = upload_file(gradio_uploads, "tax.csv", lambda p: p.write_text("class,kind\nA,a\n"))
    assert fns["import_taxonomy"](str(pid), str(text))["nodes"] == 2
    assert not text.exists()


# ---------------------------------------------------------------- H2: a zip of one branch


def test_a_zip_of_one_branch_keeps_its_top_class(ws, tmp_path):
    from hiercore.taxonomy import Taxonomy

    pid = ws.create_project("shapes")
    tax = Taxonomy()
    angular = tax.add("Angular")
    tax.add("green hexagon", tax.add("hexagon", angular))
    tax.add("Round")
    ws.set_taxonomy(pid, tax, "shapes")
    branch = zip_of(tmp_path / "branch.zip", ["Angular/hexagon/green hexagon/a.png"])
    summary = import_files(ws, pid, [branch])
    assert (summary.added, summary.nodes_added) == (1, 0)
    after = ws.taxonomy(pid)
    assert sorted(after.name(n) for n in after.children()) == ["Angular", "Round"]
    [label] = ws.images(pid)["node_id"]
    assert after.path_names(label) == ["Angular", "hexagon", "green hexagon"]
    # a wrapper folder that is not a class is still skipped
    wrapped = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(wrapped, "w") as zf:
        zf.write(write_image(tmp_path / "c.png", (5, 5, 5)), "export-2024/Round/c.png")
    summary = import_files(ws, pid, [wrapped])
    assert (summary.added, summary.nodes_added) == (1, 0)
    assert sorted(after.name(n) for n in ws.taxonomy(pid).children()) == ["Angular", "Round"]


# ---------------------------------------------------------------- H1: one pick, one write


def test_one_pick_writes_one_label_even_if_its_event_fires_twice(studio_app, tmp_path):
    studio, fns = studio_app
    ws = studio.workspace
    pid = trainable_project(studio, tmp_path)
    ws.add_images(pid, [("third.png", write_image(tmp_path / "3.png", (200, 1, 1)))])
    ids = [int(i) for i in ws.images(pid)["id"]]
    before = {i: ws.images(pid).set_index("id").loc[i, "node_id"] for i in ids}
    dog = next(n for n in ws.taxonomy(pid).iter_dfs() if ws.taxonomy(pid).name(n) == "dog")
    cur = {"ids": ids, "pos": 0}
    shown = str(ids[0])  # what the page showed when the user picked
    first = fns["pick_label"](pid, cur, False, dog, shown)
    status, cur_after = first[0], first[1]
    assert "Saved: dog" in status.replace("\\", "") and cur_after["pos"] == 1
    # the same pick's second event: the cursor has moved on, the page's image id has not
    again = fns["pick_label"](pid, cur_after, False, dog, shown)
    assert all(isinstance(x, dict) and x.get("__type__") == "update" for x in again)
    # an empty value is the dropdown being reset for the next image: no write, no clear
    reset = fns["pick_label"](pid, cur_after, False, None, str(ids[1]))
    assert all(isinstance(x, dict) and x.get("__type__") == "update" for x in reset)
    labels = ws.images(pid).set_index("id")["node_id"]
    assert labels[ids[0]] == dog
    assert labels[ids[1]] == before[ids[1]] and labels[ids[2]] == before[ids[2]]
    assert first[-1] == str(ids[1])  # the page now shows the next image's id


# ---------------------------------------------------------------- D10: login throttling


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_passwords_lock_a_username_for_a_growing_while():
    from webapp.auth import LoginThrottle, password_check

    clock = FakeClock()
    checked = []

    def check(user, password):
        checked.append(password)
        return password_check("ada", "s3cret")(user, password)

    login = LoginThrottle(check, free_failures=5, base_delay=2, max_delay=60, clock=clock)
    for _ in range(4):
        assert not login("ada", "guess")
    assert login.locked_for("ada") == 0
    assert not login("ada", "guess")  # the fifth failure locks for 2 s
    assert login.locked_for("ADA ") == 2  # the same user however it is typed
    n = len(checked)
    assert not login("ada", "s3cret")  # even the right password is refused meanwhile...
    assert len(checked) == n  # ...without being checked
    assert login("bob", "x") is False and login.locked_for("bob") == 0  # others unaffected
    clock.now += 2
    assert not login("ada", "guess")  # sixth failure: 4 s
    assert login.locked_for("ada") == 4
    clock.now += 4
    assert not login("ada", "guess")
    assert login.locked_for("ada") == 8
    for _ in range(10):  # the interval stops growing at max_delay
        clock.now += 60
        login("ada", "guess")
    assert login.locked_for("ada") == 60
    clock.now += 60
    assert login("ada", "s3cret")  # a correct login after the wait clears the count
    assert not login("ada", "guess") and login.locked_for("ada") == 0


def test_the_studio_login_route_is_throttled(tmp_path):
    import urllib.error
    import urllib.parse
    import urllib.request

    from test_webapp_api import free_port

    from webapp.app import launch

    port = free_port()
    app, studio = launch(
        tmp_path / "ws", port=port, auth=("ada", "s3cret"), prevent_thread_lock=True
    )

    def login(password: str) -> int:
        form = urllib.parse.urlencode({"username": "ada", "password": password}).encode()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", form, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert login("s3cret") == 200
        statuses = [login("wrong") for _ in range(5)]
        assert statuses == [400] * 5
        assert login("s3cret") == 400  # locked: the right password is refused for now
    finally:
        app.close()
        studio.close()


# ---------------------------------------------------------------- D6: kill -9 during an import

KILLER = """
import os, shutil, signal, sys
from pathlib import Path

import hiercore.store.images as images
from hiercore.ingest import import_files
from hiercore.store import Workspace

root, pid, point, after, upload = sys.argv[1:]
calls = [0]


def die_after(fn):
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] > int(after):
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapper


if point == "staging":  # while the files are written to the staging folder
    Path.write_bytes = die_after(Path.write_bytes)
elif point == "publish":  # some files moved into images/, COMMIT not reached
    os.replace = die_after(os.replace)
elif point == "rows":  # rows inserted, nothing published yet
    images.ImageLibrary._touch = die_after(images.ImageLibrary._touch)
elif point == "committed":  # committed, staging folder not yet removed
    images.shutil.rmtree = die_after(shutil.rmtree)
ws = Workspace(root)
files = sorted(str(p) for p in Path(upload).iterdir())
import_files(ws, int(pid), files)
print("finished")
"""


@pytest.mark.parametrize(
    ("point", "after"), [("staging", 3), ("publish", 2), ("rows", 0), ("committed", 0)]
)
def test_a_kill_during_an_import_leaves_all_or_nothing(tmp_path, point, after):
    import signal
    import subprocess
    import sys

    root = tmp_path / "ws"
    with Workspace(root) as ws:
        pid = ws.create_project("p")
        before = state(ws, pid)
    upload = tmp_path / "upload"
    upload.mkdir()
    rows = ["path,class,kind"]
    for i in range(6):
        write_image(upload / f"{i}.png", (i * 30, 10, 10))
        rows.append(f"{i}.png,Animals,kind{i % 2}")
    (upload / "manifest.csv").write_text("\n".join(rows) + "\n")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(script), str(root), str(pid), point, str(after), str(upload)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    with Workspace(root) as ws:  # opening it sweeps what the killed import left
        images = ws.images(pid)
        if point == "committed":
            assert len(images) == 6
            tax = ws.taxonomy(pid)
            assert sorted(tax.name(n) for n in tax.iter_dfs()) == ["Animals", "kind0", "kind1"]
        else:
            assert state(ws, pid) == before  # nothing of the import: rows, nodes, files
        stored = {p.name for p in (root / "projects" / str(pid) / "images").iterdir()}
        assert stored == {Path(p).name for p in images["path"]}  # no orphan, none missing
        assert list((root / ".staging").iterdir()) == []
