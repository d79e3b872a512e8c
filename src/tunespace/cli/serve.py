"""`tunespace serve`: the explorer (web page and JSON API) over a catalogue and its embedding index."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    data: Annotated[Path, typer.Option(help="Data folder (tracks.parquet, and interactions.parquet for listeners).")],
    index: Annotated[Path, typer.Option(help="Index folder from `tunespace index build`.")],
    run: Annotated[Path | None, typer.Option(
        help="HTCL run folder: enables text search through its text tower (the index must hold its embeddings).")
    ] = None,
    model: Annotated[Path | None, typer.Option(
        help="Saved recommender folder for /users/{id}/recommendations; without it, a listener's recommendations "
             "are the tracks nearest to the mean embedding of their history.")] = None,
    embeddings: Annotated[Path | None, typer.Option(
        help="The embedding folder the index was built from, when it has moved since (checked against the "
             "index's manifest).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; loopback by default, so only this machine "
                                           "reaches it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the explorer: search by text or example, scores, similar tracks, listeners, the catalogue map."""
    from tunespace.cli.common import console
    from tunespace.serve import require_serve_extra

    require_serve_extra()
    import uvicorn

    from tunespace.serve.app import create_app
    from tunespace.serve.explorer import Explorer

    explorer = Explorer(data, index, run=run, model=model, embeddings=embeddings)
    if not _is_loopback(host):
        log.warning("listening on %s: every machine that reaches this address can use the explorer", host)
    console.print(f"explorer of {len(explorer.catalogue)} tracks on http://{host}:{port}/ (API docs at /docs); "
                  "Ctrl-C stops it", soft_wrap=True, highlight=False)
    uvicorn.run(create_app(explorer), host=host, port=port, log_level="warning")
