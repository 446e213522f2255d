"""Figures of the DFC experiments; all functions return a :class:`matplotlib.figure.Figure`.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state), so they work
headless with the Agg backend. Call :func:`use_style` once for the shared style.
"""

from __future__ import annotations

from pathlib import Path

STYLE_PATH = Path(__file__).with_name("style.mplstyle")


def use_style() -> None:
    """Apply the shared style (``style.mplstyle``: font sizes, no top/right spines, dpi 150)."""
    import matplotlib.style

    matplotlib.style.use(str(STYLE_PATH))


def notebook_setup(subdir: str = "") -> tuple[bool, Path, Path]:
    """The first cell of every notebook: ``QUICK, ROOT, OUT = notebook_setup()``.

    ``QUICK`` is ``DFC_QUICK`` (default 1: seconds-long settings, the ones the notebook tests run;
    0: the full-size figure); ``ROOT`` the repository (the notebook runs from it or from
    ``notebooks/``); ``OUT`` = ``ROOT/figures/<subdir>``, with ``quick/`` appended when QUICK so that
    committed full-size figures are not overwritten; created. Applies :func:`use_style`.
    """
    import os

    quick = os.environ.get("DFC_QUICK", "1") == "1"
    root = Path.cwd() if (Path.cwd() / "dfc_brian").is_dir() else Path.cwd().parent
    out = root / "figures" / subdir
    out = out / "quick" if quick else out
    out.mkdir(parents=True, exist_ok=True)
    use_style()
    print("QUICK =", quick, "-> figures in", out)
    return quick, root, out


__all__ = ["STYLE_PATH", "notebook_setup", "use_style"]
