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


__all__ = ["STYLE_PATH", "use_style"]
