"""`relisten_corpus`: a built corpus's listening log remade under other listener parameters, on the same catalogue.

One tiny corpus (6 tunes of 4 seconds, 10 listeners) is built once per module; each relisten only simulates.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tunespace.corpus.build import CorpusConfig, CorpusError, build_corpus, relisten_corpus
from tunespace.data.dataset import Dataset

pytest.importorskip("tinysoundfont")

LOG_TABLES = ("interactions", "playlists", "users", "playlist_sessions")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("source")
    build_corpus(out, CorpusConfig(size="small", tracks=6, listeners=10, max_seconds=4.0, workers=1,
                                   listener={"temperature": 2.0}))
    (out / "emb" / "mfcc").mkdir(parents=True)  # an embedding folder, as `tunespace embed --out DATA/emb/...` makes
    return out


def tables(folder) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in LOG_TABLES}


def test_unchanged_parameters_remake_the_source_log(source, tmp_path):
    report = relisten_corpus(source, tmp_path / "again")
    for name, frame in tables(source).items():
        pd.testing.assert_frame_equal(frame, tables(tmp_path / "again")[name], obj=name)
    built = json.loads((source / "build.json").read_text())
    assert report["listener_config"] == built["listener_config"]  # temperature 2.0 kept from the source
    assert report["interactions"] == built["interactions"] and report["config"] == built["config"]


def test_latent_weight_zero_changes_only_the_log(source, tmp_path):
    out = tmp_path / "latent0"
    report = relisten_corpus(source, out, {"latent_weight": 0})
    assert not tables(out)["interactions"].equals(tables(source)["interactions"])
    for name in ("tracks.parquet", "captions.parquet", "skipped.parquet"):
        assert (out / name).read_bytes() == (source / name).read_bytes(), name
    for name in ("audio", "abc", "midi", "emb"):
        assert (out / name).is_symlink() and (out / name).resolve() == (source / name).resolve(), name
    dataset = Dataset.load(out)  # the new log refers only to the source's tracks
    for column in ("audio_path", "midi_path", "abc_path"):
        assert all((out / path).is_file() for path in dataset.tracks[column])

    saved = json.loads((out / "build.json").read_text())
    assert saved == json.loads(json.dumps(report))
    built = json.loads((source / "build.json").read_text())
    assert saved["listener_config"] == {**built["listener_config"], "latent_weight": 0.0}
    assert saved["config"]["listener"] == {"temperature": 2.0, "latent_weight": 0.0}
    assert saved["relistened_from"] == {"path": str(source.resolve()), "listener_config": built["listener_config"]}
    assert set(built) <= set(saved) and saved["users"] == 10 and saved["rendered_now"] == 0
    assert saved["interactions"] == len(dataset.interactions)


def test_another_seed_draws_another_log_of_the_same_users(source, tmp_path):
    report = relisten_corpus(source, tmp_path / "seed1", seed=1)
    assert report["listener_config"]["seed"] == 1 and report["config"]["seed"] == 0  # tunes stay seed 0's
    assert not tables(tmp_path / "seed1")["interactions"].equals(tables(source)["interactions"])
    assert report["users"] == 10


def test_relisten_of_a_relistened_corpus_keeps_its_changes(source, tmp_path):
    relisten_corpus(source, tmp_path / "one", {"latent_weight": 0})
    report = relisten_corpus(tmp_path / "one", tmp_path / "two", {"zipf_exponent": 1.2})
    assert report["listener_config"]["latent_weight"] == 0.0 and report["listener_config"]["zipf_exponent"] == 1.2
    assert (tmp_path / "two" / "audio").resolve() == (source / "audio").resolve()
    origin = report["relistened_from"]
    assert origin["path"] == str((tmp_path / "one").resolve()) and origin["listener_config"]["latent_weight"] == 0.0
    assert origin["relistened_from"]["path"] == str(source.resolve())


def test_refusals_name_the_file_and_leave_nothing(source, tmp_path):
    with pytest.raises(CorpusError, match="build.json: not found"):
        relisten_corpus(tmp_path, tmp_path / "out")
    (tmp_path / "build.json").write_text(json.dumps({"listener_config": {}}))
    with pytest.raises(CorpusError, match="tracks.parquet: not found"):
        relisten_corpus(tmp_path, tmp_path / "out")
    with pytest.raises(CorpusError, match="is the source corpus itself"):
        relisten_corpus(source, source / ".")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not an empty folder"):
        relisten_corpus(source, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    with pytest.raises(CorpusError, match="set by the corpus"):
        relisten_corpus(source, tmp_path / "out", {"users": 5})
    with pytest.raises(CorpusError, match="unknown listener parameter"):
        relisten_corpus(source, tmp_path / "out", {"nonsense": 1})
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.json", "occupied"]  # no staging folder left


def test_an_empty_out_folder_is_filled(source, tmp_path):
    (tmp_path / "empty").mkdir()
    relisten_corpus(source, tmp_path / "empty")
    assert (tmp_path / "empty" / "build.json").is_file()


def test_a_source_with_parameters_this_version_does_not_know_is_refused(source, tmp_path):
    copy = tmp_path / "old"
    copy.mkdir()
    (copy / "tracks.parquet").write_bytes((source / "tracks.parquet").read_bytes())
    built = json.loads((source / "build.json").read_text())
    built["listener_config"]["gone"] = 1
    (copy / "build.json").write_text(json.dumps(built))
    with pytest.raises(CorpusError, match="does not know: gone"):
        relisten_corpus(copy, tmp_path / "out")
    del built["listener_config"]
    (copy / "build.json").write_text(json.dumps(built))
    with pytest.raises(CorpusError, match="no listener_config"):
        relisten_corpus(copy, tmp_path / "out")


def test_a_source_parameter_can_be_set_back_to_its_default(source, tmp_path):
    report = relisten_corpus(source, tmp_path / "out", {"temperature": 1.0})
    built = json.loads((source / "build.json").read_text())
    assert report["listener_config"] == {**built["listener_config"], "temperature": 1.0}
