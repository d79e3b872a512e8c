"""The pair study (`tunespace pretrain-pairs`): its configs, tag matrix and similarity judgements worked out by hand,
fine-tuning's validation choice, and the command end to end on a tiny corpus (tables, plot, report, resume)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import tiny_bert as make_tiny_bert

pytest.importorskip("transformers")

from tunespace.contrastive.htcl import ConfigError, Corpus
from tunespace.contrastive.pair_study import (
    STUDY_SOURCES,
    StudyData,
    label_groups,
    playlist_groups,
    study_config,
    tag_matrix,
)

WORDS = ["a", "tune", "reel", "jig", "fiddle", "piano", "major", "minor"]
TINY_TOWER = ["audio.stem_channels=16", "audio.width=16", "audio.layers=1", "audio.heads=2", "audio.embed_dim=16",
              "audio.dropout=0.0", "text.embed_dim=16", "train.batch_size=8", "train.log_every=1",
              "train.checkpoint_every=2", "stage.crop_seconds=2.0", "holdout_share=0.5"]


def test_every_source_trains_the_same_tower_without_text():
    configs = {source: study_config(source) for source in STUDY_SOURCES}
    for source, config in configs.items():
        assert list(config.stage.preference_sources) == [source]
        assert config.stage.semantic_weight == 0 and config.stage.semantic_sources == {}
        assert config.stage.tune == "all"
    towers = {json.dumps(c.audio.__dict__, sort_keys=True) for c in configs.values()}
    trainings = {json.dumps(c.train.__dict__, sort_keys=True) for c in configs.values()}
    assert len(towers) == 1 and len(trainings) == 1
    assert study_config("album", overrides={"train.steps": 7}).train.steps == 7
    with pytest.raises(ConfigError, match="unknown study source 'session'"):
        study_config("session")


def test_tag_vocabulary_is_chosen_on_training_rows_only():
    tracks = pd.DataFrame({"tags": ["a|b", "a", "b|c", "c", None]})
    tags, truth = tag_matrix(tracks, train=np.array([0, 1, 2]), min_count=2)
    # training rows hold a twice, b twice, c once: c (twice overall) is not a tag of the study
    assert tags == ("a", "b")
    np.testing.assert_array_equal(truth, [[1, 1], [1, 0], [0, 1], [0, 0], [0, 0]])
    with pytest.raises(ConfigError, match="no tag has 3 training tracks"):
        tag_matrix(tracks, train=np.array([0, 1, 2]), min_count=3)


def test_playlists_after_the_cutoff_and_label_groups():
    cutoff = pd.Timestamp("2025-01-01", tz="UTC")
    tracks = pd.DataFrame({"track_id": ["t0", "t1", "t2", "t3"],
                           "dance_type": ["reel", "reel", "jig", ""], "region": ["ie", "ie", "ie", "ie"]})
    playlists = pd.DataFrame({"playlist_id": ["old", "old", "new", "new", "new"],
                              "position": [0, 1, 0, 1, 2], "track_id": ["t0", "t1", "t1", "t2", "unknown"]})
    sessions = pd.DataFrame({"playlist_id": ["old", "new"], "user_id": "u",
                             "timestamp": [cutoff - pd.Timedelta(days=1), cutoff]})
    corpus = Corpus(root=None, tracks=tracks, captions=None, train=pd.DataFrame(), playlists=playlists,
                    playlist_sessions=sessions, cutoff=cutoff)
    np.testing.assert_array_equal(playlist_groups(corpus, after_cutoff=True).toarray(), [[0, 1, 1, 0]])
    np.testing.assert_array_equal(playlist_groups(corpus, after_cutoff=False).toarray(), [[1, 1, 0, 0]])
    groups = label_groups(tracks, ("dance_type", "region")).toarray()
    # (reel, ie) and (jig, ie); t3 has no dance type and belongs to no group
    assert sorted(map(tuple, groups)) == [(0, 0, 1, 0), (1, 1, 0, 0)]


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory):
    from tunespace.corpus.build import CorpusConfig, build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, CorpusConfig(size="small", tracks=24, listeners=60, workers=2, max_seconds=6.0))
    return out


def test_held_out_halves_are_htcls_and_queries_have_a_similar_track(corpus_folder, tmp_path):
    config = study_config("artist", overrides={"holdout_share": 0.5, "text.model": str(
        make_tiny_bert(tmp_path / "bert", WORDS))})
    data = StudyData.load(corpus_folder, config, min_tag_count=1)
    holdout = data.corpus.holdout(config)
    ids = data.corpus.tracks["track_id"].astype(str).to_numpy()
    assert set(ids[data.validation]) == set(holdout.validation) and set(ids[data.test]) == set(holdout.test)
    assert not set(data.train) & (set(data.validation) | set(data.test))
    for judgement in data.groups:
        queries, relevance = data.queries(judgement, "test")
        assert set(queries) <= set(data.test)
        assert (np.diff(relevance.indptr) > 0).all()
        assert not relevance.toarray()[np.arange(len(queries)), queries].any()
    assert len(data.queries("playlist", "test")[0]) > 0


def test_pretrain_pairs_end_to_end_resumes_and_reports(corpus_folder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tunespace.cli.main import app

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    bert = make_tiny_bert(tmp_path / "bert", WORDS)
    out = tmp_path / "study"
    settings = [arg for pair in TINY_TOWER + [f"text.model={bert}"] for arg in ("--set", pair)]
    command = ["pretrain-pairs", "--data", str(corpus_folder), "--out", str(out), "--sources", "artist,playlist-top",
               "--steps", "2", "--finetune-steps", "2", "--finetune-batch", "4", "--evaluate-every", "1",
               "--min-tag-count", "1", *settings]
    runner = CliRunner()
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    tagging = pd.read_csv(out / "tagging.csv")
    rows = set(zip(tagging["method"], tagging["representation"]))
    assert rows == {(m, r) for m in ("probe", "finetune") for r in ("artist", "playlist-top", "random-init")}
    baseline = tagging[tagging["representation"] == "artist"]
    assert baseline["macro_roc_auc_p"].isna().all()  # the baseline is not tested against itself
    assert tagging.loc[tagging["representation"] != "artist", "macro_roc_auc_p_holm"].between(0, 1).all()
    similarity = pd.read_csv(out / "similarity.csv")
    assert set(similarity["representation"]) == {"artist", "playlist-top", "random-init"}
    assert (out / "study.png").stat().st_size > 0 and (out / "study.md").is_file()
    from tunespace.data.embeddings import ItemEmbeddings

    saved = ItemEmbeddings.load(out / "vectors" / "playlist-top.parquet")
    extracted = ItemEmbeddings.load(out / "emb" / "playlist-top")
    order = np.argsort(extracted.ids)
    np.testing.assert_allclose(saved.vectors[np.argsort(saved.ids)], extracted.vectors[order], rtol=0, atol=1e-6)
    assert json.loads((out / "provenance.json").read_text())["settings"]["sources"] == ["artist", "playlist-top"]
    trained = {name: (out / "runs" / name / "last.pt").stat().st_mtime_ns for name in ("artist", "playlist-top")}
    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert trained == {name: (out / "runs" / name / "last.pt").stat().st_mtime_ns for name in trained}
    pd.testing.assert_frame_equal(pd.read_csv(out / "tagging.csv"), tagging)
    other = [("3" if arg == "2" and command[i - 1] == "--finetune-steps" else arg) for i, arg in enumerate(command)]
    refused = runner.invoke(app, other)
    assert refused.exit_code != 0 and "was fine-tuned with" in str(refused.exception)
    page = runner.invoke(app, ["report", "--eval", str(out), "--out", str(tmp_path / "r.html")])
    assert page.exit_code == 0, page.output
    assert "pair study" in (tmp_path / "r.html").read_text()


def test_wrong_sources_and_references_are_one_line_errors(corpus_folder, tmp_path, capsys):
    from tunespace.cli.main import main

    def said() -> str:
        captured = capsys.readouterr()
        text = (captured.out + captured.err).strip()
        assert "\n" not in text and text.startswith("error:"), text
        return text

    base = ["pretrain-pairs", "--data", str(corpus_folder), "--out", str(tmp_path / "s")]
    assert main([*base, "--sources", "album"]) != 0
    assert "must include artist" in said()
    assert main([*base, "--sources", "artist,sessions"]) != 0
    assert "unknown study source 'sessions'" in said()
    assert main([*base, "--reference", f"mfcc={tmp_path / 'absent'}"]) != 0
    assert "no such embedding folder" in said()
