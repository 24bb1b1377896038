"""The web UI: a single-page app built from ``web/`` (the repository's top-level folder) by
``./dev setup`` into ``static/`` here, and served by the API process (``api.routes.ui``).

The build output is not committed. When it is missing the server still starts and answers the
API; ``/`` then says how to build the UI.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""Where the build puts ``index.html`` and ``assets/``."""


def index_file() -> Path | None:
    """Return the built ``index.html``, or None when the UI was not built."""
    index = STATIC_DIR / "index.html"
    return index if index.is_file() else None


def asset_file(name: str) -> Path | None:
    """Return the built asset ``assets/<name>``, or None when there is no such file.

    Names that would leave the assets folder (``../``, absolute paths) are never found.
    """
    root = (STATIC_DIR / "assets").resolve()
    candidate = (root / name).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate
