"""The layout of a run folder: which file holds what, how it is written and how it is read.

A run folder is what `hiercore.training.train` writes (the CLI's ``--out``, a studio
run's ``runs/<id>/``) and what an export bundle unpacks to::

    config.json          the RunConfig
    taxonomy.json        the class tree (native JSON)
    adapter.safetensors  the adapters' weights (and the logit scale when it learns)
    history.json         the loss and validation history (`hiercore.history.History`)
    metrics.json         the final validation metrics
    predictions.npz      validation logits, paths and embeddings (`evaluation.Collected`)
    status.json          how far training got: training, evaluating, done (finished or
                         stopped), with the step, the epoch and the training time
    checkpoint/          what resume needs: state.json naming epoch-stamped files

Every file is replaced whole (temp file, fsync, rename), so a reader, or a kill at any
instant, sees the old file or the new one, never a truncated mix. The end of training
is the written status, never the text of a progress message. A folder written before
status.json existed counts as done when it has its metrics (their "state" says whether
it was stopped).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hiercore.errors import HierTuneError
from hiercore.history import History

if TYPE_CHECKING:
    from hiercore.config import RunConfig
    from hiercore.taxonomy import Taxonomy

CONFIG = "config.json"
TAXONOMY = "taxonomy.json"
ADAPTER = "adapter.safetensors"
PROTOTYPES = "prototypes.safetensors"
HISTORY = "history.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.npz"
STATUS = "status.json"
CHECKPOINT = "checkpoint"
CHECKPOINT_STATE = "state.json"

MODEL_FILES = (CONFIG, TAXONOMY, ADAPTER)
"""What a predictor loads: an unpacked export bundle has these too."""
RESULT_FILES = (CONFIG, TAXONOMY, METRICS, PREDICTIONS)
"""What the results views read."""

PHASES = ("training", "evaluating", "done")

# the file names of a checkpoint written before they carried the epoch
LEGACY_CHECKPOINT_FILES = {
    "adapter": "adapter.safetensors",
    "optimizer": "optimizer.pt",
    "history": "history.json",
}


@dataclass(frozen=True)
class TrainingStatus:
    """status.json: where a run's training stands, written at each change of phase."""

    phase: str
    """'training', 'evaluating' (the loop has ended; the final scoring runs) or 'done'."""
    stopped: bool = False
    """The loop ended early because the run was stopped (its metrics are of a partial run)."""
    step: int = 0
    epoch: int = 0
    train_time_s: float | None = None
    """Seconds from the start of `train` to the end of its loop (set once it has ended)."""

    @property
    def training_ended(self) -> bool:
        return self.phase in ("evaluating", "done")

    @property
    def state(self) -> str:
        """'training', 'evaluating', 'finished' or 'stopped'."""
        if self.phase != "done":
            return self.phase
        return "stopped" if self.stopped else "finished"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingStatus:
        phase = data.get("phase")
        if phase not in PHASES:
            raise ValueError(f"unknown training phase {phase!r}")
        seconds = data.get("train_time_s")
        return cls(
            phase=phase,
            stopped=bool(data.get("stopped", False)),
            step=int(data.get("step") or 0),
            epoch=int(data.get("epoch") or 0),
            train_time_s=None if seconds is None else float(seconds),
        )


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically: a reader (or a crash) sees the old file or
    the new one, whole, never a truncated mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_bytes(value, indent: int | None = None) -> bytes:
    return json.dumps(value, indent=indent, ensure_ascii=False).encode()


class RunFolder:
    """One run folder on disk: its files by role, written whole and read back."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def adapter_file(self) -> Path:
        return self.path / ADAPTER

    @property
    def taxonomy_file(self) -> Path:
        return self.path / TAXONOMY

    @property
    def predictions_file(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def missing(self, names: tuple[str, ...]) -> list[str]:
        return [n for n in names if not self.has(n)]

    def require(self, names: tuple[str, ...], what: str = "a finished run folder") -> None:
        """One sentence naming the first of `names` the folder lacks."""
        missing = self.missing(names)
        if missing:
            raise HierTuneError(f"{self.path} is not {what}: {missing[0]} is missing.")

    # ------------------------------------------------------------------ writing
    def create(self) -> RunFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def write_bytes(self, name: str, data: bytes) -> Path:
        write_durably(self.path / name, data)
        return self.path / name

    def write_config(self, config: RunConfig) -> None:
        self.write_bytes(CONFIG, _json_bytes(config.to_dict(), indent=2) + b"\n")

    def write_taxonomy(self, taxonomy: Taxonomy) -> None:
        self.write_bytes(TAXONOMY, _json_bytes(taxonomy.to_dict(), indent=1))

    def write_adapter(self, data: bytes) -> None:
        """The adapters' weights, serialised (`safetensors.torch.save`)."""
        self.write_bytes(ADAPTER, data)

    def write_prototypes(self, feats, counts) -> None:
        """The image prototypes of the last level (docs/method.md §2.1) and their counts."""
        from hiercore.prototypes import to_bytes

        self.write_bytes(PROTOTYPES, to_bytes(feats, counts))

    def read_prototypes(self):
        """(prototypes, counts), or None for a run saved without them."""
        if not self.has(PROTOTYPES):
            return None
        from hiercore.prototypes import read

        return read(self.path / PROTOTYPES)

    def write_history(self, history: History) -> None:
        self.write_bytes(HISTORY, _json_bytes(history.to_records()))

    def write_metrics(self, metrics: dict) -> None:
        self.write_bytes(METRICS, _json_bytes(metrics, indent=2))

    def write_status(self, status: TrainingStatus) -> None:
        self.write_bytes(STATUS, _json_bytes(status.to_dict(), indent=1))

    # ------------------------------------------------------------------ reading
    def _read_json(self, name: str):
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise HierTuneError(f"{self.path} has no {name}.") from None
        except (OSError, ValueError) as exc:
            raise HierTuneError(f"Cannot read {path}: {exc}.") from None

    def read_config(self) -> RunConfig:
        from hiercore.config import RunConfig

        data = self._read_json(CONFIG)
        if isinstance(data, dict):
            # config.json holds every setting; a run saved before the image prototypes
            # existed was scored without them
            data.setdefault("prototypes", 0.0)
        return RunConfig.from_dict(data)

    def read_taxonomy(self) -> Taxonomy:
        from hiercore.taxonomy import Taxonomy

        return Taxonomy.from_dict(self._read_json(TAXONOMY))

    def read_metrics(self) -> dict:
        return self._read_json(METRICS)

    def read_history(self) -> History:
        """The history (empty when the folder has none, e.g. an exported bundle without it)."""
        if not self.has(HISTORY):
            return History()
        return History.from_records(self._read_json(HISTORY))

    def read_status(self) -> TrainingStatus | None:
        """How far training got; None when the folder shows no training at all.

        A folder from before status.json existed is done once it has its metrics.
        """
        if self.has(STATUS):
            try:
                return TrainingStatus.from_dict(self._read_json(STATUS))
            except (ValueError, TypeError, AttributeError) as exc:
                raise HierTuneError(f"Cannot read {self.path / STATUS}: {exc}.") from None
        if self.has(METRICS):
            metrics = self.read_metrics()
            return TrainingStatus(
                "done",
                stopped=metrics.get("state") == "stopped",
                step=int(metrics.get("steps") or 0),
                epoch=int(metrics.get("epochs_done") or 0),
            )
        return None

    # ------------------------------------------------------------------ checkpoint
    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / CHECKPOINT_STATE).is_file()

    def save_checkpoint(self, epoch: int, step: int, config: dict, files: dict[str, bytes]) -> None:
        """Write an epoch's checkpoint so that a kill at any moment leaves a whole one (the
        previous or this), never a truncated file: each part goes to a file stamped with
        the epoch, then state.json, the commit point, names them; then the previous
        epoch's files (and any half-written temp file) go.

        `files` maps a part ("adapter", "optimizer", "history") to its bytes.
        """
        ckpt = self.checkpoint_dir
        ckpt.mkdir(parents=True, exist_ok=True)
        suffix = {"adapter": "safetensors", "optimizer": "pt", "history": "json"}
        names = {part: f"{part}-epoch{epoch}.{suffix.get(part, 'bin')}" for part in files}
        for part, data in files.items():
            write_durably(ckpt / names[part], data)
        state = {"epoch": epoch, "step": step, "config": config, "files": names}
        write_durably(ckpt / CHECKPOINT_STATE, _json_bytes(state))
        keep = {*names.values(), CHECKPOINT_STATE}
        for old in ckpt.iterdir():
            if old.name not in keep and old.is_file():
                old.unlink(missing_ok=True)

    def checkpoint_state(self) -> tuple[dict, dict[str, Path]]:
        """The checkpoint's state.json and the path of each part it names."""
        path = self.checkpoint_dir / CHECKPOINT_STATE
        try:
            state = json.loads(path.read_text())
            files = state.get("files") or LEGACY_CHECKPOINT_FILES
            paths = {part: self.checkpoint_dir / name for part, name in files.items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise HierTuneError(f"Cannot resume: {path} is unreadable ({exc}).") from None
        return state, paths
