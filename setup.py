"""Ship the configs of ``models/`` inside the package (``dfc_brian/models``) of every build.

All metadata lives in pyproject.toml; this file only extends ``build_py`` so that
``pip install .`` and wheels carry the named configs (``dfc-brian configs`` lists them) without
moving ``models/`` out of the repository root. An editable install reads ``models/`` in place.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = Path(__file__).resolve().parent / "models"


class build_py_with_models(build_py):
    """``build_py`` that also copies ``models/**/*.yaml`` to ``<build_lib>/dfc_brian/models``."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "dfc_brian" / "models"
        for src in sorted(MODELS.rglob("*.yaml")):
            target = dest / src.relative_to(MODELS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)


setup(cmdclass={"build_py": build_py_with_models})
