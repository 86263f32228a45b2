"""Sphinx configuration of the glm-registry documentation (build: sphinx-build -W docs docs/_build)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the registry package from this checkout
sys.path.insert(0, str(HERE / "_ext"))

project = "glm-registry"
author = "glm-registry contributors"
copyright = "glm-registry contributors"  # no year: the build must not depend on the date
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "registry_cli"]
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # pydantic's annotations do not resolve to documented targets
autodoc_inherit_docstrings = False  # BaseModel's own docstrings are not about the registry
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["registry.css"]  # long commands wrap; wide tables stay beside the sidebar
html_last_updated_fmt = None
smartquotes = False  # flags such as --out must stay two hyphens
highlight_language = "none"  # literal blocks are shell commands, not Python
html_theme_options = {"page_width": "1200px", "body_max_width": "none"}  # alabaster stacks the sidebar under the text at viewports up to page_width: below 1280 px keeps it beside the text on a 1280 px screen
