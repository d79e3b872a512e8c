"""Simulated listeners for the built-in corpus, because no real listening logs exist for its tunes.

The simulation feeds the temporal protocol (it spans `months` months, some tracks are released late, some users
join late) and HTCL, which assumes that what listeners prefer is not all describable in words: part of every
user's taste lives in note statistics that no attribute names. Every draw comes from `ListenerConfig.seed`, so a
config and a catalogue name one log exactly.

The generative model:

- Catalogue. A track's semantic attributes are its style, region, `mode`, `tempo_class` and `instrument_family`.
  The fallbacks are per track, not per column: style is the track's `dance_type` if it has one, else its `genre`
  (the Essen tunes have genres and no dance types, the Irish and Scottish books the reverse); region is its
  `region`, else its `country`, else its `collection` (the book a tune was printed in stands in for an origin
  the book does not give, as for Ryan's and Aird's). An empty or blank cell is missing; a track whose every
  source is missing has the value "unknown" (`MISSING_VALUE`), which no user favours and which continues no
  session (two "unknown" tracks do not share a style). Its latent attributes z_t are the note statistics
  `note_density`, `mean_abs_interval`, `ascending_share`, `rhythmic_variety` and `pitch_range`, standardised over
  the catalogue (a missing value becomes 0, the mean).
- Popularity. pi_t = rank_t^(-s), the ranks 1..T dealt by a random permutation (s = `zipf_exponent`): a long tail
  unrelated to content.
- Release. A share `initial_release_share` of the tracks exists from `start`; every other track is released at a
  uniform random second of the window, so some tracks appear only late (cold items for the protocol).
- Semantic taste. For each attribute, k = min(`favoured_values`, number of known values) favoured values are drawn
  without replacement with probability proportional to their share of the catalogue ("unknown" is never drawn;
  an attribute with no known value gives no taste), with weights
  theta ~ Dirichlet(`dirichlet_alpha`) over them. A value's match is theta(v) / max(theta): 1 for the user's top
  value, 0 for a value not favoured. A track's semantic match S_ut is the sum of its five values' matches (0..5).
- Latent taste. A direction d_u uniform on the unit sphere over the five standardised note statistics; a track's
  latent match is L_ut = d_u . z_t (melodic contour and rhythmic density, which the attribute words do not name).
- Activity. n_u = max(1, round(LogNormal)) sessions with mean `mean_sessions_per_user` and log-sd
  `sessions_sigma` (a heavy tail). A share `late_join_share` of the users joins at a uniform random time of the
  window, the others at `start`; a user's sessions fall at uniform random whole seconds between joining and the
  end of the window, distinct per user.
- Sessions. With probability `playlist_share` a session is a playlist session, of length `min_playlist_length` +
  NegativeBinomial(2, mean `mean_playlist_length` - `min_playlist_length`); otherwise its length is
  max(1, round(LogNormal)) with mean `mean_session_length` and log-sd `session_length_sigma`; both are capped at
  `max_session_length`. Each track of a session at time tau, after the previous track p, is drawn with

      P(t) ∝ exp((a S_ut + b L_ut + log pi_t + c_s [style_t = style_p] + c_r [region_t = region_p]) / temperature)
             * rho^[t already played in this session] * [release_t <= tau]

  where a = `semantic_weight`, b = `latent_weight`, c_s = `style_continuity`, c_r = `region_continuity` (no
  continuity term for a session's first track, and [style_t = style_p] is 0 when style_p is "unknown", likewise
  for region), rho = `repeat_weight` in ordinary sessions and 0 in playlist sessions. A session left with no
  track of non-zero probability ends early.
- Output. An interaction is one (user, track, session): timestamp = the session's time, weight = the track's
  plays in that session; session times are distinct per user, so (user, track, timestamp) keys are unique. A
  playlist session with at least `min_playlist_length` tracks becomes a playlist, its tracks in play order
  (distinct, since rho = 0 there).

With the defaults, on a catalogue whose note statistics are independent of its attributes, the within-user
variance of the utility splits about 47% semantic, 32% latent and 21% popularity (`listening_stats` reports it
as `utility_variance_share`), so a model that sees only the words cannot explain all of a user's choices.

Sampling is exact and vectorised over sessions. Per block of users the utilities are computed once; the
continuity factor (1 + (e^(c_s/temperature) - 1)[same style]) (1 + (e^(c_r/temperature) - 1)[same region])
expands into four non-negative terms, each over a contiguous range of the tracks sorted by (style, region) or by
region, so a draw picks a term and binary-searches a cumulative sum. Release dates and repeats are applied by
rejection, with an exact draw over the whole catalogue for the few draws still rejected after a few rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tunespace.data.dataset import Dataset
from tunespace.data.schema import TIMESTAMP_DTYPE, TRACKS, validate_table
from tunespace.errors import DataValidationError, TunespaceError

ATTRIBUTES = ("style", "region", "mode", "tempo_class", "instrument_family")
NOTE_STATISTICS = ("note_density", "mean_abs_interval", "ascending_share", "rhythmic_variety", "pitch_range")
# the catalogue columns each attribute is read from, per track: the first non-empty value wins
ATTRIBUTE_SOURCES = {
    "style": ("dance_type", "genre"),
    "region": ("region", "country", "collection"),
    "mode": ("mode",),
    "tempo_class": ("tempo_class",),
    "instrument_family": ("instrument_family",),
}
MISSING_VALUE = "unknown"  # no source gave a value: never a favourite, never a continuity match

_CELLS_PER_BLOCK = 2_000_000  # users x tracks utilities held at once (~16 MB per float64 matrix)
_REJECTION_ROUNDS = 16
_SOURCE = "tracks"


class ListenerConfigError(TunespaceError, ValueError):
    """A listener simulation parameter is outside its range."""


@dataclass(frozen=True)
class ListenerConfig:
    """Parameters of the listener simulation (see the module docstring for the model they drive).

    The defaults suit catalogues of about 300 to 13,000 tracks.
    """

    users: int = 1000
    months: int = 13  # length of the window
    start: str = "2024-01-01"  # the window's first instant; UTC unless the string names a zone
    late_join_share: float = 0.3  # users who join at a random time of the window instead of at its start
    mean_sessions_per_user: float = 20.0  # log-normal number of sessions: its mean ...
    sessions_sigma: float = 1.0  # ... and its log-sd (the heavy tail)
    mean_session_length: float = 8.0  # plays in an ordinary session, log-normal: its mean ...
    session_length_sigma: float = 0.8  # ... and its log-sd
    max_session_length: int = 100  # cap on both kinds of session
    zipf_exponent: float = 0.8  # popularity pi = rank ** -zipf_exponent
    initial_release_share: float = 0.6  # tracks available from the start; the others appear during the window
    favoured_values: int = 3  # favoured values per semantic attribute
    dirichlet_alpha: float = 1.0  # concentration of the weights over the favoured values
    semantic_weight: float = 1.5  # a, on the semantic match S (0..5)
    latent_weight: float = 1.0  # b, on the latent match L (about unit variance over the catalogue)
    temperature: float = 1.0  # divides the whole utility
    style_continuity: float = 1.0  # utility bonus for sharing the previous track's style ...
    region_continuity: float = 0.7  # ... and its region
    repeat_weight: float = 0.15  # probability factor of a track already played in the same session
    playlist_share: float = 0.05  # sessions saved as playlists
    mean_playlist_length: float = 15.0
    min_playlist_length: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "users": self.users >= 1,
            "months": self.months >= 1,
            "late_join_share": 0.0 <= self.late_join_share <= 1.0,
            "mean_sessions_per_user": self.mean_sessions_per_user >= 1.0,
            "sessions_sigma": self.sessions_sigma >= 0.0,
            "mean_session_length": 1.0 <= self.mean_session_length <= self.max_session_length,
            "session_length_sigma": self.session_length_sigma >= 0.0,
            "zipf_exponent": self.zipf_exponent >= 0.0,
            "initial_release_share": 0.0 < self.initial_release_share <= 1.0,
            "favoured_values": self.favoured_values >= 1,
            "dirichlet_alpha": self.dirichlet_alpha > 0.0,
            "semantic_weight": self.semantic_weight >= 0.0,
            "latent_weight": self.latent_weight >= 0.0,
            "temperature": self.temperature > 0.0,
            "style_continuity": self.style_continuity >= 0.0,
            "region_continuity": self.region_continuity >= 0.0,
            "repeat_weight": 0.0 <= self.repeat_weight <= 1.0,
            "playlist_share": 0.0 <= self.playlist_share <= 1.0,
            "min_playlist_length": 1 <= self.min_playlist_length <= self.max_session_length,
            "mean_playlist_length": self.min_playlist_length <= self.mean_playlist_length
            <= self.max_session_length,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ListenerConfigError(f"listener parameters out of range: {values}")
        try:
            _window(self)
        except ValueError as error:
            raise ListenerConfigError(f"start={self.start!r} is not a date ({error})") from error


@dataclass
class Listening:
    """A simulated log in the data model's shape, plus the hidden truth that generated it, for analysis.

    `interactions` (user_id, track_id, timestamp, weight) and `playlists` (playlist_id, position, track_id) follow
    the data model; `users` holds each user's join time, session count and true taste; `catalogue` each track's
    attributes, standardised note statistics (`*_z`), popularity rank and release time; `playlist_sessions` who
    made each playlist and when, so a temporal protocol can drop playlists made after its cutoff.
    """

    interactions: pd.DataFrame
    playlists: pd.DataFrame
    users: pd.DataFrame
    catalogue: pd.DataFrame
    playlist_sessions: pd.DataFrame
    config: ListenerConfig

    def dataset(self, tracks: pd.DataFrame | None = None, name: str = "simulated-listening") -> Dataset:
        """Validate the log as a Dataset, against `tracks` or else the catalogue's track ids."""
        tracks = self.catalogue[["track_id"]] if tracks is None else tracks
        return Dataset.from_frames(self.interactions, tracks, self.playlists, name=name)


@dataclass(frozen=True)
class _Catalogue:
    ids: np.ndarray  # track ids as strings
    codes: dict[str, np.ndarray]  # attribute -> value index per track
    levels: dict[str, pd.Index]  # attribute -> sorted values
    z: np.ndarray  # (tracks, 5) standardised note statistics
    rank: np.ndarray  # popularity rank, 1 = most popular
    release: np.ndarray  # seconds after the window's start

    def log_popularity(self, config: ListenerConfig) -> np.ndarray:
        return -config.zipf_exponent * np.log(self.rank)

    def known(self, attribute: str) -> np.ndarray:
        """Per track: whether the attribute has a value (not `MISSING_VALUE`)."""
        levels = self.levels[attribute]
        if MISSING_VALUE not in levels:
            return np.ones(len(self.ids), dtype=bool)
        return self.codes[attribute] != levels.get_loc(MISSING_VALUE)


@dataclass(frozen=True)
class _Taste:
    favourites: dict[str, np.ndarray]  # attribute -> (users, k) value indices, by decreasing weight
    weights: dict[str, np.ndarray]  # attribute -> (users, k) Dirichlet weights, decreasing
    direction: np.ndarray  # (users, 5) unit vectors over the standardised note statistics

    def semantic(self, rows: np.ndarray, catalogue: _Catalogue) -> np.ndarray:
        """S_ut for the users `rows` and every track: the sum over attributes of the value's match."""
        total = np.zeros((len(rows), len(catalogue.ids)))
        for attribute in ATTRIBUTES:
            weights = self.weights[attribute][rows]
            if weights.shape[1] == 0:  # no known value of this attribute: no taste for it
                continue
            match = np.zeros((len(rows), len(catalogue.levels[attribute])))
            np.put_along_axis(match, self.favourites[attribute][rows], weights / weights[:, :1], axis=1)
            total += match[:, catalogue.codes[attribute]]
        return total

    def latent(self, rows: np.ndarray, catalogue: _Catalogue) -> np.ndarray:
        return self.direction[rows] @ catalogue.z.T


def _window(config: ListenerConfig) -> tuple[pd.Timestamp, int]:
    """The window's start (UTC) and length in whole seconds."""
    start = pd.Timestamp(config.start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    end = start + pd.DateOffset(months=config.months)
    return start, int((end - start).total_seconds())


def _factorize(attributes: dict[str, pd.Series]) -> tuple[dict[str, np.ndarray], dict[str, pd.Index]]:
    """Each attribute's value index per track and its sorted values."""
    codes, levels = {}, {}
    for attribute, values in attributes.items():
        index, uniques = pd.factorize(values, sort=True)
        codes[attribute], levels[attribute] = index.astype(np.int64), pd.Index(uniques)
    return codes, levels


def _attribute(tracks: pd.DataFrame, attribute: str, sources: tuple[str, ...]) -> pd.Series:
    """Per track, the first non-empty value among the `sources` columns present, else `MISSING_VALUE`.

    The fallback is per track: a column that exists but is empty for some tracks (Essen tunes have no dance type)
    must not hide the next column's values for those tracks.
    """
    present = [name for name in sources if name in tracks.columns]
    if not present:
        raise DataValidationError(_SOURCE, f"missing the {attribute} attribute", column=" or ".join(sources))
    value = pd.Series(pd.NA, index=pd.RangeIndex(len(tracks)), dtype="string")
    for name in present:
        column = tracks[name].astype("string").str.strip().reset_index(drop=True)
        value = value.fillna(column.mask(column == ""))
    return value.fillna(MISSING_VALUE)


def _read_catalogue(tracks: pd.DataFrame) -> tuple[np.ndarray, dict[str, pd.Series], np.ndarray]:
    """Track ids, the five attributes as strings, and the standardised note statistics; raise if any is absent."""
    if len(tracks) == 0:
        raise DataValidationError(_SOURCE, "no tracks to listen to")
    ids = validate_table(tracks[["track_id"]] if "track_id" in tracks else tracks, TRACKS, _SOURCE)["track_id"]
    attributes = {attribute: _attribute(tracks, attribute, sources) for attribute, sources in ATTRIBUTE_SOURCES.items()}
    stats = np.empty((len(tracks), len(NOTE_STATISTICS)))
    for j, name in enumerate(NOTE_STATISTICS):
        if name not in tracks.columns:
            raise DataValidationError(_SOURCE, "missing a note statistic", column=name)
        values = pd.to_numeric(tracks[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(values) | (np.isnan(values) & tracks[name].notna().to_numpy())
        if bad.any():
            raise DataValidationError(_SOURCE, "not a finite number", int(np.flatnonzero(bad)[0]) + 1, name)
        stats[:, j] = values
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (stats - np.nanmean(stats, axis=0)) / np.nanstd(stats, axis=0)
    z[~np.isfinite(z)] = 0.0  # a missing value is the mean; a constant statistic carries no taste
    return ids.to_numpy(dtype=object).astype(str), attributes, z


def _draw_taste(catalogue: _Catalogue, config: ListenerConfig, rng: np.random.Generator) -> _Taste:
    favourites, weights = {}, {}
    for attribute in ATTRIBUTES:
        codes = catalogue.codes[attribute][catalogue.known(attribute)]  # "unknown" is no taste to have
        share = np.bincount(codes, minlength=len(catalogue.levels[attribute])) / len(catalogue.ids)
        k = min(config.favoured_values, int((share > 0).sum()))
        # Gumbel top-k: k values without replacement, each step proportional to catalogue share
        with np.errstate(divide="ignore"):
            keys = np.log(share) + rng.gumbel(size=(config.users, len(share)))
        if k == 0:
            favourites[attribute] = np.zeros((config.users, 0), np.int64)
            weights[attribute] = np.zeros((config.users, 0))
            continue
        favoured = np.argsort(-keys, axis=1, kind="stable")[:, :k]
        theta = rng.dirichlet(np.full(k, config.dirichlet_alpha), size=config.users)
        order = np.argsort(-theta, axis=1, kind="stable")
        favourites[attribute] = favoured
        weights[attribute] = np.take_along_axis(theta, order, axis=1)
    direction = rng.standard_normal((config.users, len(NOTE_STATISTICS)))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return _Taste(favourites, weights, direction)


@dataclass(frozen=True)
class _Sessions:
    user: np.ndarray  # sorted by user, then time
    time: np.ndarray  # seconds after the window's start, distinct per user
    length: np.ndarray  # planned number of plays
    playlist: np.ndarray  # bool: a playlist session
    joined: np.ndarray  # per user: join time in seconds


def _lognormal_counts(mean: float, sigma: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """max(1, round(LogNormal)) whose underlying mean is `mean`."""
    draws = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, size)
    return np.maximum(1, np.rint(draws)).astype(np.int64)


def _draw_sessions(config: ListenerConfig, span: int, rng: np.random.Generator) -> _Sessions:
    counts = _lognormal_counts(config.mean_sessions_per_user, config.sessions_sigma, config.users, rng)
    counts = np.minimum(counts, span // 2)  # leaves room for distinct whole seconds, however short the window
    late = rng.random(config.users) < config.late_join_share
    joined = np.where(late, rng.integers(0, span, config.users), 0)
    joined = np.minimum(joined, span - counts - 1)  # room for distinct whole seconds before the end
    user = np.repeat(np.arange(config.users), counts)
    low = joined[user]
    time = low + np.floor(rng.random(len(user)) * (span - counts[user] - low)).astype(np.int64)
    order = np.lexsort((time, user))
    user, time = user[order], time[order]
    # distinct times per user: t'_i = i + running max of (t_i - i) within the user, which stays below the end
    index = np.arange(len(user)) - np.repeat(np.cumsum(counts) - counts, counts)
    stride = 2 * span + 2
    shifted = np.maximum.accumulate(time - index + user * stride)
    time = shifted - user * stride + index
    playlist = rng.random(len(user)) < config.playlist_share
    ordinary = _lognormal_counts(config.mean_session_length, config.session_length_sigma, len(user), rng)
    excess = config.mean_playlist_length - config.min_playlist_length
    playlist_length = config.min_playlist_length + rng.negative_binomial(2, 2 / (2 + excess), len(user))
    length = np.minimum(np.where(playlist, playlist_length, ordinary), config.max_session_length)
    return _Sessions(user=user, time=time, length=length, playlist=playlist, joined=joined)


def _only(keep: np.ndarray, ranges: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) ranges, emptied (high = low) for the tracks not in `keep`."""
    low, high = ranges
    return low, np.where(keep, high, low)


class _Sampler:
    """Draws session tracks for one block of users from P(t) of the module docstring, exactly."""

    def __init__(self, catalogue: _Catalogue, config: ListenerConfig, rng: np.random.Generator):
        self.catalogue, self.config, self.rng = catalogue, config, rng
        style, region = catalogue.codes["style"], catalogue.codes["region"]
        self.style_boost = np.expm1(config.style_continuity / config.temperature)
        self.region_boost = np.expm1(config.region_continuity / config.temperature)
        self.by_style = np.lexsort((region, style))  # tracks sorted by (style, region)
        self.by_region = np.argsort(region, kind="stable")
        pair = style * len(catalogue.levels["region"]) + region

        def bounds(sorted_values: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return (np.searchsorted(sorted_values, values, side="left"),
                    np.searchsorted(sorted_values, values, side="right"))

        # an "unknown" previous track continues nothing: its ranges are empty
        known_style, known_region = catalogue.known("style"), catalogue.known("region")
        self.style_range = _only(known_style, bounds(style[self.by_style], style))
        self.pair_range = _only(known_style & known_region, bounds(pair[self.by_style], pair))
        self.region_range = _only(known_region, bounds(region[self.by_region], region))
        self.known_style, self.known_region = known_style, known_region

    def prepare(self, taste: _Taste, rows: np.ndarray) -> None:
        """Utilities of the users `rows`, normalised per user, and their cumulative sums in both track orders."""
        config, catalogue = self.config, self.catalogue
        logits = (config.semantic_weight * taste.semantic(rows, catalogue)
                  + config.latent_weight * taste.latent(rows, catalogue)
                  + catalogue.log_popularity(config)) / config.temperature
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        self.weights = weights
        self.cum_style = self._cumulative(weights[:, self.by_style])
        self.cum_region = self._cumulative(weights[:, self.by_region])

    @staticmethod
    def _cumulative(weights: np.ndarray) -> np.ndarray:
        """Row-wise cumulative sums from 0, row r offset by 2r, in one C-ordered block so that a flat view is a
        single sorted array: one searchsorted then serves a row-wise search for many users at once."""
        out = np.empty((weights.shape[0], weights.shape[1] + 1))
        out[:, 0] = 0.0
        np.cumsum(weights, axis=1, out=out[:, 1:])
        out += 2.0 * np.arange(weights.shape[0])[:, None]
        return out

    def propose(self, rows: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Draws from P(t) without the release and repeat factors; `previous` is -1 for a first track."""
        n, tracks = len(rows), len(self.catalogue.ids)
        follows = previous >= 0
        p = np.where(follows, previous, 0)
        ranges = ((np.zeros(n, np.int64), np.full(n, tracks)), (self.style_range[0][p], self.style_range[1][p]),
                  (self.region_range[0][p], self.region_range[1][p]), (self.pair_range[0][p], self.pair_range[1][p]))
        in_region = np.array([False, False, True, False])
        factors = np.array([1.0, self.style_boost, self.region_boost, self.style_boost * self.region_boost])
        mass = np.empty((n, 4))
        for term, (low, high) in enumerate(ranges):
            cum = self.cum_region if in_region[term] else self.cum_style
            mass[:, term] = factors[term] * (cum[rows, high] - cum[rows, low])
        mass[:, 1:] *= follows[:, None]
        total = np.cumsum(mass, axis=1)
        term = (total < self.rng.random(n)[:, None] * total[:, -1:]).sum(axis=1)
        low = np.choose(term, [r[0] for r in ranges])
        high = np.choose(term, [r[1] for r in ranges])
        uniform = self.rng.random(n)
        chosen = np.empty(n, np.int64)
        for use_region, cum, order in ((False, self.cum_style, self.by_style), (True, self.cum_region, self.by_region)):
            mask = in_region[term] == use_region
            r, lo, hi = rows[mask], low[mask], high[mask]
            x = cum[r, lo] + uniform[mask] * (cum[r, hi] - cum[r, lo])
            position = np.searchsorted(cum.reshape(-1), x, side="right") - 1 - r * (tracks + 1)
            chosen[mask] = order[np.clip(position, lo, hi - 1)]
        return chosen

    def exact(self, rows: np.ndarray, previous: np.ndarray, time: np.ndarray, history: np.ndarray,
              repeat: np.ndarray) -> np.ndarray:
        """Draws from the full P(t) over the whole catalogue; -1 where no track has non-zero probability."""
        catalogue = self.catalogue
        style, region = catalogue.codes["style"], catalogue.codes["region"]
        chunk = max(1, _CELLS_PER_BLOCK // len(catalogue.ids))
        out = np.empty(len(rows), np.int64)
        for first in range(0, len(rows), chunk):
            part = slice(first, first + chunk)
            r, p, h = rows[part], previous[part], history[part]
            follows = (p >= 0)[:, None]
            q = np.where(p >= 0, p, 0)
            same_style = (follows & self.known_style[q][:, None]) & (style[None, :] == style[q][:, None])
            same_region = (follows & self.known_region[q][:, None]) & (region[None, :] == region[q][:, None])
            weights = (self.weights[r]
                       * (1 + self.style_boost * same_style)
                       * (1 + self.region_boost * same_region)
                       * (catalogue.release[None, :] <= time[part][:, None]))
            played = np.ones_like(weights)
            np.put_along_axis(played, h, np.broadcast_to(repeat[part][:, None], h.shape), axis=1)
            weights *= played
            cum = np.cumsum(weights, axis=1)
            x = self.rng.random(len(r)) * cum[:, -1]
            drawn = np.minimum((cum <= x[:, None]).sum(axis=1), len(catalogue.ids) - 1)
            out[part] = np.where(cum[:, -1] > 0, drawn, -1)
        return out


def _play_block(sampler: _Sampler, sessions: _Sessions, block: slice, first_user: int,
                config: ListenerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Play the sessions `block` (all of one block of users); return the played tracks and the final lengths."""
    rng, release = sampler.rng, sampler.catalogue.release
    rows = sessions.user[block] - first_user
    time = sessions.time[block]
    length = sessions.length[block].copy()
    repeat = np.where(sessions.playlist[block], 0.0, config.repeat_weight)
    history = np.full((len(rows), int(length.max())), -1, np.int64)
    for k in range(history.shape[1]):
        active = np.flatnonzero(length > k)
        if active.size == 0:
            break
        previous = history[active, k - 1] if k else np.full(active.size, -1)
        drawn = np.full(active.size, -1)
        pending = np.arange(active.size)
        for _ in range(_REJECTION_ROUNDS):
            if pending.size == 0:
                break
            s = active[pending]
            candidate = sampler.propose(rows[s], previous[pending])
            seen = (history[s, :k] == candidate[:, None]).any(axis=1)
            keep = (release[candidate] <= time[s]) & (~seen | (rng.random(s.size) < repeat[s]))
            drawn[pending[keep]] = candidate[keep]
            pending = pending[~keep]
        if pending.size:
            s = active[pending]
            drawn[pending] = sampler.exact(rows[s], previous[pending], time[s], history[s, :k], repeat[s])
        ended = drawn < 0
        length[active[ended]] = k
        history[active[~ended], k] = drawn[~ended]
    return history, length


def _timestamps(start: pd.Timestamp, seconds: np.ndarray) -> pd.Series:
    return pd.Series(start + pd.to_timedelta(seconds, unit="s")).astype(TIMESTAMP_DTYPE)


def _list_column(rows: list[list]) -> np.ndarray:
    """One list per cell; pandas would read a list of equal-length lists as a matrix."""
    column = np.empty(len(rows), dtype=object)
    column[:] = rows
    return column


def _user_ids(count: int) -> np.ndarray:
    width = max(4, len(str(count - 1)))
    return np.array([f"u{i:0{width}d}" for i in range(count)])


def simulate_listeners(tracks: pd.DataFrame, config: ListenerConfig = ListenerConfig()) -> Listening:
    """Simulate listening sessions and playlists over `tracks` (model in the module docstring), seeded by config."""
    ids, attributes, z = _read_catalogue(tracks)
    start, span = _window(config)
    item_rng, user_rng, session_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(3))
    codes, levels = _factorize(attributes)
    n_tracks = len(ids)
    late = item_rng.random(n_tracks) >= config.initial_release_share
    catalogue = _Catalogue(ids=ids, codes=codes, levels=levels, z=z, rank=item_rng.permutation(n_tracks) + 1,
                           release=np.where(late, item_rng.integers(0, span, n_tracks), 0))
    taste = _draw_taste(catalogue, config, user_rng)
    sessions = _draw_sessions(config, span, user_rng)

    sampler = _Sampler(catalogue, config, session_rng)
    block_users = max(1, _CELLS_PER_BLOCK // n_tracks)
    bounds = np.searchsorted(sessions.user, np.arange(0, config.users + block_users, block_users))
    histories, lengths = [], []
    for b, first_user in enumerate(range(0, config.users, block_users)):
        sampler.prepare(taste, np.arange(first_user, min(first_user + block_users, config.users)))
        history, length = _play_block(sampler, sessions, slice(bounds[b], bounds[b + 1]), first_user, config)
        histories.append(history)
        lengths.append(length)
    length = np.concatenate(lengths)
    session = np.repeat(np.arange(len(length)), length)
    played = np.concatenate([h[np.arange(h.shape[1])[None, :] < n[:, None]] for h, n in zip(histories, lengths)])

    user_ids = _user_ids(config.users)
    keys, plays = np.unique(session * n_tracks + played, return_counts=True)
    event_session, event_track = keys // n_tracks, keys % n_tracks
    interactions = pd.DataFrame({
        "user_id": user_ids[sessions.user[event_session]],
        "track_id": ids[event_track],
        "timestamp": _timestamps(start, sessions.time[event_session]),
        "weight": plays.astype(np.float32),
    })

    kept = sessions.playlist & (length >= config.min_playlist_length)
    in_playlist = kept[session]
    playlist_index = np.cumsum(kept) - 1
    position = np.arange(len(session)) - np.repeat(np.cumsum(length) - length, length)
    playlist_names = np.array([f"pl{i:06d}" for i in range(int(kept.sum()))])
    playlists = pd.DataFrame({
        "playlist_id": playlist_names[playlist_index[session[in_playlist]]],
        "position": position[in_playlist].astype(np.int64),
        "track_id": ids[played[in_playlist]],
    })
    playlist_sessions = pd.DataFrame({
        "playlist_id": playlist_names,
        "user_id": user_ids[sessions.user[kept]],
        "timestamp": _timestamps(start, sessions.time[kept]),
    })

    users = pd.DataFrame({
        "user_id": user_ids,
        "joined": _timestamps(start, sessions.joined),
        "sessions": np.bincount(sessions.user, minlength=config.users),
    })
    for attribute in ATTRIBUTES:
        levels = catalogue.levels[attribute].to_numpy()
        users[f"{attribute}_favourites"] = _list_column(levels[taste.favourites[attribute]].tolist())
        users[f"{attribute}_weights"] = _list_column(taste.weights[attribute].tolist())
    for j, name in enumerate(NOTE_STATISTICS):
        users[f"latent_{name}"] = taste.direction[:, j]

    catalogue_frame = pd.DataFrame({"track_id": ids, **{a: attributes[a].to_numpy() for a in ATTRIBUTES}})
    for j, name in enumerate(NOTE_STATISTICS):
        catalogue_frame[f"{name}_z"] = z[:, j]
    catalogue_frame["popularity_rank"] = catalogue.rank
    catalogue_frame["release"] = _timestamps(start, catalogue.release)
    return Listening(interactions=interactions, playlists=playlists, users=users, catalogue=catalogue_frame,
                     playlist_sessions=playlist_sessions, config=config)


def _rebuild(listening: Listening) -> tuple[_Catalogue, _Taste, np.ndarray]:
    """The simulation's catalogue and tastes from the Listening frames, and each event's user row."""
    frame, users = listening.catalogue, listening.users
    start, _ = _window(listening.config)
    codes, levels = _factorize({a: frame[a].astype("string") for a in ATTRIBUTES})
    catalogue = _Catalogue(
        ids=frame["track_id"].to_numpy(dtype=object).astype(str), codes=codes, levels=levels,
        z=frame[[f"{name}_z" for name in NOTE_STATISTICS]].to_numpy(dtype="float64"),
        rank=frame["popularity_rank"].to_numpy(dtype="float64"),
        release=((frame["release"] - start).dt.total_seconds()).to_numpy())
    favourites, weights = {}, {}
    for attribute in ATTRIBUTES:
        values = np.array(users[f"{attribute}_favourites"].tolist(), dtype=object)
        favourites[attribute] = catalogue.levels[attribute].get_indexer(values.ravel()).reshape(values.shape)
        weights[attribute] = np.array(users[f"{attribute}_weights"].tolist(), dtype="float64")
    direction = users[[f"latent_{name}" for name in NOTE_STATISTICS]].to_numpy(dtype="float64")
    rows = pd.Index(users["user_id"]).get_indexer(listening.interactions["user_id"])
    return catalogue, _Taste(favourites, weights, direction), rows


def _gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all equal, towards 1 when one holds everything."""
    x = np.sort(np.asarray(values, dtype="float64"))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float(2 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


def listening_stats(listening: Listening, variance_users: int = 64) -> dict[str, object]:
    """Numbers that say whether a simulated log looks like listening: size, long tails, time span, taste.

    Activity is events (user, track, session) per user; popularity is plays per catalogue track, unplayed tracks
    included. `semantic_lift` is the mean over users of (share of plays in the user's top style - that style's
    catalogue share); `latent_lift` is the play-weighted mean of d_u . z_t over the catalogue's sd of it, per
    user (0 when choices ignore the latent taste). `playlist_style_continuity` is the share of consecutive
    playlist tracks that share a known style (a playlist keeps its session's play order). `utility_variance_share`
    splits the within-user variance of the utility over its three terms, averaged over `variance_users` users
    drawn with the config's seed.
    """
    config, events = listening.config, listening.interactions
    catalogue, taste, rows = _rebuild(listening)
    tracks = pd.Index(catalogue.ids).get_indexer(events["track_id"])
    plays = events["weight"].to_numpy(dtype="float64")
    per_user = events.groupby("user_id").size().to_numpy()
    per_track = np.bincount(tracks, weights=plays, minlength=len(catalogue.ids))
    top = max(1, int(np.ceil(0.01 * len(per_track))))
    lengths = listening.playlists.groupby("playlist_id").size().to_numpy()
    months = events["timestamp"].dt.tz_convert("UTC").dt.strftime("%Y-%m")
    ordered = listening.playlists.sort_values(["playlist_id", "position"])
    playlist_styles = catalogue.codes["style"][pd.Index(catalogue.ids).get_indexer(ordered["track_id"])]
    playlist_ids = ordered["playlist_id"].to_numpy()
    same_playlist = playlist_ids[1:] == playlist_ids[:-1]
    known_style = catalogue.known("style")
    playlist_known = known_style[pd.Index(catalogue.ids).get_indexer(ordered["track_id"])]
    same_style = (playlist_styles[1:] == playlist_styles[:-1]) & playlist_known[1:]  # "unknown" is no style

    style = catalogue.codes["style"]
    has_taste = taste.favourites["style"].shape[1] > 0
    top_style = taste.favourites["style"][:, 0] if has_taste else np.full(len(listening.users), -1)
    style_share = np.bincount(style, minlength=len(catalogue.levels["style"])) / len(style)
    user_plays = np.bincount(rows, weights=plays, minlength=len(listening.users))
    in_top = np.bincount(rows, weights=plays * (style[tracks] == top_style[rows]), minlength=len(user_plays))
    active = (user_plays > 0) & has_taste
    covariance = np.cov(catalogue.z, rowvar=False, bias=True)
    spread = np.sqrt(np.einsum("ui,ij,uj->u", taste.direction, covariance, taste.direction))
    latent = np.einsum("ei,ei->e", taste.direction[rows], catalogue.z[tracks]) / np.maximum(spread[rows], 1e-12)

    sample = np.random.default_rng(config.seed).choice(
        len(listening.users), min(variance_users, len(listening.users)), replace=False)
    parts = {"semantic": config.semantic_weight * taste.semantic(sample, catalogue),
             "latent": config.latent_weight * taste.latent(sample, catalogue),
             "popularity": np.broadcast_to(catalogue.log_popularity(config), (len(sample), len(catalogue.ids)))}
    variances = {name: float(values.var(axis=1).mean()) for name, values in parts.items()}
    total_variance = sum(variances.values()) or 1.0

    return {
        "users": int(len(per_user)),
        "tracks": int(len(catalogue.ids)),
        "tracks_played": int((per_track > 0).sum()),
        "events": int(len(events)),
        "plays": int(plays.sum()),
        "sessions": int(events[["user_id", "timestamp"]].drop_duplicates().shape[0]),
        "activity_quantiles": {q: float(v) for q, v in
                               zip((0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0),
                                   np.quantile(per_user, (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)))},
        "activity_gini": _gini(per_user),
        "popularity_gini": _gini(per_track),
        "top1_share": float(np.sort(per_track)[::-1][:top].sum() / per_track.sum()),
        "playlists": int(len(lengths)),
        "playlist_length_mean": float(lengths.mean()) if len(lengths) else 0.0,
        "playlist_length_min": int(lengths.min()) if len(lengths) else 0,
        "playlist_length_max": int(lengths.max()) if len(lengths) else 0,
        "playlist_style_continuity": float(same_style[same_playlist].mean()) if same_playlist.any() else 0.0,
        "months_covered": int(months.nunique()),
        "first": events["timestamp"].min(),
        "last": events["timestamp"].max(),
        "late_tracks": int((catalogue.release > 0).sum()),
        "semantic_lift": float(np.mean(in_top[active] / user_plays[active] - style_share[top_style[active]]))
        if active.any() else 0.0,
        "latent_lift": float(np.sum(plays * latent) / plays.sum()),
        "utility_variance_share": {name: value / total_variance for name, value in variances.items()},
    }
