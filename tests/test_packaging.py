"""A wheel built from this tree carries the named configs: installed without ``-e``, the
``dfc-brian configs`` command lists them and ``load_config('toy/demo')`` finds its file.

Builds the wheel (pip, isolated build: needs setuptools from the package index or its cache),
installs it with ``--no-deps`` into a throwaway venv, and runs the console script there with
the dependencies taken from the running interpreter's site-packages (put on PYTHONPATH, where
the editable install's ``.pth`` hook is not processed, so the test sees only the wheel).
About 10 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from dfc_brian.config import list_configs

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(), reason="needs the source tree")
def test_wheel_ships_configs(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0 and "setuptools" in build.stderr and "No matching distribution" in build.stderr:
        pytest.skip("cannot fetch setuptools for the isolated build (offline)")
    assert build.returncode == 0, build.stderr[-2000:]
    (whl,) = wheels.glob("dfc_brian-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(whl)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inst.returncode == 0, inst.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    work = tmp_path / "elsewhere"  # not the repository: nothing found by accident
    work.mkdir()
    r = subprocess.run(
        [str(env_dir / "bin" / "dfc-brian"), "configs", "--names-only"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == list_configs()
    where = subprocess.run(
        [str(py), "-c", "import dfc_brian.config as c; print(c.MODELS_DIR); c.load_config('toy/demo')"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    assert str(env_dir) in where.stdout and where.stdout.strip().endswith("dfc_brian/models")
