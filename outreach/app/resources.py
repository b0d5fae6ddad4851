"""Files that ship inside the installed packages: the Jinja templates and data tables.

Found through ``importlib.resources``, never relative to a checkout, so a wheel or a container
install renders pages and copy exactly as the source tree does.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from jinja2 import BaseLoader, PackageLoader

TEMPLATES_PACKAGE = "templates"  # the top-level templates/ folder, one sub-folder per feature


def templates_folder() -> Path:
    """The templates folder on disk (Flask's ``template_folder``)."""
    return Path(str(resources.files(TEMPLATES_PACKAGE)))


def template_loader(feature: str) -> BaseLoader:
    """A Jinja loader for one feature's folder (``messages``, ``email``, ``join`` ...)."""
    return PackageLoader(TEMPLATES_PACKAGE, feature)


def data_text(name: str) -> str:
    """A bundled data file of ``outreach/data/`` (``zip3.csv``)."""
    return resources.files("outreach").joinpath("data", name).read_text(encoding="utf-8")
