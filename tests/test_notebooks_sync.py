"""Every committed notebook equals the conversion of its percent-format source (notebooks/sync.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
_spec = importlib.util.spec_from_file_location("notebooks_sync", NOTEBOOKS / "sync.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)

SOURCES = sync.sources()
EXPECTED = {
    "compartments",
    "fig1d_controller",
    "fig2_feedback_geometry",
    "fig3_toy_training",
    "figS2_S4_feedback_learning",
    "spiking_dfc",
    "table1",
}


def test_every_source_has_its_notebook() -> None:
    assert EXPECTED <= {p.stem for p in SOURCES}
    for src in SOURCES:
        assert sync.notebook_path(src).is_file(), f"{src.name}: run notebooks/sync.py"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_equals_its_source(src: Path) -> None:
    assert sync.notebook_path(src).read_text() == sync.render(src), f"run notebooks/sync.py {src}"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_source_round_trips(src: Path) -> None:
    """The source is in the canonical form that --from-ipynb writes, so sources cannot drift in style."""
    assert sync.to_script(nbformat.read(sync.notebook_path(src), as_version=4)) == src.read_text()


def test_parse_cells() -> None:
    text = "# %% [markdown]\n# # Title\n#\n# text $x$\n\n# %%\nx = 1\n\n# a comment\nx\n\n\n# %%\ny = 2\n"
    assert sync.parse(text) == [
        ("markdown", "# Title\n\ntext $x$"),
        ("code", "x = 1\n\n# a comment\nx"),
        ("code", "y = 2"),
    ]
    nb = sync.to_notebook(text, "demo")
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells[1:])
    assert nb.metadata == {"kernelspec": sync.KERNELSPEC}
    assert len({c.id for c in nb.cells}) == 3
    assert sync.to_script(nb) == text.replace("x\n\n\n# %%", "x\n\n# %%")


def test_mutated_source_is_detected(tmp_path: Path) -> None:
    src = NOTEBOOKS / "src" / "fig2_feedback_geometry.py"
    committed = sync.notebook_path(src).read_text()
    text = src.read_text()
    for mutated in (
        text.replace("n_samples=200", "n_samples=201"),  # a code cell
        text.replace("PCA(2)", "PCA(3)"),  # a markdown cell
        # two code cells merged
        text.replace("\n# %%\nfrom dfc_brian.plotting.figures", "\nfrom dfc_brian.plotting.figures"),
    ):
        assert mutated != text
        copy = tmp_path / "src" / src.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(mutated)
        assert sync.render(copy) != committed
    (tmp_path / src.name.replace(".py", ".ipynb")).write_text(committed)
    assert sync.main(["--check", str(copy)]) == 1
    copy.write_text(text)
    assert sync.main(["--check", str(copy)]) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1\n# %%\ny = 2\n", "before the first cell marker"),
        ("# %% [raw]\nx\n", "unsupported cell marker"),
        ("# %% [markdown]\nnot commented\n", "not commented"),
        ("\n\n", "no cell marker"),
    ],
)
def test_bad_source_names_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        sync.parse(text, origin="nb.py")
    assert str(err.value).startswith("nb.py")
