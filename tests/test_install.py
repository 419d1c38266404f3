"""`pip install .` installs the library, the studio and the `hiertune` command.

Built in a throwaway virtual environment that sees this interpreter's packages (so nothing
is downloaded), from a copy of the sources (so the checkout gets no build/ or egg-info).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "requirements.txt", "hiercore", "webapp")


@pytest.mark.install
@pytest.mark.timeout(120)
def test_pip_install_gives_the_hiertune_command(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
        timeout=60,
    )
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    pip += ["--no-deps", "--no-build-isolation", "--no-index", str(src)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    env = {**os.environ, "PYTHONPATH": ""}  # the installed copy, not the checkout
    where = subprocess.run(
        [str(python), "-c", "import hiercore, webapp.main; print(hiercore.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv)

    for argv, words in (
        (["--help"], ("studio", "train", "compare")),
        (["train", "--help"], ("--epochs", "--lora-targets", "Passes over the training")),
        (["studio", "--help"], ("--workspace", "--auth")),
    ):
        done = subprocess.run(
            [str(bin_dir / "hiertune"), *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert all(w in done.stdout for w in words), (argv, done.stdout[:500])
