"""`torchrun --nproc_per_node 2 -m hiercore train` on gloo trains like one process with the
same global batch (the gradients of the two halves are averaged)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from imagegen import write_tree
from safetensors.torch import load_file

from hiercore.cli import split
from hiercore.config import RunConfig
from hiercore.data import load_data
from hiercore.training import train

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "model": "tiny-random",
    "lora": "both",
    "epochs": 2,
    "lr": 3e-3,
    "val_fraction": 0.25,
    "device": "cpu",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_gloo_processes_train_like_one_with_the_same_global_batch(tmp_path):
    data = write_tree(tmp_path / "data", per_leaf=3)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            "-m",
            "hiercore",
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "ddp"),
            "--batch-size=4",
            "--no-eval-every-epoch",
            *flags,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=110,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("wrote") == 1  # rank 0 alone reports

    taxonomy, samples = load_data(str(data))
    config = RunConfig(**SETTINGS, batch_size=8, eval_every_epoch=False)
    train_s, val_s = split(taxonomy, samples, config.val_fraction, config.seed)
    assert len(train_s) % 2 == 0  # no sample repeated to even out the two halves
    train(config, taxonomy, train_s, val_s, tmp_path / "one")

    two = load_file(tmp_path / "ddp" / "adapter.safetensors")
    one = load_file(tmp_path / "one" / "adapter.safetensors")
    assert two.keys() == one.keys()
    moved = 0.0
    for name, weight in one.items():
        torch.testing.assert_close(two[name], weight, rtol=1e-4, atol=1e-5, msg=name)
        if "lora_B" in name:
            moved += float(weight.abs().sum())
    assert moved > 0  # the adapters trained (LoRA's B starts at zero)
