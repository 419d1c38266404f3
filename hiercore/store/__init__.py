"""The studio's persistent state: projects, taxonomy versions with undo, images, labels
with their history and batch undo, tags, review requests, runs.

See `hiercore.store.workspace` for the folder layout and `hiercore.store.database` for
how concurrent threads share it.
"""

from hiercore.store.database import SCHEMA_VERSION, utc_now
from hiercore.store.images import DEFAULT_MAX_IMAGE_BYTES, LABEL_SOURCES, ImageImport
from hiercore.store.label_history import HISTORY_SOURCES
from hiercore.store.runs import INTERRUPTED, NEVER_STARTED, RUN_STATES
from hiercore.store.workspace import Workspace

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "HISTORY_SOURCES",
    "INTERRUPTED",
    "LABEL_SOURCES",
    "NEVER_STARTED",
    "RUN_STATES",
    "SCHEMA_VERSION",
    "ImageImport",
    "Workspace",
    "utc_now",
]
