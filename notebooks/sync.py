"""Write each notebook ``notebooks/<name>.ipynb`` from its source ``notebooks/src/<name>.py``.

A source is a percent-format script (the jupytext "percent" format, read here with nbformat only):
cells start at a line ``# %%`` (code) or ``# %% [markdown]`` (markdown, every line commented
``# text``, an empty line ``#``); one blank line separates cells. The notebook gets the cells in
order, empty outputs, the ``python3`` kernelspec and cell ids derived from the notebook name and
the cell index, so the same source always gives the same file.

Edit the source, then run ``.venv/bin/python notebooks/sync.py`` (all sources) or
``notebooks/sync.py notebooks/src/<name>.py``. ``--check`` writes nothing and exits 1 naming every
notebook that differs from its source (``tests/test_notebooks_sync.py`` runs the same check).
``--from-ipynb NB.ipynb`` writes ``src/<name>.py`` from an existing notebook (outputs dropped), to
bring a notebook under this scheme once.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
CODE = "# %%"
MARKDOWN = "# %% [markdown]"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def parse(text: str, origin: str = "<source>") -> list[tuple[str, str]]:
    """Cells ``(kind, source)`` of a percent-format script, kind ``"code"`` or ``"markdown"``.

    Raises ``ValueError`` naming ``origin`` and the line for text before the first cell marker,
    an unknown marker (``# %% [raw]``, cell titles or options) or an uncommented markdown line.
    """
    cells: list[tuple[str, list[str]]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.startswith(CODE):
            if line not in (CODE, MARKDOWN):
                raise ValueError(
                    f"{origin}:{n}: unsupported cell marker {line!r} (use {CODE!r} or {MARKDOWN!r})"
                )
            cells.append(("markdown" if line == MARKDOWN else "code", []))
        elif not cells:
            if line.strip():
                raise ValueError(f"{origin}:{n}: text before the first cell marker {CODE!r}")
        elif cells[-1][0] == "markdown" and line and line != "#" and not line.startswith("# "):
            raise ValueError(f"{origin}:{n}: markdown line not commented with '# ': {line!r}")
        else:
            cells[-1][1].append(line[2:] if cells[-1][0] == "markdown" else line)
    if not cells:
        raise ValueError(f"{origin}: no cell marker {CODE!r} found")
    out = []
    for kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        out.append((kind, "\n".join(lines)))
    return out


def to_notebook(text: str, name: str) -> nbformat.NotebookNode:
    """The notebook of a percent-format script; ``name`` (the notebook's stem) seeds the cell ids."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for i, (kind, source) in enumerate(parse(text, origin=name)):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell.id = hashlib.sha1(f"{name}/{i}".encode()).hexdigest()[:8]
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(src: Path) -> str:
    """The exact text of the ``.ipynb`` written for source ``src`` (as ``nbformat.write`` writes it)."""
    text = nbformat.writes(to_notebook(src.read_text(), src.stem))
    return text if text.endswith("\n") else text + "\n"


def to_script(nb: nbformat.NotebookNode) -> str:
    """The percent-format script of a notebook (code and markdown cells; outputs are dropped)."""
    blocks = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            body = "\n".join(f"# {line}" if line else "#" for line in cell.source.splitlines())
            blocks.append(f"{MARKDOWN}\n{body}")
        elif cell.cell_type == "code":
            blocks.append(f"{CODE}\n{cell.source}")
        else:
            raise ValueError(f"cell type {cell.cell_type!r} has no percent-format form here")
    return "\n\n".join(blocks) + "\n"


def notebook_path(src: Path) -> Path:
    """``notebooks/src/<name>.py`` -> ``notebooks/<name>.ipynb``."""
    return src.parent.parent / f"{src.stem}.ipynb"


def sources() -> list[Path]:
    """Every source under ``notebooks/src/``, sorted."""
    return sorted(SRC.glob("*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="*", type=Path, help="default: every notebooks/src/*.py")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook differs")
    ap.add_argument("--from-ipynb", type=Path, metavar="NB", help="write src/<name>.py from notebook NB")
    args = ap.parse_args(argv)
    if args.from_ipynb:
        out = SRC / f"{args.from_ipynb.stem}.py"
        out.parent.mkdir(exist_ok=True)
        out.write_text(to_script(nbformat.read(args.from_ipynb, as_version=4)))
        print("wrote", out)
        return 0
    stale = []
    for src in args.sources or sources():
        path, text = notebook_path(src), render(src)
        if path.is_file() and path.read_text() == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(text)
            print("wrote", path)
    for path in stale:
        print(f"{path} differs from its source (run notebooks/sync.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
