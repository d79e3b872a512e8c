"""CLaMP in tunespace: typed configs, the held-out split, deterministic batches, training through the one loop
(resumed runs equal uninterrupted ones), and the evaluation tables on a tiny corpus of hand-written tunes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

mido = pytest.importorskip("mido")
pytest.importorskip("transformers")

from tunespace.contrastive.clamp import (  # noqa: E402
    CLAMP_CONFIG_DIR,
    ClampBatchMaker,
    ClampConfig,
    ClampDataConfig,
    ClampSplit,
    draw_split,
    load_clamp_config,
    load_clamp_run,
    prepare,
    pretrain_m3,
    train_clamp,
)
from tunespace.contrastive.clamp_evaluate import evaluate_clamp, retrieval_row  # noqa: E402
from tunespace.contrastive.htcl import ConfigError, Holdout  # noqa: E402

KEYS = ("G", "D", "Am", "Em")
METERS = ("6/8", "2/4", "3/4")
GERMAN = {"G": "G-Dur", "D": "D-Dur", "Am": "a-Moll", "Em": "e-Moll"}
CHINESE = {"6/8": "六八拍", "2/4": "二四拍", "3/4": "三四拍"}


def tune_text(number: int) -> tuple[str, str, str]:
    key, meter = KEYS[number % 4], METERS[number % 3]
    notes = "abcdefg"
    bars = "|".join("".join(notes[(number + i * j) % 7] for j in range(4)) for i in range(1, 5))
    abc = f"X:{number}\nT:Secret Title {number}\nR:jig\nO:Nowhere\nM:{meter}\nL:1/8\nK:{key}\n|:{bars}:|\n"
    return abc, key, meter


def write_midi(path, number: int) -> None:
    track = mido.MidiTrack()
    for i in range(6):
        pitch = 60 + (number * 3 + i * (1 + number % 4)) % 24
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=120 + 60 * (number % 3)))
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """24 tunes in two collections, with ABC, MIDI and captions in English, German and Chinese."""
    folder = tmp_path_factory.mktemp("clamp-corpus")
    (folder / "abc").mkdir()
    (folder / "midi").mkdir()
    tracks, captions = [], []
    for number in range(24):
        abc, key, meter = tune_text(number)
        track = f"{('book', 'songs')[number % 2]}/{number}"
        (folder / "abc" / f"{number}.abc").write_text(abc)
        write_midi(folder / "midi" / f"{number}.mid", number)
        mode = "minor" if key.endswith("m") else "major"
        tracks.append({"track_id": track, "collection": ("book", "songs")[number % 2], "abc_path": f"abc/{number}.abc",
                       "midi_path": f"midi/{number}.mid", "mode": mode, "meter": meter, "dance_type": "",
                       "genre": "", "region": ""})
        texts = {"en": [f"A {mode} tune in {key} and {meter} time", f"{meter} in {key}"],
                 "de": [f"Eine Melodie in {GERMAN[key]} im {meter}-Takt"],
                 "zh": [f"{CHINESE[meter]}的曲子"]}
        for language, variants in texts.items():
            captions += [{"track_id": track, "language": language, "variant": v, "text": t}
                         for v, t in enumerate(variants)]
    pd.DataFrame(tracks).to_parquet(folder / "tracks.parquet")
    pd.DataFrame(captions).to_parquet(folder / "captions.parquet")
    return folder


TEXT_TOWER: dict[str, str] = {}  # the module's one extended text tower, once made (extending costs seconds)


@pytest.fixture(scope="module", autouse=True)
def text_tower(corpus, tmp_path_factory):
    from tunespace.encoders.clamp_text import extend_text_model

    folder = tmp_path_factory.mktemp("text")
    captions = pd.read_parquet(corpus / "captions.parquet")["text"].tolist()
    extend_text_model("minilm", captions, folder)
    TEXT_TOWER["path"] = str(folder)
    yield folder
    TEXT_TOWER.clear()


def tiny_overrides(**train) -> dict[str, object]:
    return {"model.max_patches": 32, "model.embed_dim": 32, "data.holdout_share": 0.34, "train.batch_size": 6,
            "train.steps": 4, "train.warmup_steps": 1, "train.checkpoint_every": 2, "train.log_every": 1,
            "model.text_model": TEXT_TOWER["path"], "model.extend_vocabulary": False,
            **{f"train.{k}": v for k, v in train.items()}}


def tiny_config(**train) -> ClampConfig:
    return load_clamp_config("tiny", tiny_overrides(**train))


def test_shipped_configs_load_typed_and_unknown_keys_fail():
    names = sorted(path.stem for path in CLAMP_CONFIG_DIR.glob("*.yaml"))
    assert names == ["small", "tiny"]
    for name in names:
        config = load_clamp_config(name)
        assert isinstance(config, ClampConfig) and config.data.formats == ("abc", "midi")
    with pytest.raises(ConfigError, match="unknown key"):
        load_clamp_config("tiny", {"model.widht": 3})
    with pytest.raises(ConfigError, match="held_collection"):
        load_clamp_config("tiny", {"data.split": "collection"})


def test_tune_split_is_htcls_holdout_and_collection_split_holds_out_a_songbook(corpus):
    tracks = pd.read_parquet(corpus / "tracks.parquet")
    split = draw_split(tracks, ClampDataConfig(holdout_share=0.25, holdout_seed=3))
    holdout = Holdout.draw(tracks["track_id"], 0.25, 3)
    assert (split.validation, split.test) == (holdout.validation, holdout.test)
    assert not set(split.train) & set(holdout.tracks) and len(split.train) + len(holdout.tracks) == 24
    by_book = draw_split(tracks, ClampDataConfig(split="collection", held_collection="songs"))
    held = set(by_book.validation) | set(by_book.test)
    assert held == {t for t in tracks["track_id"] if t.startswith("songs/")}
    assert all(t.startswith("book/") for t in by_book.train) and not set(by_book.validation) & set(by_book.test)
    with pytest.raises(ConfigError, match="not a collection"):
        draw_split(tracks, ClampDataConfig(split="collection", held_collection="nope"))


def test_batches_are_deterministic_and_only_from_training_tunes(corpus):
    config = tiny_config()
    prepared = prepare(corpus, config)
    train_ids = prepared.bank.usable(prepared.split.train)
    maker = ClampBatchMaker(prepared.bank, train_ids, config)
    first, again = maker(5), maker(5)
    assert first.texts == again.texts and torch.equal(first.ids, again.ids)
    assert first.ids.shape[0] == len(first.texts) == 6 and first.mask.shape == first.ids.shape[:2]
    held = set(prepared.split.test) | set(prepared.split.validation)
    for step in range(20):
        batch = maker(step)
        assert not set(batch.tracks) & held and len(set(batch.tracks)) == len(batch.tracks)
        for track, text in zip(batch.tracks, batch.texts):  # each caption is one of its own tune's
            assert any(text in by_track[track] for by_track in prepared.bank.captions.values())


def test_training_resumes_to_the_same_weights_and_evaluation_writes_every_table(corpus, tmp_path):
    # a run extends its text tower from its own training captions (OUT/text) and records that folder
    whole = tmp_path / "whole"
    extending = load_clamp_config("tiny", {**tiny_overrides(steps=1), "model.text_model": "minilm",
                                           "model.extend_vocabulary": True})
    report = train_clamp(corpus, extending, whole, device="cpu")
    assert report.steps_run == 1 and (whole / "text" / "config.json").exists()
    assert load_clamp_config(whole / "config.yaml").model.text_model == str((whole / "text").resolve())
    assert all(np.isfinite(entry["loss"]) for entry in report.history)
    # both runs read the module's text tower (tokenizers' WordPiece trainer may learn one piece more or less
    # from run to run), so any difference left is the loop's
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    train_clamp(corpus, tiny_config(), uninterrupted, device="cpu")
    train_clamp(corpus, tiny_config(), killed, stop_after=2, device="cpu")
    with pytest.raises(ConfigError, match="--resume"):
        train_clamp(corpus, tiny_config(), killed, device="cpu")
    train_clamp(corpus, tiny_config(), killed, resume=True, device="cpu")  # the run's own config.yaml wins
    a, _ = load_clamp_run(uninterrupted)
    b, split = load_clamp_run(killed)
    for (name, left), (_, right) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(left, right, atol=1e-6), name
    assert split.test == ClampSplit.load(whole).test == ClampSplit.load(uninterrupted).test

    tables = evaluate_clamp(corpus, [uninterrupted], tmp_path / "eval", part="test")
    search = tables["search"]
    assert set(search["task"]) == {"text->abc", "text->midi"} and set(search["language"]) == {"en", "de", "zh"}
    assert ((search["MRR_low"] <= search["MRR"]) & (search["MRR"] <= search["MRR_high"])).all()
    assert set(tables["language_gap"]["language"]) == {"de", "zh"}
    assert {"abc->midi", "midi->abc"} <= set(tables["cross_modal"]["task"])
    probes = tables["classification"]
    assert {"uninterrupted abc", "random-init abc", "tf-idf abc"} <= set(probes["representation"])
    assert set(probes["label"]) <= {"mode", "meter"}
    for stem in ("search", "language_gap", "cross_modal", "classification"):
        assert (tmp_path / "eval" / f"{stem}.csv").is_file()


def test_m3_pretraining_runs_through_the_loop_and_initialises_alignment(corpus, tmp_path):
    report = pretrain_m3(corpus, tiny_config(), tmp_path / "m3", device="cpu")
    assert report.steps_run == 4 and "char_accuracy" in report.history[-1]
    config = tiny_config(steps=1)
    config.init = str(tmp_path / "m3" / "last.pt")
    train_clamp(corpus, config, tmp_path / "aligned", device="cpu")
    from tunespace.encoders.clamp_pretrain import load_m3

    pretrained = load_m3(tmp_path / "m3" / "last.pt").encoder.state_dict()
    aligned, _ = load_clamp_run(tmp_path / "aligned")
    moved = [k for k, v in aligned.clamp.music_model.state_dict().items() if not torch.allclose(v, pretrained[k])]
    assert len(moved) < len(pretrained)  # one step from the pretrained weights, not from a random start
    assert aligned.clamp.music_model.patch_embedding.weight.shape == pretrained["patch_embedding.weight"].shape


def test_retrieval_row_ranks_ties_against_the_query():
    targets = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # query 0 ties targets 0 and 2: its own target 0 ranks 2nd; query 1 is 1st; query 2 (target 2) scores 0.6 for
    # targets 0 and 2 and 0.8 for target 1: rank 3 once the tie goes against it
    row, per_query = retrieval_row(queries, targets, np.array([0, 1, 2]), ks=(1, 2))
    assert list(per_query["rank"]) == [2, 1, 3]
    assert row["MRR"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    assert row["hit@1"] == pytest.approx(1 / 3) and row["hit@2"] == pytest.approx(2 / 3)
    assert 0.0 <= row["MRR_low"] <= row["MRR"] <= row["MRR_high"] <= 1.0


def test_audio_alignment_joint_and_mapped(corpus, tmp_path):
    from tunespace.data.embeddings import ItemEmbeddings

    tracks = pd.read_parquet(corpus / "tracks.parquet")["track_id"]
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio.parquet"
    ItemEmbeddings(ids=tracks.to_numpy(), vectors=rng.normal(size=(len(tracks), 8))).save(folder)
    config = tiny_config(steps=2)
    config.audio.embeddings = str(folder)
    report = train_clamp(corpus, config, tmp_path / "joint", device="cpu")
    assert "audio_loss" in report.history[-1] and report.history[-1]["loss"] > report.history[-1]["text_loss"]
    model, _ = load_clamp_run(tmp_path / "joint")
    assert model.audio_proj is not None and model.audio_proj.out_features == 8
    tables = evaluate_clamp(corpus, [tmp_path / "joint"], tmp_path / "eval", audio_space=folder)
    modal = tables["cross_modal"]
    for method in ("joint (audio_proj)", "ridge map"):
        chosen = modal[modal["method"].str.startswith(method)]
        assert {"audio->abc", "abc->audio", "audio->midi", "midi->audio"} == set(chosen["task"])


def test_score_embeddings_index_and_multilingual_text_search(corpus, tmp_path):
    from tunespace.cli.main import main
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.index import EmbeddingIndex
    from tunespace.index.queries import QueryError, check_text_space, run_languages, text_query_vector

    run = tmp_path / "run"
    train_clamp(corpus, tiny_config(steps=1), run, device="cpu")
    assert main(["embed", "--backend", "clamp-abc", "--option", f"run={run}", "--data", str(corpus), "--out",
                 str(tmp_path / "emb")]) == 0
    embeddings = ItemEmbeddings.load(tmp_path / "emb")
    assert len(embeddings.ids) == 24 and np.allclose(np.linalg.norm(embeddings.vectors, axis=1), 1, atol=1e-5)
    model, _ = load_clamp_run(run)
    assert run_languages(run) == ("en", "de", "zh")
    query = text_query_vector(run, "六八拍的曲子", language="zh")
    assert np.allclose(query, model.clamp.encode_text(["六八拍的曲子"])[0].numpy(), atol=1e-5)
    index = EmbeddingIndex.from_folder(tmp_path / "emb")
    check_text_space(index, run)  # the run's own score space: accepted
    other = tmp_path / "other"
    train_clamp(corpus, tiny_config(steps=1), other, device="cpu")
    with pytest.raises(QueryError, match="another space"):
        check_text_space(index, other)
    assert main(["embed", "--backend", "clamp-abc", "--data", str(corpus), "--out", str(tmp_path / "e2")]) != 0


def test_a_folder_that_is_no_corpus_is_a_one_line_error(tmp_path, capsys):
    from tunespace.cli.main import main

    for command in (["clamp", "train", "--data", str(tmp_path), "--out", str(tmp_path / "run")],
                    ["clamp", "pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "m3")]):
        assert main(command) == 1
        said = capsys.readouterr().out.strip()
        assert "Traceback" not in said and said.endswith("no tracks.parquet; is it a tunespace corpus folder "
                                                         "(tunespace corpus build)?"), said
