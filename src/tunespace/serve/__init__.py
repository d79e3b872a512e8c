"""The web service and explorer: a FastAPI app (`tunespace.serve.app`) over a catalogue and its embedding index.

`tunespace.serve.catalogue` and `tunespace.serve.explorer` hold the logic and import without FastAPI; only
`tunespace.serve.app` needs the `serve` extra (see :func:`require_serve_extra`).
"""

from __future__ import annotations

from tunespace.errors import MissingExtraError
from tunespace.extras import install_hint


def require_serve_extra() -> None:
    """Raise MissingExtraError naming the `serve` extra when FastAPI or uvicorn is not installed."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(f"tunespace serve needs {error.name or 'fastapi'} (the 'serve' extra), which is not "
                                f"installed; install it with: {install_hint('serve')}") from error
