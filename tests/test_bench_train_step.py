"""The step benchmark still runs (a GPU session spends its few minutes on it, so it must not
find a broken script there): its demo part on the tiny model, one interleaved step."""

from __future__ import annotations

import argparse
import re

import torch

from benchmarks.bench_train_step import part_demo


def test_demo_part_prints_ratios_and_throughput(capsys):
    args = argparse.Namespace(
        model="tiny-random", batch=4, repeats=1, warmup=0, lora=["vision", "text"]
    )
    part_demo(args, torch.device("cpu"))
    out = capsys.readouterr().out
    assert out.startswith("demo: tiny-random model, batch 4, device cpu")
    lines = [line for line in out.splitlines() if line.strip().startswith("LoRA")]
    assert [line.split(":")[0].split()[1] for line in lines] == ["vision", "text"]
    for line in lines:
        ratio = float(re.search(r"plain/fast ([\d.]+)x", line).group(1))
        assert ratio > 0
        assert re.search(r"fast [\d,]+ img/s", line)
