"""The JSON API on a tiny catalogue, through FastAPI's test client: every endpoint, ids with slashes, and a clear
4xx for every bad input."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tunespace.serve.app import create_app
from tunespace.serve.explorer import Explorer, ServeSetupError


@pytest.fixture(scope="module")
def full(served):
    """The explorer with everything: HTCL index, the run's text tower and a saved recommender."""
    return Explorer(served.data, served.htcl_index, run=served.run, model=served.model)


@pytest.fixture(scope="module")
def client(full):
    return TestClient(create_app(full))


@pytest.fixture(scope="module")
def bare(served):
    """MFCC index only: no text search, recommendations from the listener's profile."""
    return TestClient(create_app(Explorer(served.data, served.mfcc_index)))


@pytest.fixture(scope="module")
def tracks(served):
    return pd.read_parquet(served.data / "tracks.parquet")


def test_health_describes_what_is_served(client, bare):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["tracks"] == 24 and health["index"]["size"] == 24
    assert health["text_search"] and health["languages"] == ["en"] and health["recommender"] == "itemknn"
    assert bare.get("/health").json()["text_search"] is False and bare.get("/health").json()["languages"] == []


def test_track_ids_with_slashes_resolve_in_every_route(client, tracks):
    track_id = tracks["track_id"].iloc[0]
    assert "/" in track_id
    for path in (f"/tracks/{track_id}", f"/tracks/{quote(track_id, safe='')}"):  # raw and %2F-encoded slashes
        body = client.get(path).json()
        assert body["id"] == track_id and body["title"]
    similar = client.get(f"/tracks/{track_id}/similar", params={"k": 5}).json()
    assert similar["track"]["id"] == track_id and len(similar["results"]) == 5
    assert track_id not in [r["track"]["id"] for r in similar["results"]]
    scores = [r["score"] for r in similar["results"]]
    assert scores == sorted(scores, reverse=True)


def test_track_detail_has_tags_score_and_listeners(client, tracks, served):
    row = tracks.iloc[3]
    body = client.get(f"/tracks/{row.track_id}").json()
    assert body["abc"] == (served.data / row.abc_path).read_text(encoding="utf-8")
    assert body["has_score"] and body["tags"]["mode"] == row["mode"]
    assert body["metadata"]["collection"] == row["collection"]
    assert body["audio_url"] == "/audio/" + row.track_id
    plays = pd.read_parquet(served.data / "interactions.parquet").query("track_id == @row.track_id")
    assert body["listeners"] == plays["user_id"].nunique()
    assert [listener["sessions"] for listener in body["top_listeners"]] == sorted(
        plays["user_id"].value_counts().head(10).tolist(), reverse=True)
    if body["listeners"]:
        groups = body["listener_groups"]
        assert groups and all(0 < g["listeners"] <= body["listeners"] for g in groups)
        assert {g["attribute"] for g in groups} <= {"style", "region", "mode", "tempo_class", "instrument_family"}


def test_search_like_a_track_equals_similar(client, tracks):
    track_id = tracks["track_id"].iloc[5]
    like = client.get("/search", params={"like": track_id, "k": 4}).json()
    similar = client.get(f"/tracks/{track_id}/similar", params={"k": 4}).json()
    assert like["query"] == f"like:{track_id}" and like["results"] == similar["results"]


def test_text_search_in_each_language_ranks_the_catalogue(client):
    for lang in ("en", "de", "zh"):
        body = client.get("/search", params={"q": "a slow air on the fiddle", "lang": lang, "k": 24}).json()
        assert body["language"] == lang and len(body["results"]) == 24
        assert len({r["track"]["id"] for r in body["results"]}) == 24


def test_recommendations_exclude_the_history(client, bare, served):
    interactions = pd.read_parquet(served.data / "interactions.parquet")
    distinct = interactions.groupby("user_id")["track_id"].nunique()
    user = distinct[distinct >= 3].sort_values(kind="stable").index[0]  # a listener with tracks left to find
    played = set(interactions.query("user_id == @user")["track_id"])
    for api, source in ((client, "recommender itemknn"), (bare, "listening profile")):
        body = api.get(f"/users/{user}/recommendations", params={"k": 5, "history": 3}).json()
        assert body["source"].startswith(source) and body["history_tracks"] == len(played)
        assert len(body["history"]) == 3 and {h["track"]["id"] for h in body["history"]} <= played
        assert body["recommendations"] and not {r["track"]["id"] for r in body["recommendations"]} & played
        plays = [h["plays"] for h in body["history"]]
        assert plays == sorted(plays, reverse=True)


def test_audio_is_served_whole_and_by_range(client, tracks, served):
    row = tracks.iloc[0]
    content = (served.data / row.audio_path).read_bytes()
    whole = client.get(f"/audio/{row.track_id}")
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["content-type"].startswith("audio/") and whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/audio/{row.track_id}", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == content[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(content)}"
    assert client.get(f"/audio/{row.track_id}", headers={"Range": f"bytes={len(content) + 5}-"}).status_code == 416


@pytest.mark.parametrize("path", [
    "/audio/../tracks.parquet", "/audio/%2e%2e/tracks.parquet", "/audio/%2e%2e%2ftracks.parquet",
    "/audio/..%2f..%2f..%2fetc%2fpasswd", "/audio/%252e%252e%252ftracks.parquet", "/audio/..%5ctracks.parquet",
    "/audio//etc/passwd", "/audio/%2fetc%2fpasswd", "/audio/audio", "/audio/tracks.parquet",
])
def test_no_path_from_the_request_reaches_the_file_system(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert response.headers["content-type"] == "application/json"  # a message, never a file's bytes
    detail = response.json()["detail"]
    assert "unknown track id" in detail or detail == "Not Found"  # the client may fold `..` before sending


def test_the_map_is_a_pca_of_every_track_coloured_by_a_tag(client, tracks):
    body = client.get("/map").json()
    assert body["colour"] == body["colour_keys"][0] == "family"
    assert {"mode", "meter", "tempo"} <= set(body["colour_keys"])
    assert "instrument_family" not in body["colour_keys"]  # the same values as the tag family
    assert len(body["points"]) == 24 and {p["id"] for p in body["points"]} == set(tracks["track_id"])
    assert max(abs(p["x"]) for p in body["points"]) == pytest.approx(1.0)
    modes = client.get("/map", params={"colour": "mode"}).json()
    assert set(modes["values"]) == set(tracks["mode"]) and all(p["value"] in modes["values"] for p in modes["points"])


@pytest.mark.parametrize(("path", "params", "status", "said"), [
    ("/tracks/no/such/track", {}, 404, "unknown track id 'no/such/track'"),
    ("/tracks/no/such/track/similar", {}, 404, "unknown track id"),
    ("/users/nobody/recommendations", {}, 404, "unknown listener id 'nobody'"),
    ("/search", {}, 400, "give exactly one of q=TEXT"),
    ("/search", {"q": "reel", "like": "x"}, 400, "give exactly one of q=TEXT"),
    ("/search", {"q": "   "}, 422, "String should match pattern"),
    ("/search", {"like": "nope"}, 404, "unknown track id 'nope'"),
    ("/search", {"q": "reel", "lang": "fr"}, 422, "Input should be 'en', 'de' or 'zh'"),
    ("/search", {"q": "reel", "k": 0}, 422, "greater than or equal to 1"),
    ("/search", {"q": "reel", "k": 101}, 422, "less than or equal to 100"),
    ("/search", {"q": "reel", "k": "ten"}, 422, "valid integer"),
    ("/map", {"colour": "shoe_size"}, 422, "Input should be 'family', 'meter', 'mode'"),
])
def test_bad_input_gets_a_clear_4xx(client, path, params, status, said):
    response = client.get(path, params=params)
    assert response.status_code == status
    assert said in str(response.json()["detail"])


def test_features_the_server_was_not_started_with_are_a_400(bare):
    response = bare.get("/search", params={"q": "reel"})
    assert response.status_code == 400 and "start the server with --run" in response.json()["detail"]


def test_an_index_of_another_catalogue_or_space_is_refused(served, tmp_path):
    from tunespace.index.queries import QueryError

    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"track_id": ["x/1", "x/2"]}).to_parquet(other / "tracks.parquet")
    with pytest.raises(ServeSetupError, match="holds none of the 2 tracks"):
        Explorer(other, served.mfcc_index)
    with pytest.raises(QueryError, match="backend 'mfcc'"):
        Explorer(served.data, served.mfcc_index, run=served.run)


def test_the_page_and_its_scripts_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>tunespace explorer</title>" in page.text
    assert client.get("/static/vendor/abcjs-basic-min.js").status_code == 200
    assert client.get("/static/app.js").status_code == 200


def test_a_plain_folder_of_audio_is_served(tmp_path):
    """A user's own folder: `tunespace catalogue`, `embed`, an index, then the explorer (ids are file paths, audio
    lies outside the data folder, no listeners, the map coloured by the files' genre tags)."""
    import numpy as np
    import soundfile

    from tunespace.cli.main import main
    from tunespace.index import EmbeddingIndex

    music = tmp_path / "music"
    for name, genre, freq in (("rock/a.wav", "Rock", 220.0), ("rock/b.wav", "Rock", 330.0),
                              ("jazz/live/c.wav", "Jazz", 440.0), ("jazz/d.wav", "Jazz", 550.0)):
        (music / name).parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(3 * 16000) / 16000
        with soundfile.SoundFile(music / name, "w", 16000, 1) as handle:
            handle.genre = genre
            handle.write((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    data = tmp_path / "data"
    assert main(["catalogue", str(music), "--out", str(data)]) == 0
    assert main(["embed", "--backend", "mfcc", "--data", str(data), "--out", str(data / "emb")]) == 0
    EmbeddingIndex.from_folder(data / "emb").save(tmp_path / "index")
    client = TestClient(create_app(Explorer(data, tmp_path / "index")))

    body = client.get("/tracks/jazz/live/c.wav").json()
    assert body["id"] == "jazz/live/c.wav" and body["metadata"]["genre"] == "Jazz" and body["listeners"] == 0
    assert body["abc"] is None and not body["has_score"] and body["listener_groups"] == []
    assert client.get("/audio/jazz/live/c.wav").content == (music / "jazz/live/c.wav").read_bytes()
    similar = client.get("/tracks/rock/a.wav/similar", params={"k": 3}).json()["results"]
    assert len(similar) == 3 and "rock/a.wav" not in [r["track"]["id"] for r in similar]
    colours = client.get("/map").json()
    assert colours["colour"] == "genre" and set(colours["values"]) == {"Rock", "Jazz"}
    assert client.get("/users/anyone/recommendations").status_code == 404
