"""How well a CLaMP run finds and describes scores, measured on held-out tunes only, as CLaMP 2 reports it.

- Semantic search: every caption of a held-out tune (per language) ranks the held-out tunes' ABC, and their MIDI;
  MRR and Hit@k with exact pessimistic ranks (ties never favour the query: `evaluation.retrieval`), each with a
  95% bootstrap interval over queries, and against the whole catalogue as gallery too (training tunes included as
  distractors). The gap between English and German/Chinese queries is tested per tune (paired t-test over tunes of
  each tune's mean reciprocal rank, Holm-corrected).
- ABC <-> MIDI of the same tune; with an audio-aligned run, audio <-> ABC and audio <-> MIDI (the audio vectors
  of the run's `audio.embeddings` folder against the scores mapped into that space).
- Classification: linear probes (`evaluation.probe.probe_on_split`: fit on training tunes, L2 chosen on
  validation tunes, accuracy and macro-F1 on test tunes) for dance type, genre, region, mode and meter, from each
  run's ABC and MIDI embeddings, from the same tower with random weights, from TF-IDF over the ABC text, and from
  any audio embedding folder given (MFCC, MusiCNN, HTCL on the rendered audio of the same tunes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tunespace.contrastive.clamp import (
    ClampAlignment,
    ClampSplit,
    ScoreBank,
    corpus_tracks,
    load_clamp_run,
    music_vectors,
    read_audio_vectors,
    score_bank,
)
from tunespace.contrastive.htcl import ConfigError
from tunespace.evaluation.probe import probe_on_split
from tunespace.evaluation.retrieval import retrieval_chance, retrieval_per_query
from tunespace.evaluation.significance import bounded_interval, holm, paired_test
from tunespace.io import write_text
from tunespace.symbolic.tfidf import CharTfidf

logger = logging.getLogger(__name__)

PROBE_LABELS = ("dance_type", "genre", "region", "mode", "meter")
PART_KS = (1, 5, 10)  # the held-out gallery has ~100 tunes: Hit@100 would be 1 by construction
CATALOGUE_KS = (1, 10, 100)
MIN_CLASS_ITEMS = 5  # a probe class needs this many training tunes; rarer labels are left out of that probe


def caption_queries(bank: ScoreBank, track_ids: Sequence[str], language: str) -> tuple[list[str], np.ndarray]:
    """Every caption of the tracks in `language`, with the row of the track each describes."""
    texts, groups = [], []
    for row, track in enumerate(track_ids):
        for text in bank.captions[language][track]:
            texts.append(text)
            groups.append(row)
    return texts, np.asarray(groups)


def retrieval_row(queries: np.ndarray, targets: np.ndarray, groups: np.ndarray, ks: tuple[int, ...],
                  seed: int = 0) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Means with 95% bootstrap intervals (inside [0, 1]) of MRR and Hit@k, the chance MRR, and per-query values."""
    per_query = retrieval_per_query(queries, targets, query_groups=groups, ks=ks)
    row: dict[str, float] = {"queries": len(queries), "targets": len(targets)}
    for name in ("MRR", *[f"R@{k}" for k in ks]):
        values = per_query[name].astype(float)
        interval = bounded_interval(values, method="bootstrap", seed=seed)
        label = name.replace("R@", "hit@")
        row[label], row[f"{label}_low"], row[f"{label}_high"] = float(values.mean()), interval.low, interval.high
    row["median_rank"] = float(np.median(per_query["rank"]))
    row["chance_MRR"] = retrieval_chance(len(targets), 1, ks)["MRR"]
    return row, per_query


def _usable_or_fail(bank: ScoreBank, ids: tuple[str, ...], part: str) -> list[str]:
    usable = list(bank.usable(ids))
    if len(usable) < 2:
        raise ConfigError(f"the {part} part has {len(usable)} tunes with scores and captions; nothing to rank")
    return usable


def semantic_search(model: ClampAlignment, bank: ScoreBank, split: ClampSplit, part: str,
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Text -> score rows per format, language and gallery, and the per-language gap tests (against English)."""
    held = _usable_or_fail(bank, split.part(part), part)
    catalogue = list(bank.usable(tuple(sorted(set(split.train) | set(split.validation) | set(split.test)))))
    where = {track: row for row, track in enumerate(catalogue)}
    rows, gaps = [], []
    for fmt in model.config.data.formats:
        held_vectors = music_vectors(model, bank, held, fmt)
        catalogue_vectors = music_vectors(model, bank, catalogue, fmt)
        per_track_rr: dict[str, np.ndarray] = {}
        for language in model.config.data.languages:
            texts, groups = caption_queries(bank, held, language)
            text_vectors = model.clamp.encode_text(texts).cpu().numpy()
            row, per_query = retrieval_row(text_vectors, held_vectors, groups, PART_KS, seed)
            rows.append({"task": f"text->{fmt}", "language": language, "gallery": part, **row})
            per_track_rr[language] = pd.Series(per_query["MRR"]).groupby(groups).mean().to_numpy()
            catalogue_groups = np.asarray([where[held[g]] for g in groups])
            row, _ = retrieval_row(text_vectors, catalogue_vectors, catalogue_groups, CATALOGUE_KS, seed)
            rows.append({"task": f"text->{fmt}", "language": language, "gallery": "catalogue", **row})
        others = [language for language in model.config.data.languages if language != "en"]
        if "en" in per_track_rr and others:
            tests = [paired_test(per_track_rr[language], per_track_rr["en"]) for language in others]
            corrected = holm([test.p_value for test in tests])
            for language, test, p_holm in zip(others, tests, corrected):
                gaps.append({"task": f"text->{fmt}", "language": language, "baseline": "en", "tunes": len(held),
                             "mean_difference": float(np.mean(per_track_rr[language] - per_track_rr["en"])),
                             "t_p": test.p_value, "t_p_holm": float(p_holm)})
    return pd.DataFrame(rows), pd.DataFrame(gaps)


def cross_modal(model: ClampAlignment, bank: ScoreBank, split: ClampSplit, part: str,
                seed: int = 0) -> pd.DataFrame:
    """ABC <-> MIDI of the same held-out tune, and audio <-> score when the run was aligned with an audio space."""
    held = _usable_or_fail(bank, split.part(part), part)
    identity = np.arange(len(held))
    vectors = {fmt: music_vectors(model, bank, held, fmt) for fmt in model.config.data.formats}
    rows = []
    if {"abc", "midi"} <= set(vectors):
        for source, target in (("abc", "midi"), ("midi", "abc")):
            row, _ = retrieval_row(vectors[source], vectors[target], identity, PART_KS, seed)
            rows.append({"task": f"{source}->{target}", "language": "", "gallery": part, "method": "", **row})
    if model.audio_proj is not None and model.config.audio.embeddings:
        audio = read_audio_vectors(model.config.audio.embeddings)
        present = [i for i, track in enumerate(held) if track in audio]
        sounds = np.stack([audio[held[i]] for i in present])
        for fmt, music in vectors.items():
            mapped = model.audio_space(torch.as_tensor(music[present]).to(model.clamp.device)).cpu().numpy()
            ranks = np.arange(len(present))
            for name, queries, targets in ((f"audio->{fmt}", sounds, mapped), (f"{fmt}->audio", mapped, sounds)):
                row, _ = retrieval_row(queries, targets, ranks, PART_KS, seed)
                rows.append({"task": name, "language": "", "gallery": part, "method": "joint (audio_proj)", **row})
    return pd.DataFrame(rows)


RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # chosen on validation MRR, ties to the smaller


def ridge_map(features: np.ndarray, targets: np.ndarray, l2: float) -> np.ndarray:
    """W minimising |features W - targets|^2 + l2 |W|^2 (closed form)."""
    gram = features.T @ features + l2 * np.eye(features.shape[1])
    return np.linalg.solve(gram, features.T @ targets)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def mapped_audio(model: ClampAlignment, bank: ScoreBank, split: ClampSplit, part: str, audio_folder: str | Path,
                 seed: int = 0) -> pd.DataFrame:
    """Scores put into an audio space after training: a ridge map from a run's music vectors to the audio vectors,
    fitted on training tunes, its L2 weight chosen on validation tunes (audio -> score MRR), scored on `part`."""
    audio = read_audio_vectors(audio_folder)
    parts = {name: [t for t in bank.usable(split.part(name)) if t in audio] for name in ("train", "validation", part)}
    rows = []
    for fmt in model.config.data.formats:
        music = {name: music_vectors(model, bank, ids, fmt) for name, ids in parts.items()}
        sounds = {name: np.stack([audio[t] for t in ids]) for name, ids in parts.items()}

        def score(l2: float, name: str, music: dict[str, np.ndarray] = music,
                  sounds: dict[str, np.ndarray] = sounds) -> np.ndarray:
            return _unit(music[name] @ ridge_map(music["train"], sounds["train"], l2))

        validation = np.arange(len(parts["validation"]))
        chosen = max(RIDGE_GRID, key=lambda l2: (retrieval_row(sounds["validation"], score(l2, "validation"),
                                                                validation, PART_KS, seed)[0]["MRR"], -l2))
        if chosen in (RIDGE_GRID[0], RIDGE_GRID[-1]):
            logger.warning("%s -> audio: the ridge L2 chosen on validation (%g) is at the edge of the grid", fmt,
                           chosen)
        mapped, held = score(chosen, part), np.arange(len(parts[part]))
        for name, queries, targets in ((f"audio->{fmt}", sounds[part], mapped), (f"{fmt}->audio", mapped,
                                                                                 sounds[part])):
            row, _ = retrieval_row(queries, targets, held, PART_KS, seed)
            rows.append({"task": name, "language": "", "gallery": part, "method": f"ridge map (l2 {chosen:g})",
                         **row})
    return pd.DataFrame(rows)


def abc_documents(corpus: str | Path, track_ids: Sequence[str]) -> list[str]:
    """The leak-stripped interleaved ABC of each track (what the tower reads), for the TF-IDF baseline."""
    from tunespace.symbolic.abc import abc_patches

    corpus = Path(corpus)
    paths = corpus_tracks(corpus).set_index("track_id")["abc_path"]
    return ["".join(abc_patches((corpus / paths[t]).read_text(encoding="utf-8"))) for t in track_ids]


def probe_table(representations: Mapping[str, tuple[list[str], np.ndarray]], tracks: pd.DataFrame,
                split: ClampSplit, labels: Sequence[str] = PROBE_LABELS, seed: int = 0) -> pd.DataFrame:
    """One row per representation and label: the fixed-split probe (train / validation / test tunes)."""
    rows = []
    table = tracks.set_index("track_id")
    for label in labels:
        if label not in table.columns:
            continue
        values = table[label].fillna("").astype(str)
        train_counts = values.reindex(split.train).value_counts()
        kept = set(train_counts[(train_counts >= MIN_CLASS_ITEMS) & (train_counts.index != "")].index)
        if len(kept) < 2:
            continue
        for name, (ids, features) in representations.items():
            position = {track: i for i, track in enumerate(ids)}
            parts = []
            for part in ("train", "validation", "test"):
                members = [t for t in split.part(part) if t in position and values.get(t, "") in kept]
                parts.append(np.asarray([position[t] for t in members], dtype=np.int64))
            if min(len(p) for p in parts) < 2:
                continue
            result = probe_on_split(features, values.reindex(ids).to_numpy(), *parts, seed=seed)
            rows.append({"representation": name, "label": label, **result.__dict__})
    return pd.DataFrame(rows)


def evaluate_clamp(corpus: str | Path, runs: Sequence[str | Path], out: str | Path, part: str = "test",
                   audio: Mapping[str, str | Path] | None = None, audio_space: str | Path | None = None,
                   seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every table above for each run (all on one split), written to OUT as CSV; returns them too. The probes
    need the validation tunes for their own choice, so they run with `part="test"` only. `audio_space`:
    an audio embedding folder each run's scores are also mapped into after training (`mapped_audio`)."""
    corpus, out = Path(corpus), Path(out)
    tracks = corpus_tracks(corpus)
    search_rows, gap_rows, modal_rows = [], [], []
    representations: dict[str, tuple[list[str], np.ndarray]] = {}
    split = None
    for run in runs:
        model, run_split = load_clamp_run(run)
        if split is not None and (set(run_split.test), set(run_split.validation)) != (set(split.test),
                                                                                     set(split.validation)):
            raise ConfigError(f"{run} holds out other tunes than {runs[0]}; compare runs of one split")
        split = run_split
        name = Path(run).name
        bank = score_bank(corpus, model.config)
        search, gaps = semantic_search(model, bank, split, part, seed)
        search_rows.append(search.assign(run=name))
        gap_rows.append(gaps.assign(run=name))
        modal_rows.append(cross_modal(model, bank, split, part, seed).assign(run=name))
        if audio_space:
            modal_rows.append(mapped_audio(model, bank, split, part, audio_space, seed).assign(run=name))
        everything = list(bank.usable(tuple(tracks["track_id"].astype(str))))
        torch.manual_seed(seed)
        random_tower = ClampAlignment(model.config).eval()
        for fmt in model.config.data.formats:
            representations[f"{name} {fmt}"] = (everything, music_vectors(model, bank, everything, fmt))
            representations[f"random-init {fmt}"] = (everything, music_vectors(random_tower, bank, everything, fmt))
    if split is None:
        raise ConfigError("no run to evaluate")
    ids = list(tracks["track_id"].astype(str))
    documents = abc_documents(corpus, ids)
    train_rows = [i for i, t in enumerate(ids) if t in set(split.train)]
    tfidf = CharTfidf().fit([documents[i] for i in train_rows])
    representations["tf-idf abc"] = (ids, tfidf.transform(documents).toarray().astype(np.float32))
    for name, folder in (audio or {}).items():
        from tunespace.data.embeddings import ItemEmbeddings

        embeddings = ItemEmbeddings.load(folder)
        representations[f"audio {name}"] = (list(embeddings.ids), embeddings.vectors)
    tables = {"search": pd.concat(search_rows, ignore_index=True), "language_gap": pd.concat(gap_rows,
                                                                                            ignore_index=True),
              "cross_modal": pd.concat(modal_rows, ignore_index=True),
              # probes fit on training tunes, choose L2 on validation tunes and score test tunes: test only
              "classification": probe_table(representations, tracks, split, seed=seed) if part == "test"
              else pd.DataFrame()}
    out.mkdir(parents=True, exist_ok=True)
    for stem, frame in tables.items():
        write_text(frame.to_csv(index=False), out / f"{stem}.csv")
    write_text(f"part: {part}\nsplit: {split.how}\nruns: {', '.join(str(r) for r in runs)}\n", out / "about.txt")
    return tables
