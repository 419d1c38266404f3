"""How long the studio's one-click demo fine-tune takes on this machine.

Builds the emoji demo project in a temporary workspace, submits the training form's
default settings for this machine (the embedded model; vision LoRA on a CPU, both towers
on a GPU; 3 epochs, batch 32) to the same background queue the studio uses, waits for it
and prints the wall time from submission to "finished" with the run's headline metrics.

    python -m benchmarks.demo_finetune [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from hiercore.demo import open_demo_project
from hiercore.jobs import TrainingQueue
from hiercore.store import Workspace


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    lora = "both" if torch.cuda.is_available() else "vision"
    config = {"model": "default", "lora": lora, "epochs": args.epochs, "batch_size": 32}
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
        m = status.get("metrics") or {}
        print(
            f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, "
            f"{torch.get_num_threads()} threads, LoRA {lora}, {args.epochs} epochs"
        )
        print(f"demo project built in {t_demo:.1f} s")
        print(f"fine-tune: state {status['state']}, {wall:.1f} s from submit to finish")
        if m:
            print(
                f"  val FPA {m['fpa']:.3f} (consistent {m['consistent']['fpa']:.3f}), "
                f"TICE {m['tice']:.3f}, n_val {m['n_val']}, level acc "
                + ", ".join(f"{a:.3f}" for a in m["level_accuracy"])
            )


if __name__ == "__main__":
    main()
