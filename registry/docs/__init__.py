"""Generated documentation: RST pages from the specs (see generate.py)."""

from __future__ import annotations

from .generate import build, check, pages, render_family, render_index

__all__ = ["build", "check", "pages", "render_family", "render_index"]
