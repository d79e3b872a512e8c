"""The service's response bodies (pydantic): what each endpoint returns, and so its OpenAPI schema."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TrackSummary(BaseModel):
    """What a result list shows of a track."""

    id: str = Field(description="Track id (may contain slashes, e.g. airds/book1/1).")
    title: str
    collection: str | None = Field(None, description="The book, album or artist the track comes from.")
    tags: dict[str, str] = Field(description="Tag key -> value (mode, meter, family, tempo, ...).")
    duration: float | None = Field(None, description="Seconds.")
    audio_url: str | None = Field(None, description="Where /audio serves the track's file; null without one.")
    has_score: bool = Field(description="Whether the track has ABC notation (GET /tracks/{id} returns it).")


class ScoredTrack(BaseModel):
    track: TrackSummary
    score: float = Field(description="Inner product of the query and the track's embedding (higher is nearer).")


class SearchResponse(BaseModel):
    query: str = Field(description="What was searched: the text, or like:TRACK_ID.")
    language: str | None = None
    results: list[ScoredTrack]


class SimilarResponse(BaseModel):
    track: TrackSummary
    results: list[ScoredTrack]


class Listener(BaseModel):
    user_id: str
    sessions: int = Field(description="Listening sessions in which the listener played the track.")


class ListenerGroup(BaseModel):
    attribute: str = Field(description="style, region, mode, tempo_class or instrument_family.")
    value: str = Field(description="The favourite that this group of the track's listeners shares.")
    listeners: int


class TrackDetail(TrackSummary):
    metadata: dict[str, str | float] = Field(description="Every other non-empty column of the tracks table.")
    abc: str | None = Field(None, description="ABC notation of the track's score.")
    listeners: int = Field(description="Distinct listeners who played the track.")
    top_listeners: list[Listener]
    listener_groups: list[ListenerGroup] = Field(
        description="The track's listeners grouped by their first-ranked favourite of each attribute (built-in "
                    "corpus: users.parquet); largest groups first.")


class HistoryItem(BaseModel):
    track: TrackSummary
    plays: float
    last_played: datetime


class RecommendationResponse(BaseModel):
    user_id: str
    source: str = Field(description="What produced the recommendations: the saved recommender or the listener's "
                                    "profile in the index.")
    history_tracks: int = Field(description="Distinct tracks in the listener's history.")
    history: list[HistoryItem] = Field(description="Most played first; at most `history` of them.")
    recommendations: list[ScoredTrack] = Field(description="Never a track of the history.")


class MapPointOut(BaseModel):
    id: str
    title: str
    x: float
    y: float
    value: str | None = Field(None, description="The track's value of the colour key.")


class MapResponse(BaseModel):
    colour: str | None = Field(None, description="The tag key the points are coloured by.")
    colour_keys: list[str] = Field(description="Every key the map can be coloured by.")
    values: list[str] = Field(description="The colour key's values, most frequent first.")
    points: list[MapPointOut]


class IndexInfo(BaseModel):
    kind: str
    dim: int
    size: int


class Health(BaseModel):
    status: str
    tracks: int
    index: IndexInfo
    text_search: bool
    languages: list[str] = Field(description="Caption languages the text tower was trained on; empty without one.")
    recommender: str | None


class Problem(BaseModel):
    """The body of every 4xx answer."""

    detail: str
