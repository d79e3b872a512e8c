"""Simulated listeners on a small random catalogue: seeded, valid, long-tailed, and both tastes visible in the log.

The catalogue's note statistics are drawn independently of its attributes, so whatever pulls plays towards a
user's latent direction cannot be the semantic taste in disguise. The long-tail thresholds below sit well inside
what the default model gives on this catalogue (activity Gini about 0.5, popularity Gini about 0.55, top-1% share
about 0.15).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tunespace.corpus.listeners import (
    NOTE_STATISTICS,
    ListenerConfig,
    ListenerConfigError,
    Listening,
    _rebuild,
    _Sampler,
    listening_stats,
    simulate_listeners,
)
from tunespace.data.dataset import Dataset
from tunespace.errors import DataValidationError

MIN_ACTIVITY_GINI = 0.35  # a log-normal activity with sigma 1 gives about 0.5
MIN_POPULARITY_GINI = 0.4  # a uniform choice would give about 0.1 on this catalogue
MIN_TOP1_SHARE = 0.05  # the top 1% of tracks take at least five times their share of plays
START = pd.Timestamp("2024-01-01", tz="UTC")
END = START + pd.DateOffset(months=13)

STYLES = ["reel", "jig", "hornpipe", "polka", "slide", "waltz", "march", "strathspey"]
REGIONS = ["Ireland", "Scotland", "England", "Shetland", "Brittany", "Cape Breton"]


def random_tracks(n: int = 300, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "track_id": [f"t{i:04d}" for i in range(n)],
        "title": [f"Tune {i}" for i in range(n)],
        "dance_type": rng.choice(STYLES, n, p=[0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]),
        "region": rng.choice(REGIONS, n),
        "mode": rng.choice(["major", "minor", "dorian", "mixolydian"], n, p=[0.5, 0.2, 0.15, 0.15]),
        "tempo_class": rng.choice(["slow", "medium", "fast"], n),
        "instrument_family": rng.choice(["strings", "wind", "keyboard", "plucked"], n),
        "note_density": rng.gamma(4.0, 1.5, n),
        "mean_abs_interval": rng.gamma(3.0, 0.8, n),
        "ascending_share": rng.beta(5.0, 5.0, n),
        "rhythmic_variety": rng.uniform(0.0, 1.0, n),
        "pitch_range": rng.normal(14.0, 4.0, n),
    })


CONFIG = ListenerConfig(users=150, seed=3)


@pytest.fixture(scope="module")
def tracks() -> pd.DataFrame:
    return random_tracks()


@pytest.fixture(scope="module")
def listening(tracks: pd.DataFrame) -> Listening:
    return simulate_listeners(tracks, CONFIG)


@pytest.fixture(scope="module")
def stats(listening: Listening) -> dict:
    return listening_stats(listening)


def plays_with(listening: Listening, *columns: str) -> pd.DataFrame:
    return listening.interactions.merge(listening.catalogue[["track_id", *columns]], on="track_id")


# ---------------------------------------------------------------- determinism and the data model


def test_same_seed_same_log_and_another_seed_another(tracks: pd.DataFrame, listening: Listening) -> None:
    again = simulate_listeners(tracks, CONFIG)
    for table in ("interactions", "playlists", "users", "catalogue", "playlist_sessions"):
        pdt.assert_frame_equal(getattr(again, table), getattr(listening, table))
    other = simulate_listeners(tracks, ListenerConfig(users=150, seed=4))
    assert not other.interactions.equals(listening.interactions)


def test_log_is_a_valid_dataset(tracks: pd.DataFrame, listening: Listening) -> None:
    dataset = Dataset.from_frames(listening.interactions, tracks, listening.playlists)
    assert dataset.summary()["interactions"] == len(listening.interactions)
    assert listening.dataset().summary()["users"] == CONFIG.users
    assert listening.playlists["track_id"].isin(tracks["track_id"]).all()
    positions = listening.playlists.groupby("playlist_id")["position"].agg(["min", "max", "size"])
    assert (positions["min"] == 0).all() and (positions["max"] == positions["size"] - 1).all()
    assert set(listening.playlist_sessions["playlist_id"]) == set(listening.playlists["playlist_id"])
    assert listening.playlist_sessions["user_id"].isin(listening.users["user_id"]).all()
    assert (listening.interactions["weight"] >= 1).all()


def test_every_event_is_a_session_play(listening: Listening) -> None:
    """A user's session times are distinct, so a (user, timestamp) pair is one session."""
    events = listening.interactions
    assert not events.duplicated(["user_id", "track_id", "timestamp"]).any()
    sessions = events.groupby("user_id")["timestamp"].nunique()
    expected = listening.users.set_index("user_id")["sessions"]
    assert (sessions <= expected.loc[sessions.index]).all()
    assert sessions.sum() >= 0.95 * expected.sum()  # only sessions that ran out of tracks can vanish


# ---------------------------------------------------------------- time


def test_timestamps_span_thirteen_months(listening: Listening, stats: dict) -> None:
    timestamps = listening.interactions["timestamp"]
    assert timestamps.min() >= START and timestamps.max() < END
    assert timestamps.max() - timestamps.min() > pd.Timedelta(days=365)
    assert stats["months_covered"] == 13


def test_no_play_before_release_or_join(listening: Listening) -> None:
    events = plays_with(listening, "release")
    assert (events["timestamp"] >= events["release"]).all()
    late = listening.catalogue["release"] > START + pd.DateOffset(months=6)
    assert late.sum() > 0.1 * len(late)
    assert listening.catalogue.loc[late, "track_id"].isin(events["track_id"]).any()
    joined = events.merge(listening.users[["user_id", "joined"]], on="user_id")
    assert (joined["timestamp"] >= joined["joined"]).all()
    assert (listening.users["joined"] > START).any()


# ---------------------------------------------------------------- long tails and playlists


def test_activity_and_popularity_have_long_tails(stats: dict) -> None:
    assert stats["activity_gini"] > MIN_ACTIVITY_GINI
    assert stats["popularity_gini"] > MIN_POPULARITY_GINI
    assert stats["top1_share"] > MIN_TOP1_SHARE
    quantiles = stats["activity_quantiles"]
    assert quantiles[1.0] > 3 * quantiles[0.5]


def test_playlists_are_long_enough_and_distinct(listening: Listening, stats: dict) -> None:
    assert stats["playlists"] > 0
    assert stats["playlist_length_min"] >= CONFIG.min_playlist_length
    assert abs(stats["playlist_length_mean"] - CONFIG.mean_playlist_length) < 0.2 * CONFIG.mean_playlist_length
    assert not listening.playlists.duplicated(["playlist_id", "track_id"]).any()
    share = stats["playlists"] / stats["sessions"]
    assert 0.5 * CONFIG.playlist_share < share < 2 * CONFIG.playlist_share


def test_sessions_are_coherent(tracks: pd.DataFrame, stats: dict) -> None:
    config = ListenerConfig(users=150, seed=3, style_continuity=0.0, region_continuity=0.0)
    without = listening_stats(simulate_listeners(tracks, config))
    assert stats["playlist_style_continuity"] > without["playlist_style_continuity"] + 0.05


# ---------------------------------------------------------------- both tastes are visible


def test_users_prefer_their_top_semantic_values(listening: Listening, stats: dict) -> None:
    for attribute in ("style", "region"):
        events = plays_with(listening, attribute)
        top = listening.users.set_index("user_id")[f"{attribute}_favourites"].str[0]
        in_top = events[attribute].to_numpy() == top.loc[events["user_id"]].to_numpy()
        share = pd.Series(in_top * events["weight"].to_numpy()).groupby(events["user_id"].to_numpy()).sum()
        share /= events.groupby("user_id")["weight"].sum()
        base = listening.catalogue[attribute].value_counts(normalize=True)
        lift = share - base.loc[top.loc[share.index]].to_numpy()
        assert lift.mean() > 0.1
        assert (lift > 0).mean() > 0.7
    assert stats["semantic_lift"] > 0.1


def latent_scores(listening: Listening) -> np.ndarray:
    events = listening.interactions
    direction = listening.users.set_index("user_id").loc[events["user_id"],
                                                          [f"latent_{n}" for n in NOTE_STATISTICS]]
    z = listening.catalogue.set_index("track_id").loc[events["track_id"], [f"{n}_z" for n in NOTE_STATISTICS]]
    return np.einsum("ij,ij->i", direction.to_numpy(), z.to_numpy())


def test_users_prefer_their_latent_direction(tracks: pd.DataFrame, listening: Listening, stats: dict) -> None:
    """The catalogue's mean latent score is 0 (standardised statistics); played tracks lie along the direction,
    and only because of the latent taste: without it the played tracks' score falls back to about 0."""
    assert latent_scores(listening).mean() > 0.3
    assert stats["latent_lift"] > 0.3
    blind = simulate_listeners(tracks, ListenerConfig(users=150, seed=3, latent_weight=0.0))
    assert abs(latent_scores(blind).mean()) < 0.1
    shares = stats["utility_variance_share"]
    assert shares["latent"] > 0.2 and shares["semantic"] > 0.2
    assert sum(shares.values()) == pytest.approx(1.0)


# ---------------------------------------------------------------- the sampler draws from the documented P(t)


def _sampler_and_utility(tracks: pd.DataFrame, user: int):
    """A prepared sampler over `tracks` (4 users, seed 0) and `user`'s utility before the continuity terms."""
    config = ListenerConfig(users=4, seed=0)
    catalogue, taste, _ = _rebuild(simulate_listeners(tracks, config))
    sampler = _Sampler(catalogue, config, np.random.default_rng(0))
    sampler.prepare(taste, np.arange(4))
    utility = (config.semantic_weight * taste.semantic(np.array([user]), catalogue)[0]
               + config.latent_weight * taste.latent(np.array([user]), catalogue)[0]
               + catalogue.log_popularity(config))
    return config, catalogue, sampler, utility


def test_sampler_draws_from_the_documented_distribution() -> None:
    tracks = random_tracks(n=16, seed=1)
    user, previous, draws = 2, 5, 200_000
    config, catalogue, sampler, utility = _sampler_and_utility(tracks, user)
    style, region = catalogue.codes["style"], catalogue.codes["region"]
    utility = utility + config.style_continuity * (style == style[previous])
    utility = utility + config.region_continuity * (region == region[previous])
    expected = np.exp(utility / config.temperature)
    expected /= expected.sum()
    rows = np.full(draws, user)
    drawn = sampler.propose(rows, np.full(draws, previous))
    assert 0.5 * np.abs(np.bincount(drawn, minlength=16) / draws - expected).sum() < 0.01
    # the exact path adds the release and repeat factors
    time = np.full(draws, int(np.median(catalogue.release[catalogue.release > 0])))
    history = np.tile(np.argsort(-expected)[:2], (draws, 1))
    exact = expected * (catalogue.release <= time[0])
    exact[history[0]] *= 0.5
    exact /= exact.sum()
    drawn = sampler.exact(rows, np.full(draws, previous), time, history, np.full(draws, 0.5))
    assert 0.5 * np.abs(np.bincount(drawn, minlength=16) / draws - exact).sum() < 0.01


# ---------------------------------------------------------------- inputs


def test_genre_and_country_stand_in_for_dance_type_and_region(tracks: pd.DataFrame) -> None:
    renamed = tracks.rename(columns={"dance_type": "genre", "region": "country"})
    listening = simulate_listeners(renamed, ListenerConfig(users=10, seed=0))
    assert set(listening.catalogue["style"]) == set(tracks["dance_type"])
    assert set(listening.catalogue["region"]) == set(tracks["region"])


def test_missing_values_and_constant_statistics_are_tolerated(tracks: pd.DataFrame) -> None:
    patchy = tracks.copy()
    patchy.loc[:9, "mode"] = None
    patchy.loc[:9, "note_density"] = np.nan
    patchy["pitch_range"] = 12.0
    listening = simulate_listeners(patchy, ListenerConfig(users=10, seed=0))
    assert "unknown" in set(listening.catalogue["mode"])
    assert (listening.catalogue.loc[:9, "note_density_z"] == 0).all()
    assert (listening.catalogue["pitch_range_z"] == 0).all()


@pytest.mark.parametrize("column", ["dance_type", "instrument_family", "pitch_range", "track_id"])
def test_a_missing_column_is_named(tracks: pd.DataFrame, column: str) -> None:
    with pytest.raises(DataValidationError, match=column):
        simulate_listeners(tracks.drop(columns=column), ListenerConfig(users=5))


def test_bad_inputs_raise_named_errors(tracks: pd.DataFrame) -> None:
    broken = tracks.copy()
    broken.loc[3, "note_density"] = np.inf
    with pytest.raises(DataValidationError, match="row 4"):
        simulate_listeners(broken, ListenerConfig(users=5))
    with pytest.raises(DataValidationError, match="duplicate"):
        simulate_listeners(pd.concat([tracks, tracks.iloc[:1]]), ListenerConfig(users=5))
    with pytest.raises(DataValidationError):
        simulate_listeners(tracks.iloc[:0], ListenerConfig(users=5))
    for bad in ({"users": 0}, {"temperature": 0.0}, {"playlist_share": 1.5}, {"repeat_weight": -0.1},
                {"min_playlist_length": 20, "mean_playlist_length": 10.0}, {"start": "not a date"}):
        with pytest.raises(ListenerConfigError):
            ListenerConfig(**bad)


# ---------------------------------------------------------------- per-track fallbacks and the "unknown" value


def mixed_tracks() -> pd.DataFrame:
    """Six rows, one per fallback case: the Essen-like rows have a genre and no dance type, and so on."""
    tracks = random_tracks(n=6, seed=2).drop(columns=["dance_type", "region"])
    tracks["dance_type"] = ["reel", "", None, "jig", "  ", ""]
    tracks["genre"] = ["", "Ballade", "Liebeslied", "Tanz", None, ""]
    tracks["region"] = ["Ireland", "", "Westfalen", None, "", ""]
    tracks["country"] = ["Ireland", "Germany", "Germany", "", "", ""]
    tracks["collection"] = ["oneills", "essen", "essen", "ryans", "airds", None]
    return tracks


def test_style_and_region_fall_back_per_track() -> None:
    catalogue = simulate_listeners(mixed_tracks(), ListenerConfig(users=5, seed=0)).catalogue
    assert catalogue["style"].tolist() == ["reel", "Ballade", "Liebeslied", "jig", "unknown", "unknown"]
    assert catalogue["region"].tolist() == ["Ireland", "Germany", "Westfalen", "ryans", "airds", "unknown"]


def test_no_user_favours_an_unknown_or_empty_value(tracks: pd.DataFrame) -> None:
    """Even when "unknown" is the commonest style, as the empty string was for the Essen tunes."""
    patchy = tracks.copy()
    patchy.loc[: int(0.6 * len(patchy)), "dance_type"] = ""
    patchy.loc[:50, "region"] = None
    listening = simulate_listeners(patchy, ListenerConfig(users=200, seed=0))
    assert (listening.catalogue["style"] == "unknown").mean() > 0.5
    for attribute in ("style", "region", "mode"):
        favourites = listening.users[f"{attribute}_favourites"].explode()
        assert not favourites.isin(["", "unknown"]).any(), attribute
        assert listening.users[f"{attribute}_favourites"].map(len).eq(3).all()


def test_an_attribute_with_no_known_value_gives_no_taste(tracks: pd.DataFrame) -> None:
    blank = tracks.assign(mode="")
    listening = simulate_listeners(blank, ListenerConfig(users=20, seed=0))
    assert listening.users["mode_favourites"].map(len).eq(0).all()
    assert (listening.catalogue["mode"] == "unknown").all()
    assert listening_stats(listening)["users"] == 20


def test_an_unknown_previous_style_continues_nothing() -> None:
    """P(t) after a track of unknown style has no style-continuity term, though other tracks are "unknown" too."""
    tracks = random_tracks(n=16, seed=1)
    tracks.loc[[3, 5, 9, 12], "dance_type"] = ""
    user, previous, draws = 1, 5, 200_000
    config, catalogue, sampler, utility = _sampler_and_utility(tracks, user)
    region = catalogue.codes["region"]
    expected = np.exp((utility + config.region_continuity * (region == region[previous])) / config.temperature)
    expected /= expected.sum()
    rows = np.full(draws, user)
    drawn = sampler.propose(rows, np.full(draws, previous))
    assert 0.5 * np.abs(np.bincount(drawn, minlength=16) / draws - expected).sum() < 0.01
    time = np.full(draws, int(catalogue.release.max()))
    drawn = sampler.exact(rows, np.full(draws, previous), time, np.empty((draws, 0), np.int64), np.ones(draws))
    assert 0.5 * np.abs(np.bincount(drawn, minlength=16) / draws - expected).sum() < 0.01
