"""Execute notebooks in place of ``jupyter nbconvert --execute`` (not installed here), with nbclient.

``DFC_QUICK=0 .venv/bin/python notebooks/run_notebook.py notebooks/fig1d_controller.ipynb`` runs the
notebook in its own folder and writes the executed copy to ``/tmp/<name>.ipynb`` (the committed
notebook keeps empty outputs); it prints the wall time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: str | Path, out_dir: str | Path = "/tmp", timeout: int = 3600) -> float:
    """Execute one notebook; returns its wall time in seconds."""
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    wall = time.perf_counter() - t0
    nbformat.write(nb, Path(out_dir) / path.name)
    return wall


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"{p}: {run(p):.1f} s", flush=True)
