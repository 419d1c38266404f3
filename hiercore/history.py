"""A run's training history: one shape for the run folder, the live progress and the charts.

A history is a list of points, each an optimiser step's loss terms or an epoch's
validation metrics::

    {"step": 12, "epoch": 2, "losses": {"total": 1.9, "ce": 1.2, "tpkl": 0.4, "hisce": 0.3}}
    {"step": 16, "epoch": 2, "val": {"fpa": 0.41, "tice": 0.12, "consistent_fpa": 0.44}}

`hiercore.training.train` records it and writes it to history.json (`RunFolder`), the
studio's queue keeps a bounded copy of it in the run's stored progress while the run
trains (`TrainingQueue`), and `hiercore.figures.training_curves_figure` draws it. Its
records are JSON as they stand, and `History.frame` flattens them for pandas.

Older stored progress kept the curves in other shapes (`loss_curve` as [step, total]
pairs, `val_curve` as {"epoch", **val}, `loss_terms` as step points); `from_progress`
still reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class HistoryPoint:
    """One optimiser step (`losses`) or one evaluation (`val`) of a run."""

    step: int | None = None
    """Optimiser steps done when the point was recorded."""
    epoch: int | None = None
    """1-based epoch the point belongs to."""
    losses: dict[str, float] | None = None
    """The step's loss terms: total, ce, tpkl, hisce (those the loss computes)."""
    val: dict[str, float] | None = None
    """The epoch's validation metrics: fpa, tice, consistent_fpa."""

    def to_dict(self) -> dict:
        """The JSON record: step, epoch and whichever of losses / val the point has."""
        record: dict = {"step": self.step, "epoch": self.epoch}
        if self.losses is not None:
            record["losses"] = dict(self.losses)
        if self.val is not None:
            record["val"] = dict(self.val)
        return record

    @classmethod
    def from_dict(cls, record: Mapping) -> HistoryPoint:
        losses, val = record.get("losses"), record.get("val")
        return cls(
            step=_int_or_none(record.get("step")),
            epoch=_int_or_none(record.get("epoch")),
            losses=dict(losses) if isinstance(losses, Mapping) else None,
            val=dict(val) if isinstance(val, Mapping) else None,
        )


@dataclass
class History:
    """The points of a run in the order they were recorded."""

    points: list[HistoryPoint] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.points)

    def add_step(self, step: int, epoch: int, losses: Mapping[str, float]) -> None:
        self.points.append(
            HistoryPoint(step, epoch, losses={k: float(v) for k, v in losses.items()})
        )

    def add_val(self, step: int | None, epoch: int | None, val: Mapping[str, float]) -> None:
        """Record an evaluation; a second one for the same epoch replaces the first."""
        point = HistoryPoint(step, epoch, val=dict(val))
        for i in range(len(self.points) - 1, -1, -1):
            old = self.points[i]
            if old.val is not None:
                if old.epoch == epoch:
                    self.points[i] = point
                    return
                break
        self.points.append(point)

    def add_event(self, event: Mapping) -> bool:
        """Record a progress event (`training.ProgressEvent.to_dict()`) if it is a training
        step with losses or carries validation metrics; whether it was recorded."""
        if event.get("phase") == "train" and event.get("losses"):
            self.add_step(event.get("step"), event.get("epoch"), event["losses"])
            return True
        if event.get("val") and event.get("phase") == "eval":
            self.add_val(event.get("step"), event.get("epoch"), event["val"])
            return True
        return False

    @property
    def steps(self) -> list[HistoryPoint]:
        return [p for p in self.points if p.losses is not None]

    @property
    def evals(self) -> list[HistoryPoint]:
        return [p for p in self.points if p.val is not None]

    def thinned(self, max_steps: int) -> History:
        """Every evaluation and at most `max_steps` step points: every other step is
        dropped until they fit, so the whole run's shape stays (first step kept)."""
        steps = self.steps
        stride = 1
        while len(steps[::stride]) > max_steps:
            stride *= 2
        kept = {id(p) for p in steps[::stride]}
        return History([p for p in self.points if p.losses is None or id(p) in kept])

    def to_records(self) -> list[dict]:
        """The JSON list history.json holds."""
        return [p.to_dict() for p in self.points]

    @classmethod
    def from_records(cls, records: Iterable[Mapping] | None) -> History:
        """Read a history.json list (any version: points without a step or an epoch, or
        with keys this version does not know, are kept as far as they go)."""
        points = [HistoryPoint.from_dict(r) for r in records or [] if isinstance(r, Mapping)]
        return cls([p for p in points if p.losses is not None or p.val is not None])

    @classmethod
    def from_progress(cls, progress: Mapping | None) -> History:
        """The history a run's stored progress holds: `history` records, or the curves
        that progress held before (`loss_terms`, else `loss_curve`, plus `val_curve`)."""
        progress = progress or {}
        if "history" in progress:
            return cls.from_records(progress["history"])
        history = cls.from_records(progress.get("loss_terms"))
        if not history.points:
            history = cls(
                [
                    HistoryPoint(int(s), None, losses={"total": float(v)})
                    for s, v in progress.get("loss_curve") or []
                ]
            )
        for v in progress.get("val_curve") or []:
            history.add_val(None, v.get("epoch"), {k: x for k, x in v.items() if k != "epoch"})
        return history

    def frame(self) -> pd.DataFrame:
        """One row per point: step, epoch, then `loss_<term>` and `val_<metric>` columns."""
        import pandas as pd

        rows = []
        for p in self.points:
            row = {"step": p.step, "epoch": p.epoch}
            row.update({f"loss_{k}": v for k, v in (p.losses or {}).items()})
            row.update({f"val_{k}": v for k, v in (p.val or {}).items()})
            rows.append(row)
        return pd.DataFrame(rows, columns=None if rows else ["step", "epoch"])

    @property
    def last_val(self) -> dict | None:
        evals = self.evals
        return dict(evals[-1].val) if evals else None


def _int_or_none(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
