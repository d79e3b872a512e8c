"""The FastAPI app: the explorer's JSON API, the audio files of the catalogue, and the page itself.

Track and listener ids may contain slashes (`airds/book1/1`), so they are `path` parameters; `/tracks/{id}/similar`
is declared before `/tracks/{id}` so that it wins for ids that do not themselves end in `/similar`. Every 4xx has a
`{"detail": "..."}` body that says what was wrong.

Index look-ups take well under a millisecond, so `/similar` and search by example run on the event loop (no thread
hop per request); text search (a transformer forward pass) and the pandas work of the track and listener pages run
in the thread pool. Annotations are evaluated here (no `from __future__ import annotations`): FastAPI reads the
map's colour keys, a type made with the app, from the endpoint's signature.
"""

import functools
import mimetypes
from importlib import resources
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from tunespace.errors import UnknownIdError
from tunespace.index import Hit
from tunespace.index.queries import QueryError
from tunespace.serve.explorer import LANGUAGES, Explorer, FeatureUnavailableError
from tunespace.serve.models import (
    Health,
    HistoryItem,
    IndexInfo,
    Listener,
    ListenerGroup,
    MapPointOut,
    MapResponse,
    Problem,
    RecommendationResponse,
    ScoredTrack,
    SearchResponse,
    SimilarResponse,
    TrackDetail,
    TrackSummary,
)

MAX_K = 100
MAX_QUERY_CHARS = 500
TOP_LISTENERS = 10
LISTENER_GROUPS = 12
STATIC = resources.files("tunespace.serve") / "static"
NOT_FOUND = {404: {"model": Problem, "description": "Unknown id."}}
BAD_REQUEST = {400: {"model": Problem, "description": "A request the server cannot answer as asked."}}

K = Annotated[int, Query(ge=1, le=MAX_K, description="How many results.")]


class BadRequestError(ValueError):
    """A request whose parameters are each valid but do not make a question together."""


def audio_url(track_id: str) -> str:
    return "/audio/" + quote(track_id, safe="/")


def create_app(explorer: Explorer) -> FastAPI:
    """The app over one explorer; the server computes nothing per request beyond the index search itself."""
    catalogue = explorer.catalogue
    keys = catalogue.colour_keys()
    languages = explorer.trained_languages
    app = FastAPI(title="tunespace explorer", version="1",
                  description="Search a music catalogue by text or by example, open a tune's score, find similar "
                              "tunes, see what a listener would be recommended, and browse a map of the catalogue.")

    @app.exception_handler(UnknownIdError)
    async def unknown_id(request: Request, error: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(FeatureUnavailableError)
    async def unavailable(request: Request, error: FeatureUnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(QueryError)
    @app.exception_handler(BadRequestError)
    async def bad_request(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @functools.lru_cache(maxsize=65536)
    def summary(track_id: str) -> TrackSummary:
        return TrackSummary(id=track_id, title=catalogue.title(track_id), collection=catalogue.collection(track_id),
                            tags=catalogue.tags.get(track_id, {}), duration=catalogue.duration(track_id),
                            audio_url=audio_url(track_id) if catalogue.has_audio(track_id) else None,
                            has_score=catalogue.has_score(track_id))

    def scored(hits: list[Hit]) -> list[ScoredTrack]:
        return [ScoredTrack(track=summary(hit.item_id), score=float(hit.score)) for hit in hits]

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        """What the server holds: tracks, the index, and whether text search and a recommender are on."""
        return Health(status="ok", tracks=len(catalogue),
                      index=IndexInfo(kind=str(explorer.index.kind), dim=int(explorer.index.dim),
                                      size=len(explorer.index.ids)),
                      text_search=explorer.text_search, languages=list(languages),
                      recommender=explorer.model.name if explorer.model is not None else None)

    @app.get("/search", response_model=SearchResponse, responses={**BAD_REQUEST, **NOT_FOUND}, tags=["search"])
    async def search(
            q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, pattern=r"\S",
                                           description="Text to search for (not blank).")] = None,
            lang: Annotated[Literal[LANGUAGES] | None, Query(  # type: ignore[valid-type]
                description="Language of q (see /health for the languages the run was trained on).")] = None,
            like: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS,
                                              description="Search by example: a track id.")] = None,
            k: K = 10) -> SearchResponse:
        """Tracks for a text (`q`, through the HTCL run's text tower) or like a track (`like`); give exactly one."""
        if (q is None) == (like is None):
            raise BadRequestError("give exactly one of q=TEXT (text search) or like=TRACK_ID (search by example)")
        if like is not None:
            return SearchResponse(query=f"like:{like}", results=scored(explorer.similar(like, k)))
        assert q is not None
        hits = await run_in_threadpool(explorer.search_text, q.strip(), k, lang)
        return SearchResponse(query=q, language=lang, results=scored(hits))

    @app.get("/tracks/{track_id:path}/similar", response_model=SimilarResponse, responses=NOT_FOUND,
             tags=["tracks"])
    async def similar(track_id: str, k: K = 10) -> SimilarResponse:
        """The tracks nearest to this one in the index."""
        return SimilarResponse(track=summary_of(track_id), results=scored(explorer.similar(track_id, k)))

    def summary_of(track_id: str) -> TrackSummary:
        catalogue.require(track_id)
        return summary(track_id)

    @app.get("/tracks/{track_id:path}", response_model=TrackDetail, responses=NOT_FOUND, tags=["tracks"])
    def track(track_id: str) -> TrackDetail:
        """A track's metadata, tags, ABC notation, and who listens to it."""
        base = summary_of(track_id)
        return TrackDetail(
            **base.model_dump(), metadata=catalogue.metadata(track_id), abc=catalogue.abc(track_id),
            listeners=catalogue.listener_count(track_id),
            top_listeners=[Listener(user_id=u, sessions=n) for u, n in catalogue.top_listeners(track_id,
                                                                                                 TOP_LISTENERS)],
            listener_groups=[ListenerGroup(attribute=g.attribute, value=g.value, listeners=g.listeners)
                             for g in catalogue.listener_groups(track_id, LISTENER_GROUPS)])

    @app.get("/users/{user_id:path}/recommendations", response_model=RecommendationResponse,
             responses={**BAD_REQUEST, **NOT_FOUND}, tags=["listeners"])
    def recommendations(user_id: str, k: K = 10,
                        history: Annotated[int, Query(ge=0, le=1000, description="History rows to list.")] = 50
                        ) -> RecommendationResponse:
        """A listener's history (most played first) and the tracks recommended to them."""
        hits, source = explorer.recommendations(user_id, k)
        played = catalogue.history(user_id)
        return RecommendationResponse(
            user_id=user_id, source=source, history_tracks=len(played),
            history=[HistoryItem(track=summary(row.track_id), plays=float(row.plays),
                                 last_played=row.last_played.to_pydatetime())
                     for row in played.head(history).itertuples()],
            recommendations=scored(hits))

    @app.get("/audio/{track_id:path}", response_class=FileResponse, tags=["tracks"], responses={
        **NOT_FOUND,
        200: {"content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}},
              "description": "The whole file."},
        206: {"content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}},
              "description": "The requested byte range (Range: bytes=START-END)."},
        416: {"description": "A range outside the file."}})
    def audio(track_id: str) -> FileResponse:
        """The track's audio file, with HTTP range requests. Only files named by the tracks table are served:
        the id is looked up there and no part of the request is ever used as a path."""
        path = catalogue.audio_file(track_id)
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type)

    # the schema lists the keys (a request for another is a 422 that names them); Literal needs at least one
    ColourKey = Literal[tuple(keys)] if keys else str  # type: ignore[valid-type]
    map_cache: dict[str | None, MapResponse] = {}

    @app.get("/map", response_model=MapResponse, responses={} if keys else BAD_REQUEST, tags=["map"])
    def catalogue_map(colour: Annotated[ColourKey | None, Query(  # type: ignore[valid-type]
            description="Tag key to colour by; default the first of colour_keys.")] = None) -> MapResponse:
        """The catalogue in two dimensions (PCA of the index's embeddings, computed at start), coloured by a tag."""
        if colour is not None and not keys:
            raise BadRequestError(f"cannot colour by {colour!r}: the catalogue's tracks have no tags to colour by")
        chosen = colour if colour is not None else (keys[0] if keys else None)
        if chosen not in map_cache:
            values = [catalogue.colour_value(p.track_id, chosen) if chosen else None for p in explorer.map_points]
            counts: dict[str, int] = {}
            for value in values:
                if value is not None:
                    counts[value] = counts.get(value, 0) + 1
            map_cache[chosen] = MapResponse(
                colour=chosen, colour_keys=keys, values=sorted(counts, key=lambda v: (-counts[v], v)),
                points=[MapPointOut(id=p.track_id, title=catalogue.title(p.track_id), x=p.x, y=p.y, value=value)
                        for p, value in zip(explorer.map_points, values)])
        return map_cache[chosen]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
