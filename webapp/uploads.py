"""Uploaded files are deleted once an import has read them.

Gradio keeps every upload in its upload folder (`GRADIO_TEMP_DIR`, else
`<tmp>/gradio`) until the server stops, so a few large zips filled the temp disk.
`discard_uploads` removes the files of one import, and the folder Gradio made for each
when it is left empty; a path outside Gradio's upload folder (a test's or a CLI's own
file) is never touched. The API discards an import's uploads whatever happened (a client
uploads again to retry); the studio's forms only after a successful import, since the
form still shows the file after a refusal.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from gradio.utils import get_upload_folder


def discard_uploads(paths: Iterable[str | os.PathLike | None]) -> int:
    """Delete the given uploads that lie inside Gradio's upload folder; how many went."""
    root = Path(get_upload_folder()).resolve()
    removed = 0
    for p in paths:
        if not p:
            continue
        path = Path(p).resolve()
        if path == root or not path.is_relative_to(root) or not path.is_file():
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
            if path.parent != root:
                path.parent.rmdir()  # fails, and stays, while it holds other files
    return removed


@contextlib.contextmanager
def uploads_discarded(
    paths: Iterable[str | os.PathLike | None], on_error: bool = True
) -> Iterator[None]:
    """Run an import, then delete its uploads: always, or (`on_error` off) only when it
    succeeded, so a form that still shows the file after a refusal can try it again."""
    paths = list(paths)
    try:
        yield
    except BaseException:
        if on_error:
            discard_uploads(paths)
        raise
    discard_uploads(paths)
