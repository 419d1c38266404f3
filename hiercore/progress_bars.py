"""tqdm progress bars for the command line: training steps, and a comparison's runs."""

from __future__ import annotations

from tqdm import tqdm


class TrainBar:
    """A tqdm bar over optimiser steps fed by training progress events."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, event) -> None:
        if event.phase == "train":
            if self.bar is None:
                self.bar = tqdm(total=event.steps_total, desc="train", unit="step")
            self.bar.n = event.step
            self.bar.set_postfix(epoch=event.epoch, loss=f"{event.losses.get('total', 0):.3f}")
            self.bar.refresh()
        elif event.phase == "eval" and event.val:
            msg = (
                f"epoch {event.epoch}: val FPA {event.val['fpa']:.3f} TICE {event.val['tice']:.3f}"
            )
            (self.bar.write if self.bar else print)(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class CompareBars:
    """tqdm bars: one over (method, seed) runs, one over the current run's steps."""

    def __init__(self) -> None:
        self.runs = None
        self.steps = None

    def __call__(self, e) -> None:
        if self.runs is None:
            self.runs = tqdm(total=e.runs, desc="runs", unit="run", position=0)
        if e.phase == "start":
            self.runs.set_postfix_str(f"{e.method} seed {e.seed}")
            self._close_steps()
        elif e.phase == "progress" and e.event is not None and e.event.phase == "train":
            if self.steps is None:
                self.steps = tqdm(
                    total=e.event.steps_total, desc=e.method, unit="step", position=1, leave=False
                )
            self.steps.n = e.event.step
            self.steps.set_postfix(loss=f"{e.event.losses.get('total', 0):.3f}")
            self.steps.refresh()
        elif e.phase == "done":
            self._close_steps()
            self.runs.update(1)
            m = e.metrics or {}
            self.runs.write(
                f"{e.method} seed {e.seed}: FPA {_fmt(m.get('fpa'))} "
                f"TICE {_fmt(m.get('tice'))} ({m.get('train_time_s', 0):.1f} s)"
            )

    def _close_steps(self) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None

    def close(self) -> None:
        self._close_steps()
        if self.runs is not None:
            self.runs.close()


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"
