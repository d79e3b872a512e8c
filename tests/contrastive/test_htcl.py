"""HTCL: typed configs, the audio encoder's shapes and padding, the text tower, and both stages end to end on a
tiny corpus with a tiny random text model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")

from tunespace.contrastive.evaluate import semantic_evaluation, tag_prompt, track_embeddings  # noqa: E402
from tunespace.contrastive.htcl import CONFIG_DIR, ConfigError, Corpus, HTCLConfig, load_config, make_stage, save_config  # noqa: E402
from tunespace.contrastive.train import DistributedContext, train_loop  # noqa: E402
from tunespace.encoders.audio_encoder import AudioEncoder, AudioEncoderConfig  # noqa: E402
from tunespace.encoders.base import BackendUnavailableError  # noqa: E402
from tunespace.encoders.text import TextEncoder, TextEncoderConfig  # noqa: E402

WORDS = ["a", "tune", "fast", "slow", "reel", "jig", "played", "on", "the", "fiddle", "piano", "in", "major",
         "minor", "time", "ein", "lied", "from", "ireland", "organ", "instruments", "key"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer random BERT with its own small vocabulary: the multilingual-BERT code path, no download."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    return folder


def test_shipped_configs_load_typed():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert names == ["base", "small", "tiny"]
    for name in names:
        config = load_config(name)
        assert isinstance(config, HTCLConfig) and isinstance(config.audio.stem_kernels, tuple)
    base = load_config("base").audio
    assert (base.stem_channels, base.stem_kernels, base.stem_stride) == (512, (5, 3, 3), 2)
    assert (base.layers, base.heads, base.width, base.n_mels) == (12, 12, 768, 128)


def test_bad_config_keys_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("audio:\n  widht: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.audio: unknown key\(s\) widht"):
        load_config(path)
    assert load_config("tiny", {"train.steps": 7, "stage.semantic_weight": 0.25}).train.steps == 7


def test_saved_config_round_trips(tmp_path):
    config = load_config("small", {"stage.anchor_weight": 0.3})
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_audio_encoder_is_padding_invariant_and_counts_tokens():
    config = AudioEncoderConfig(stem_channels=16, width=16, layers=1, heads=2, dropout=0.0, embed_dim=8)
    model = AudioEncoder(config).eval()
    waveforms = torch.randn(2, 32000) * 0.1
    lengths = torch.tensor([32000, 20000])
    waveforms[1, 20000:] = 0
    with torch.no_grad():
        together = model(waveforms, lengths)
        alone = model(waveforms[1:, :20000], lengths[1:])
        tokens, valid = model.forward_tokens(waveforms, lengths)
    torch.testing.assert_close(together[1], alone[0], rtol=1e-4, atol=1e-5)
    assert valid.sum(1).tolist() == model.token_lengths(lengths).tolist() == [26, 16]


def test_text_tower_frozen_caches_and_tuned_learns(tiny_bert):
    frozen = TextEncoder(TextEncoderConfig(model=str(tiny_bert), embed_dim=8))
    first = frozen(["a fast reel", "ein lied"])
    assert first.shape == (2, 8) and len(frozen._cache) == 2
    tokenizer, backbone = frozen._frozen_parts
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.training
    assert not any(name.startswith("backbone") for name, _ in frozen.named_parameters())  # nothing to save
    cached_only = TextEncoder(TextEncoderConfig(model=str(tiny_bert), embed_dim=8))
    cached_only.load_state_dict(frozen.state_dict())
    cached_only._cache.update(frozen._cache)
    torch.testing.assert_close(cached_only(["a fast reel"]), first[:1])
    assert cached_only._frozen_parts is None  # every text was cached: the transformer was never loaded
    tuned = TextEncoder(TextEncoderConfig(model=str(tiny_bert), embed_dim=8, frozen=False))
    tuned(["a slow air"]).sum().backward()
    assert any(p.grad is not None for p in tuned.backbone.parameters())
    with pytest.raises(BackendUnavailableError, match="no config.json"):
        TextEncoder(TextEncoderConfig(model=str(tiny_bert / "nothing")))


def test_tag_prompts_read_as_words():
    assert tag_prompt("family:winds") == "a tune played on winds instruments"
    assert tag_prompt("dance:slip_jig") == "a slip jig"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tunespace.corpus.build import CorpusConfig, build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, CorpusConfig(size="small", tracks=24, listeners=60, workers=2, max_seconds=6.0))
    return out


def tiny_config(tiny_bert, **stage) -> HTCLConfig:
    overrides = {"audio.stem_channels": 16, "audio.width": 16, "audio.layers": 1, "audio.heads": 2,
                 "audio.embed_dim": 16, "audio.dropout": 0.0, "text.model": str(tiny_bert), "text.embed_dim": 16,
                 "train.steps": 3, "train.batch_size": 8, "train.log_every": 1, "train.checkpoint_every": 3,
                 "stage.crop_seconds": 2.0, "holdout_share": 0.25}
    overrides.update({f"stage.{k}": v for k, v in stage.items()})
    return load_config("tiny", overrides)


def test_both_stages_train_and_evaluate(corpus, tiny_bert, tmp_path):
    context = DistributedContext()
    config = tiny_config(tiny_bert)
    data = Corpus.load(corpus, config.cutoff)
    model, batches = make_stage(data, config, context, cache=tmp_path / "cache")
    batch = batches(0)
    assert len(batch.semantic_texts) == len(batch.semantic_audio[0]) > 0 and batch.preference_audio is None
    report = train_loop(model, batches, config.train, tmp_path / "s1")
    assert report.steps_run == 3 and "semantic_loss" in report.history[-1]

    sources = {"session": {"weight": 1.0}, "playlist": {"weight": 0.5}}
    second = tiny_config(tiny_bert, preference_sources=sources, semantic_weight=0.5, anchor_weight=0.5)
    model2, batches2 = make_stage(data, second, context, cache=tmp_path / "cache", init_from=tmp_path / "s1/last.pt")
    start = {k: v.clone() for k, v in model2.audio.state_dict().items()}
    for name, value in model2.reference.state_dict().items():
        torch.testing.assert_close(value, start[name])  # the anchor starts at the stage-1 encoder
    report = train_loop(model2, batches2, second.train, tmp_path / "s2")
    terms = report.history[-1]
    assert {"preference_loss", "semantic_loss", "anchor_loss"} <= set(terms)
    assert terms["loss"] == pytest.approx(terms["preference_loss"] + 0.5 * terms["semantic_loss"]
                                          + 0.5 * terms["anchor_loss"], rel=1e-4)
    assert any(not torch.equal(v, start[k]) for k, v in model2.audio.state_dict().items())

    vectors = track_embeddings(model2, batches2.bank)
    assert vectors.vectors.shape == (24, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors.vectors, axis=1), 1.0, rtol=1e-5)
    semantic = semantic_evaluation(model2, batches2.bank, data, vectors.vectors, min_tag_positives=1)
    assert semantic.held_out_tracks == 6
    assert 0 <= semantic.text_to_audio["R@10"] <= 1 and semantic.chance_text_to_audio["R@1"] == pytest.approx(1 / 6)


def test_stage_two_without_preservation_drops_the_text_loss(corpus, tiny_bert, tmp_path):
    config = tiny_config(tiny_bert, preference_sources={"session": {}}, semantic_weight=0.0)
    model, batches = make_stage(Corpus.load(corpus, config.cutoff), config, DistributedContext(),
                                cache=tmp_path / "cache")
    batch = batches(1)
    assert batch.semantic_audio is None and batch.preference_audio is not None
    assert "semantic_loss" not in model(batch)


def test_history_profiles_are_the_mean_of_their_clips(corpus, tiny_bert, tmp_path):
    config = tiny_config(tiny_bert, preference_sources={"history": {"profile_size": 3}}, semantic_weight=0.0)
    model, batches = make_stage(Corpus.load(corpus, config.cutoff), config, DistributedContext(),
                                cache=tmp_path / "cache")
    batch = batches(0)
    rows = len(batch.preference_weights)
    assert batch.profile_size == 3 and len(batch.preference_audio[0]) == rows * 4 and rows > 1
    terms = model(batch)
    waveforms, lengths = batch.preference_audio
    with torch.no_grad():
        embedded = model.audio(waveforms, lengths)
    profiles = torch.nn.functional.normalize(embedded[: rows * 3], dim=-1).view(rows, 3, -1).mean(1)
    expected = model.preference_loss(profiles, embedded[rows * 3:], batch.preference_weights)
    torch.testing.assert_close(terms["preference_loss"].detach(), expected["loss"], rtol=1e-5, atol=1e-6)
    report = train_loop(model, batches, config.train, tmp_path / "history")
    assert report.steps_run == 3 and np.isfinite(report.history[-1]["preference_loss"])


def test_a_run_is_an_extraction_backend(corpus, tiny_bert, tmp_path):
    from tunespace.data.dataset import Dataset
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.encoders.base import get_backend
    from tunespace.encoders.extract import ExtractionConfig, Extractor

    config = tiny_config(tiny_bert)
    model, batches = make_stage(Corpus.load(corpus, config.cutoff), config, DistributedContext(),
                                cache=tmp_path / "cache")
    train_loop(model, batches, config.train, tmp_path / "run")
    save_config(config, tmp_path / "run" / "config.yaml")
    backend = get_backend("htcl", run=tmp_path / "run")
    assert (backend.sample_rate, backend.dim, backend.segment_seconds) == (16000, 16, 2.0)
    Extractor(ExtractionConfig("htcl", options={"run": str(tmp_path / "run")})).run(
        Dataset.load_tracks(corpus), corpus, tmp_path / "emb")
    extracted = ItemEmbeddings.load(tmp_path / "emb")
    direct = track_embeddings(model, batches.bank)
    cosine = (extracted.vectors / np.linalg.norm(extracted.vectors, axis=1, keepdims=True) * direct.vectors).sum(1)
    assert cosine.min() > 0.999  # same windows, same encoder: the pipeline reproduces `htcl evaluate`'s vectors


def test_cli_pretrain_finetune_evaluate_report(corpus, tiny_bert, tmp_path):
    from html.parser import HTMLParser

    import pandas as pd

    from tunespace.cli.main import main

    tiny = ["--set", f"text.model={tiny_bert}", "--set", "audio.width=16", "--set", "audio.stem_channels=16",
            "--set", "audio.layers=1", "--set", "audio.heads=2", "--set", "train.batch_size=8",
            "--set", "stage.crop_seconds=2.0", "--set", "holdout_share=0.25"]
    assert main(["htcl", "pretrain", "--data", str(corpus), "--out", str(tmp_path / "s1"), "--steps", "2",
                 "--device", "cpu", *tiny]) == 0
    for weight in ("0", "1"):
        assert main(["htcl", "finetune", "--data", str(corpus), "--init", str(tmp_path / "s1"), "--out",
                     str(tmp_path / f"s2-{weight}"), "--lambda", weight, "--steps", "2", "--device", "cpu"]) == 0
    assert main(["htcl", "finetune", "--data", str(corpus), "--init", str(tmp_path / "s1"), "--out",
                 str(tmp_path / "s2-1"), "--steps", "3", "--resume", "--device", "cpu"]) == 1  # lambda differs
    assert main(["htcl", "finetune", "--data", str(corpus), "--init", str(tmp_path / "s1"), "--out",
                 str(tmp_path / "s2-1"), "--lambda", "1", "--steps", "3", "--resume", "--device", "cpu"]) == 0
    report = __import__("json").loads((tmp_path / "s2-1" / "train_report.json").read_text())
    assert report["resumed_from"] == 2 and report["steps_run"] == 1
    assert main(["htcl", "finetune", "--data", str(corpus), "--init", str(tmp_path / "s1"), "--out",
                 str(tmp_path / "s2-head"), "--pairs", "history", "--tune", "head", "--catalogue-negatives", "4",
                 "--set", "audio.adapter_hidden=8", "--steps", "2", "--device", "cpu"]) == 0
    report = __import__("json").loads((tmp_path / "s2-head" / "train_report.json").read_text())
    assert report["inputs"] == "cached trunk features" and "preference_loss" in report["last"]
    names = ("s1", "s2-0", "s2-1", "s2-head")
    runs = [arg for name in names for arg in ("--run", str(tmp_path / name))]
    assert main(["htcl", "evaluate", "--data", str(corpus), *runs, "--out", str(tmp_path / "eval"),
                 "--device", "cpu"]) == 0
    semantic = pd.read_csv(tmp_path / "eval" / "semantic.csv")
    assert list(semantic["run"]) == list(names) and semantic["lambda"].tolist()[1:] == [0.0, 1.0, 0.5]
    assert set(pd.read_csv(tmp_path / "eval" / "preference.csv")["model"]) == {f"knn[{n}]" for n in names}
    tests = pd.read_csv(tmp_path / "eval" / "significance.csv")  # every run against the first, paired over users
    assert set(tests["model"]) == {"knn[s2-0]", "knn[s2-1]", "knn[s2-head]"} and set(tests["baseline"]) == {"knn[s1]"}
    assert set(tests["part"]) == {"test", "cold_test"} and len(tests) == 6
    assert set(pd.read_csv(tmp_path / "eval" / "cold.csv")["model"]) == {f"knn[{n}]" for n in names}
    assert main(["report", "--eval", str(tmp_path / "eval"), "--out", str(tmp_path / "report.html")]) == 0

    class Count(HTMLParser):
        tags: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)

    parser = Count()
    parser.feed((tmp_path / "report.html").read_text())
    assert parser.tags.count("table") == 4 and parser.tags.count("img") == 1  # semantic, warm, cold, paired tests


def test_audio_bank_cache_is_never_reused_for_changed_audio(tmp_path):
    import os

    import soundfile

    from tunespace.contrastive.htcl import AudioBank

    tracks = pd.DataFrame({"track_id": ["a", "b"], "audio_path": ["a.wav", "b.wav"]})
    soundfile.write(tmp_path / "a.wav", np.full(800, 0.25, dtype=np.float32), 8000)
    first = AudioBank(tracks, tmp_path, 8000, cache=tmp_path / "cache")  # b.wav is missing: silent
    assert first.lengths.tolist() == [800, 0]
    again = AudioBank(tracks, tmp_path, 8000, cache=tmp_path / "cache")
    assert isinstance(again.audio, np.memmap)  # unchanged files: the cache is reused
    soundfile.write(tmp_path / "b.wav", np.full(400, -0.5, dtype=np.float32), 8000)
    soundfile.write(tmp_path / "a.wav", np.full(800, 0.5, dtype=np.float32), 8000)
    os.utime(tmp_path / "a.wav", ns=(1, 1))
    fresh = AudioBank(tracks, tmp_path, 8000, cache=tmp_path / "cache")
    assert fresh.lengths.tolist() == [800, 400]
    assert fresh.audio[0, 0] == round(0.5 * 32767) and fresh.audio[1, 0] == round(-0.5 * 32767)


def test_history_batches_split_across_ranks_as_one_process_sees_them(corpus, tiny_bert, tmp_path):
    from tunespace.contrastive.htcl import BatchMaker

    config = tiny_config(tiny_bert, preference_sources={"history": {"profile_size": 2}}, semantic_weight=0.0)
    _, whole = make_stage(Corpus.load(corpus, config.cutoff), config, DistributedContext(), cache=tmp_path / "cache")
    one = whole(5)
    rows = len(one.preference_weights)
    audio, lengths = one.preference_audio
    profiles, positives = audio[: rows * 2].view(rows, 2, -1), audio[rows * 2:]
    half = rows // 2
    for rank in range(2):
        maker = BatchMaker(whole.bank, config, whole.semantic, whole.preference,
                           DistributedContext(rank=rank, world_size=2))
        mine = maker(5)
        assert mine.profile_size == 2 and len(mine.preference_weights) == half
        got = mine.preference_audio[0]
        mine_rows = slice(rank * half, (rank + 1) * half)
        torch.testing.assert_close(got[: half * 2].view(half, 2, -1), profiles[mine_rows])
        torch.testing.assert_close(got[half * 2:], positives[mine_rows])


def test_head_tuning_trains_only_the_head_on_frozen_trunk_features_with_catalogue_draws(corpus, tiny_bert, tmp_path):
    from tunespace.contrastive.htcl import BatchMaker, TrunkFeatures, embed_tracks

    data = Corpus.load(corpus, "2025-01-01")
    first = tiny_config(tiny_bert)
    model1, batches1 = make_stage(data, first, DistributedContext(), cache=tmp_path / "cache")
    train_loop(model1, batches1, first.train, tmp_path / "s1")
    with pytest.raises(ConfigError, match="needs a run to start from"):
        make_stage(data, tiny_config(tiny_bert, tune="head"), DistributedContext(), cache=tmp_path / "cache")
    with pytest.raises(ConfigError, match="tune must be one of all, head"):
        tiny_config(tiny_bert, tune="top")

    config = tiny_config(tiny_bert, tune="head", preference_sources={"history": {"profile_size": 2}},
                         semantic_weight=0.5, anchor_weight=0.5, catalogue_negatives=6, popularity_correction=0.5)
    config.audio.adapter_hidden = 8
    model, batches = make_stage(data, config, DistributedContext(), cache=tmp_path / "cache",
                                init_from=tmp_path / "s1/last.pt")
    bank = batches.bank
    # the zero-initialised adapter leaves the stage-1 space untouched at the start
    np.testing.assert_allclose(embed_tracks(model, bank, 2.0), embed_tracks(model1, bank, 2.0), atol=1e-6)
    # a cached feature is the trunk's pooled output for that window of the track, computed alone
    features = batches.features
    track = 5
    windows = bank.segments(track, 2.0)
    with torch.no_grad():
        alone = model.audio.pool(torch.from_numpy(windows[1])[None], torch.tensor([len(windows[1])]))
    torch.testing.assert_close(features.features[features.starts[track] + 1], alone[0], rtol=1e-4, atol=1e-5)
    assert int(features.counts[track]) == len(windows) - (len(windows[-1]) < bank.sample_rate // 2)
    batch = batches(0)
    assert batch.semantic_audio.ndim == 2 and batch.semantic_audio.shape[1] == 16
    rows = len(batch.preference_weights)
    assert batch.preference_audio.shape[0] == 3 * rows and batch.negative_audio.shape == (6, 16)
    # the preference term ranks each profile against the batch's positives and the catalogue draws
    with torch.no_grad():
        embedded = model.audio.head(batch.preference_audio)
        profiles = torch.nn.functional.normalize(embedded[: 2 * rows], dim=-1).view(rows, 2, -1).mean(1)
        expected = model.preference_loss(profiles, embedded[2 * rows:], model.audio.head(batch.negative_audio),
                                         batch.positive_tracks, batch.negative_tracks, batch.preference_weights,
                                         batch.positive_bias, batch.negative_bias)
        torch.testing.assert_close(model(batch)["preference_loss"], expected["loss"])
    # draws come only from tracks played before the cutoff, and carry 0.5 * log(1 + their train plays)
    plays = data.train_plays()
    assert (plays[batch.negative_tracks.numpy()] > 0).all() and (plays == 0).any()
    torch.testing.assert_close(batch.negative_bias, torch.from_numpy(0.5 * np.log1p(plays[batch.negative_tracks]))
                               .float())
    halves = [BatchMaker(bank, config, batches.semantic, batches.preference, DistributedContext(rank=r, world_size=2),
                         features, plays)(0) for r in range(2)]
    torch.testing.assert_close(torch.cat([h.negative_audio for h in halves]), batch.negative_audio)
    assert torch.equal(torch.cat([h.negative_tracks for h in halves]), batch.negative_tracks)

    trunk = {k: v.clone() for k, v in model.audio.state_dict().items()
             if not k.startswith(("projection.", "adapter."))}
    head = {k: v.clone() for k, v in model.audio.state_dict().items() if k.startswith(("projection.", "adapter."))}
    report = train_loop(model, batches, config.train, tmp_path / "s2")
    assert {"preference_loss", "semantic_loss", "anchor_loss"} <= set(report.history[-1])
    state = model.audio.state_dict()
    assert all(torch.equal(state[k], v) for k, v in trunk.items())
    assert all(not torch.equal(state[k], v) for k, v in head.items())  # projection and both adapter layers learn

    # what training saw is what evaluation embeds: the head on a window's features = the tower on its audio
    with torch.no_grad():
        direct = torch.nn.functional.normalize(model.audio(torch.from_numpy(windows[1])[None],
                                                           torch.tensor([len(windows[1])])), dim=-1)
        cached = torch.nn.functional.normalize(model.audio.head(features.features[features.starts[track] + 1]), dim=-1)
    torch.testing.assert_close(direct[0], cached, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(track_embeddings(model, bank, tmp_path / "cache").vectors,  # evaluation's shortcut
                               embed_tracks(model, bank, 2.0), atol=1e-5)
    # a second stage on the same trunk reads the features from the cache file instead of recomputing them
    assert len(list((tmp_path / "cache").glob("trunk-*.pt"))) == 1
    again = TrunkFeatures.compute(model.audio, bank, 2.0, tmp_path / "cache")
    assert torch.equal(again.features, features.features) and torch.equal(again.owners, features.owners)
