"""How long the studio's one-click demo fine-tune takes on this machine, and what it reaches.

Builds the emoji demo project in a temporary workspace, submits a run config to the same
background queue the studio uses, waits for it and prints the wall time from submission
to "finished" with the run's headline metrics on the demo's held-out style (OpenMoji).
With no overrides the config is the studio form's default for this machine.

    python -m benchmarks.demo_finetune                       # the form's defaults
    python -m benchmarks.demo_finetune --set epochs=3 lr=1e-3 lora=text
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from hiercore.config import RunConfig
from hiercore.demo import open_demo_project
from hiercore.jobs import TrainingQueue
from hiercore.store import Workspace


def form_defaults() -> dict:
    """The studio Train form's defaults on this machine, as a run config."""
    from webapp.tabs.train import default_form_config

    return default_form_config()


def finetune_demo(overrides: dict | None = None) -> dict:
    """Run one demo fine-tune through the studio's queue; timings and final metrics."""
    # through RunConfig: overrides are checked, and the recorded method follows the losses
    config = RunConfig.from_dict({**form_defaults(), **(overrides or {})}).to_dict()
    with tempfile.TemporaryDirectory() as tmp, Workspace(tmp) as ws:
        t0 = time.time()
        pid = open_demo_project(ws)
        t_demo = time.time() - t0
        queue = TrainingQueue(ws)
        t0 = time.time()
        run = queue.submit(pid, "demo fine-tune", config)
        while (status := queue.status(run))["state"] in ("queued", "running"):
            time.sleep(1)
        wall = time.time() - t0
        queue.shutdown()
    return {
        "config": config,
        "state": status["state"],
        "demo_s": round(t_demo, 1),
        "wall_s": round(wall, 1),
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "metrics": status.get("metrics") or {},
    }


def describe(result: dict) -> str:
    c, m = result["config"], result["metrics"]
    lines = [
        f"device {result['device']}, {result['threads']} threads, LoRA {c['lora']} "
        f"{'+'.join(c.get('lora_targets', []))} r{c['rank']}, {c['epochs']} epochs, "
        f"lr {c['lr']}, alpha {c['alpha']}, lambda {c['lam']}",
        f"demo project built in {result['demo_s']:.1f} s",
        f"fine-tune: state {result['state']}, {result['wall_s']:.1f} s from submit to finish",
    ]
    if m:
        lines.append(
            f"  val FPA {m['fpa']:.3f} (consistent {m['consistent']['fpa']:.3f}), "
            f"TICE {m['tice']:.3f}, n_val {m['n_val']}, level acc "
            + ", ".join(f"{a:.3f}" for a in m["level_accuracy"])
        )
    return "\n".join(lines)


def parse_overrides(pairs: list[str]) -> dict:
    """key=value pairs; values are read as JSON when they parse (numbers, lists, bools)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--set", nargs="*", default=[], help="run config overrides, key=value")
    args = p.parse_args()
    print(describe(finetune_demo(parse_overrides(args.set))))


if __name__ == "__main__":
    main()
