"""HTCL: typed configs, the audio encoder's shapes and padding, the text tower, and both stages end to end on a
tiny corpus with a tiny random text model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import tiny_bert as make_tiny_bert

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
    return make_tiny_bert(tmp_path_factory.mktemp("bert"), WORDS)


def test_shipped_configs_load_typed():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert names == ["base", "pairs", "small", "tiny"]
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
    semantic = semantic_evaluation(model2, batches2.bank, data, vectors.vectors, min_tag_positives=1, part="all")
    assert semantic.held_out_tracks == 6
    assert 0 <= semantic.text_to_audio["R@10"] <= 1 and semantic.chance_text_to_audio["R@1"] == pytest.approx(1 / 6)
    for part in ("validation", "test"):  # the two fixed halves of the held-out set
        half = semantic_evaluation(model2, batches2.bank, data, vectors.vectors, min_tag_positives=1, part=part,
                                   probe=part == "test")
        assert half.held_out_tracks == 3 and half.chance_text_to_audio["R@1"] == pytest.approx(1 / 3)
        assert np.isnan(half.probe_accuracy) == (part == "validation")


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


def test_cli_pretrain_finetune_evaluate_report(corpus, tiny_bert, tmp_path, monkeypatch):
    import json
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
    assert main(["htcl", "finetune", "--data", str(corpus), "--init", str(tmp_path / "s1"), "--out",
                 str(tmp_path / "control"), "--lambda", "1", "--set", "stage.preference_sources.session.weight=0",
                 "--set", "stage.preference_sources.playlist.weight=0", "--steps", "2", "--device", "cpu"]) == 0
    # every run stores the corpus's held-out set; train.seed does not move it
    held = json.loads((tmp_path / "s1" / "holdout.json").read_text())
    assert len(held["tracks"]) == 6 and sorted(held["validation"] + held["test"]) == held["tracks"]
    assert len(held["validation"]) == len(held["test"]) == 3
    assert main(["htcl", "pretrain", "--data", str(corpus), "--out", str(tmp_path / "s1-seed"), "--steps", "1",
                 "--device", "cpu", *tiny, "--set", "train.seed=5"]) == 0
    assert json.loads((tmp_path / "s1-seed" / "holdout.json").read_text()) == held
    for name in ("s2-0", "s2-1", "s2-head", "control"):
        assert json.loads((tmp_path / name / "holdout.json").read_text()) == held
    # a stage 2 that would hold out other tracks than its stage 1 did is refused, naming both
    assert main(["htcl", "finetune", "--data", str(corpus), "--init", str(tmp_path / "s1"), "--out",
                 str(tmp_path / "moved"), "--set", "holdout_seed=3", "--steps", "1", "--device", "cpu"]) == 1
    assert not (tmp_path / "moved" / "last.pt").exists()

    names = ("s1", "control", "s2-0", "s2-1", "s2-head")
    runs = [arg for name in names for arg in ("--run", str(tmp_path / name))]
    import tunespace.contrastive.evaluate as contrastive_evaluate
    from tunespace.data.dataset import Dataset
    from tunespace.data.splits import SplitConfig, temporal_split

    cutoff = load_config(tmp_path / "s1" / "config.yaml").cutoff
    split = temporal_split(Dataset.load(corpus).interactions, SplitConfig(cutoff=cutoff, seed=42))
    choose, chosen_from = contrastive_evaluate.choose_weight, []

    def spy(figures, *args, **kwargs):  # what the popularity weight beta is chosen on
        chosen_from.extend(set(r.per_user["user_id"]) for per_seed in figures.values() for r in per_seed.values())
        return choose(figures, *args, **kwargs)

    monkeypatch.setattr(contrastive_evaluate, "choose_weight", spy)
    assert main(["htcl", "evaluate", "--data", str(corpus), *runs, "--out", str(tmp_path / "eval"),
                 "--device", "cpu", "--select-on", "test"]) != 0  # the test users never choose
    assert main(["htcl", "evaluate", "--data", str(corpus), *runs, "--out", str(tmp_path / "eval"),
                 "--device", "cpu"]) == 0
    evaluation = tmp_path / "eval"
    assert len(chosen_from) == len(names) * 18  # every set, every beta of the grid
    assert all(users <= set(split.validation["user_id"].astype(str)) for users in chosen_from)
    selection = pd.read_csv(evaluation / "selection.csv")
    candidates = selection[selection["role"] == "candidate"]
    assert list(candidates["run"]) == ["s2-0", "s2-1", "s2-head"]  # the control (weight 0) is a fixed arm
    assert set(selection["role"]) == {"candidate", "stage-1 reference", "fixed arm"}
    chosen = candidates[candidates["selected"]]["run"].tolist()
    assert len(chosen) <= 1 and candidates["reason"].str.len().min() > 0
    if chosen:
        qualifying = candidates[candidates["qualified"].astype(bool)]
        best = candidates[candidates["selected"]]["validation_ndcg@50"].iloc[0]
        assert qualifying["validation_ndcg@50"].max() == best
    reported = {"s1", "control", *chosen}
    semantic = pd.read_csv(evaluation / "semantic.csv")
    assert set(semantic[semantic["part"] == "validation"]["run"]) == set(names)
    assert set(semantic[semantic["part"] == "test"]["run"]) == reported  # no test figures for unselected runs
    assert semantic.set_index(["run", "part"]).loc[("s2-1", "validation"), "lambda"] == 1.0
    def rows(sets):  # raw and popularity-aware per set, and the content-free reference
        return {f"knn{kind}[{n}]" for n in sets for kind in ("", "+pop")} | {"popularity"}

    preference = pd.read_csv(evaluation / "preference.csv")
    assert set(preference["model"]) == rows(reported)
    assert set(pd.read_csv(evaluation / "cold.csv")["model"]) == rows(reported)
    validation = pd.read_csv(evaluation / "preference_validation.csv").set_index("model")
    assert set(validation.index) == rows(names)
    weights = pd.read_csv(evaluation / "popularity_weights.csv")  # every beta of every set, chosen on validation
    assert list(weights.columns) == ["set", "model", "beta", "validation_ndcg@50", "split_seeds", "chosen"]
    assert set(weights["set"]) == set(names) and (weights.groupby("set")["chosen"].sum() == 1).all()
    betas = weights[weights["chosen"]].set_index("set")["beta"]
    for name in reported:  # the validation beta, unchanged on the test users
        assert preference.set_index("model").loc[f"knn+pop[{name}]", "beta"] == pytest.approx(betas[name])
        assert np.isnan(preference.set_index("model").loc[f"knn[{name}]", "beta"])
    for name in names:  # selection scores candidates by the +pop row; the raw figure is kept beside it
        row = selection.set_index("run").loc[name]
        assert row["validation_ndcg@50"] == pytest.approx(validation.loc[f"knn+pop[{name}]", "ndcg@50"])
        assert row["validation_ndcg@50_raw"] == pytest.approx(validation.loc[f"knn[{name}]", "ndcg@50"])
        assert "knn+pop" in row["selected_on"]
    tests = pd.read_csv(evaluation / "significance.csv")  # s1 is both the control and the stage-1 reference
    expected = {("knn+pop[control]", "knn+pop[s1]"), ("knn[control]", "knn[s1]")}
    if chosen:
        expected |= {(f"knn+pop[{chosen[0]}]", "knn+pop[s1]"), (f"knn+pop[{chosen[0]}]", "popularity"),
                     (f"knn[{chosen[0]}]", "knn[s1]")}
    for part, frame in tests.groupby("part"):  # on cold items only raw rows are compared (+pop ranks them last)
        wanted = expected if part == "test" else {(a, b) for a, b in expected if "+pop" not in a + b
                                                  and b != "popularity"}
        assert set(zip(frame["model"], frame["baseline"])) == wanted and set(frame["family"]) == {part}
    assert set(tests["part"]) == {"test", "cold_test"} and set(tests["split_seed"].astype(str)) == {"42"}
    record = json.loads((evaluation / "provenance.json").read_text())
    assert record["status"] == "ok" and record["settings"]["split_seeds"] == [42]
    assert record["figures"]["selected"] == (chosen[0] if chosen else None)
    assert set(record["figures"]["test"]) == rows(reported)
    assert record["figures"]["test"][f"knn+pop[{names[1]}]"]["beta"] == pytest.approx(betas[names[1]])
    assert main(["report", "--eval", str(evaluation), "--out", str(tmp_path / "report.html")]) == 0

    class Count(HTMLParser):
        tags: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)

    parser = Count()
    parser.feed((tmp_path / "report.html").read_text())
    # selection, semantic, warm, cold, paired tests; the trade-off over lambda from the validation figures
    assert parser.tags.count("table") == 5 and parser.tags.count("img") == 1

    # repeated split seeds: selection on validation figures averaged over them, test figures as mean and sd,
    # paired tests per split seed and across them; --test-all-runs labels the unselected as information only
    assert main(["htcl", "evaluate", "--data", str(corpus), *runs, "--out", str(tmp_path / "eval2"),
                 "--device", "cpu", "--split-seeds", "2", "--split-seed", "7", "--test-all-runs"]) == 0
    per_seed = pd.read_csv(tmp_path / "eval2" / "preference_per_seed.csv")
    assert sorted(set(per_seed["split_seed"])) == [7, 8] and set(per_seed["model"]) == rows(names)
    summary = pd.read_csv(tmp_path / "eval2" / "preference.csv").set_index("model")
    for label, rows in per_seed.groupby("model"):
        assert summary.loc[label, "ndcg@50"] == pytest.approx(rows["ndcg@50"].mean())
        assert summary.loc[label, "ndcg@50_split_sd"] == pytest.approx(rows["ndcg@50"].std(ddof=1), nan_ok=True)
    statuses = summary["status"].to_dict()
    chosen2 = [n for n in names if statuses[f"knn[{n}]"] == "selected"]
    assert all("information only" in statuses[f"knn[{n}]"] for n in ("s2-0", "s2-1", "s2-head") if n not in chosen2)
    tests = pd.read_csv(tmp_path / "eval2" / "significance.csv")
    assert set(tests["split_seed"].astype(str)) >= {"across"}
    assert {"test", "test: information only"} <= set(tests["family"]) <= {"test", "test: information only",
                                                                          "cold_test", "cold_test: information only"}
    across = tests[tests["split_seed"].astype(str) == "across"]
    assert (across["split_seeds"] == 2).all()
    selection2 = pd.read_csv(tmp_path / "eval2" / "selection.csv").set_index("run")
    validation = pd.read_csv(tmp_path / "eval2" / "preference_validation.csv").set_index("model")
    assert selection2.loc["s2-1", "validation_ndcg@50"] == pytest.approx(validation.loc["knn+pop[s2-1]", "ndcg@50"])
    assert selection2.loc["s2-1", "validation_ndcg@50_raw"] == pytest.approx(validation.loc["knn[s2-1]", "ndcg@50"])
    semantic2 = pd.read_csv(tmp_path / "eval2" / "semantic.csv")  # validation figures are what choosing uses
    for labels in (validation["status"], semantic2[semantic2["part"] == "validation"]["status"]):
        assert not labels.str.contains("information only").any()

    # an evaluation on a corpus whose held-out set differs from a run's is refused, naming both
    moved = dict(held, validation=held["test"], test=held["validation"])
    (tmp_path / "s2-1" / "holdout.json").write_text(json.dumps(moved))
    assert main(["htcl", "evaluate", "--data", str(corpus), *runs, "--out", str(tmp_path / "eval3"),
                 "--device", "cpu"]) == 1


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


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(corpus, tiny_bert, tmp_path):
    from tunespace.contrastive.htcl import BatchMaker

    config = tiny_config(tiny_bert)
    _, whole = make_stage(Corpus.load(corpus, config.cutoff), config, DistributedContext(), cache=tmp_path / "cache")
    third = BatchMaker(whole.bank, config, whole.semantic, whole.preference, DistributedContext(rank=0, world_size=3))
    with pytest.raises(ConfigError, match="batch of 8 rows .* does not split evenly over 3 processes"):
        third(0)
    with pytest.raises(ConfigError, match="catalogue_negatives=5 does not split evenly over 2 processes"):
        BatchMaker(whole.bank, tiny_config(tiny_bert, preference_sources={"session": {}}, catalogue_negatives=5),
                   whole.semantic, whole.preference, DistributedContext(rank=0, world_size=2))


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
                         features, plays, batches.held_out)(0) for r in range(2)]
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


def test_held_out_set_is_fixed_per_corpus_by_id_and_its_own_seed(tiny_bert):
    from tunespace.contrastive.htcl import Holdout

    ids = [f"t{i:02d}" for i in range(40)]
    drawn = Holdout.draw(ids, 0.25, seed=0)
    assert len(drawn.tracks) == 10 and len(drawn.validation) == len(drawn.test) == 5
    assert not set(drawn.validation) & set(drawn.test)
    assert Holdout.draw(list(reversed(ids)), 0.25, seed=0) == drawn  # by sorted id, not row order
    assert Holdout.draw(ids, 0.25, seed=1) != drawn
    mask = drawn.mask(ids[::-1], "validation")  # aligned with the ids as given
    assert [i for i, m in zip(ids[::-1], mask) if m] == sorted(drawn.validation, reverse=True)
    # train.seed has no say: two configs differing only there hold out the same tracks
    a = load_config("tiny", {"text.model": str(tiny_bert), "train.seed": 0, "holdout_share": 0.25})
    b = load_config("tiny", {"text.model": str(tiny_bert), "train.seed": 9, "holdout_share": 0.25})
    assert Holdout.draw(ids, a.holdout_share, a.holdout_seed) == Holdout.draw(ids, b.holdout_share, b.holdout_seed)
    with pytest.raises(ConfigError, match=r"run/holdout.json .* and the corpus .* hold out different tracks"):
        drawn.require_same(Holdout.draw(ids, 0.25, seed=1), "run/holdout.json", "the corpus")
    swapped = Holdout(0, 0.25, drawn.test, drawn.validation)
    with pytest.raises(ConfigError, match="other validation/test halves"):
        drawn.require_same(swapped, "a", "b")
    with pytest.raises(ConfigError, match="at least one track each"):
        Holdout.draw(ids[:3], 0.1, 0)


def test_holdout_json_round_trips_and_a_stage_two_on_another_holdout_is_refused(corpus, tiny_bert, tmp_path):
    from tunespace.contrastive.htcl import Holdout, check_run_holdout

    config = tiny_config(tiny_bert)
    data = Corpus.load(corpus, config.cutoff)
    holdout = data.holdout(config)
    holdout.save(tmp_path / "s1")
    assert Holdout.load(tmp_path / "s1") == holdout
    check_run_holdout(tmp_path / "s1", holdout, "the corpus")
    with pytest.raises(ConfigError, match="missing"):
        check_run_holdout(tmp_path / "nothing", holdout, "the corpus")
    model, batches = make_stage(data, config, DistributedContext(), cache=tmp_path / "cache")
    train_loop(model, batches, config.train, tmp_path / "s1")
    moved = tiny_config(tiny_bert, preference_sources={"session": {}})
    moved.holdout_seed = 4
    with pytest.raises(ConfigError, match=r"s1/holdout.json .* hold out different tracks"):
        make_stage(data, moved, DistributedContext(), cache=tmp_path / "cache", init_from=tmp_path / "s1/last.pt")


@pytest.mark.parametrize("pairs", [{"history": {"profile_size": 3}}, {"session": {}, "playlist": {}}])
def test_no_held_out_track_is_ever_in_a_stage_two_batch(corpus, tiny_bert, tmp_path, pairs):
    """Property over many steps: anchors, positives, history profiles, catalogue draws and semantic clips."""
    config = tiny_config(tiny_bert, preference_sources=pairs, semantic_weight=0.5, catalogue_negatives=8)
    data = Corpus.load(corpus, config.cutoff)
    held = data.holdout(config).mask(data.tracks["track_id"].astype(str))
    assert (data.train_plays()[held] > 0).any()  # held-out tracks have plays: without the exclusion they would show
    _, batches = make_stage(data, config, DistributedContext(), cache=tmp_path / "cache")
    assert (batches.held_out == held).all()
    seen: list[np.ndarray] = []
    audio = batches._audio

    def recording(tracks, rng, rows):
        seen.append(np.asarray(tracks))
        return audio(tracks, rng, rows)

    batches._audio = recording
    for step in range(25):
        batch = batches(step)
        assert not held[batch.positive_tracks.numpy()].any() and not held[batch.negative_tracks.numpy()].any()
    drawn = np.concatenate(seen)
    assert len(drawn) > 25 * 8 and not held[drawn].any()
    assert len(np.unique(drawn)) > 0.5 * (~held).sum()  # the draws do roam the rest of the catalogue


def test_split_seed_slices_equal_evaluating_each_split_and_validation_only_sets_never_meet_test_users(corpus):
    from tunespace.contrastive.evaluate import paired_tests, preference_results, seed_table
    from tunespace.data.dataset import Dataset
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.data.splits import SplitConfig, temporal_split
    from tunespace.evaluation.benchmark import model_specs, run_benchmark

    ids = Dataset.load_tracks(corpus)["track_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    sets = {name: ItemEmbeddings(ids=ids, vectors=rng.normal(size=(len(ids), 8)).astype(np.float32))
            for name in ("fixed", "candidate")}
    results = preference_results(corpus, "2025-01-01", sets, ("knn",), (42, 43),
                                 {"fixed": ("validation", "test"), "candidate": ("validation",)})
    interactions = Dataset.load(corpus).interactions
    for seed in (42, 43):
        split = temporal_split(interactions, SplitConfig(cutoff="2025-01-01", seed=seed))
        for part in ("validation", "test"):
            direct = run_benchmark(split, model_specs(["knn"], {"fixed": sets["fixed"]}), ks=(50,), part=part,
                                   cold_part=f"cold_{part}")
            sliced = results.parts[part][seed]["knn[fixed]"].per_user.set_index("user_id").sort_index()
            expected = direct.results["knn[fixed]"].per_user.set_index("user_id").sort_index()
            pd.testing.assert_frame_equal(sliced, expected)
            if direct.cold_results:
                cold = results.parts[f"cold_{part}"][seed]["knn[fixed]"].per_user.set_index("user_id")
                pd.testing.assert_frame_equal(cold.sort_index(), direct.cold_results["knn[fixed]"].per_user
                                              .set_index("user_id").sort_index())
        assert "knn[candidate]" not in results.parts["test"][seed]
        assert set(results.parts["validation"][seed]["knn[candidate]"].per_user["user_id"]) == \
            set(split.validation["user_id"].astype(str))
    summary, per_seed = seed_table(results, "test")
    assert list(summary["model"]) == ["popularity", "knn[fixed]", "knn+pop[fixed]"]  # raw, +pop, the reference
    summary, per_seed = summary.iloc[[1]], per_seed[per_seed["model"] == "knn[fixed]"]
    assert list(per_seed["split_seed"]) == [42, 43]
    assert summary["ndcg@50"].iloc[0] == pytest.approx(per_seed["ndcg@50"].mean())
    assert summary["ndcg@50_split_sd"].iloc[0] == pytest.approx(per_seed["ndcg@50"].std(ddof=1))
    tests = paired_tests(results, "validation", [("knn[candidate]", "knn[fixed]")])
    assert list(tests["split_seed"]) == ["42", "43", "across"] and tests["split_seeds"].iloc[-1] == 2


def test_listener_stage_ranks_held_out_tracks_among_the_whole_catalogue(corpus, tiny_bert, tmp_path):
    """The listener source: every drawable track is a candidate, profiles and held-out tracks are rows of the
    catalogue, no held-out track ever appears, the forward pass is the loss module on the head's embeddings,
    ranks split the listeners but share the catalogue, and the popularity weight learns."""
    from tunespace.contrastive.htcl import BatchMaker
    from tunespace.contrastive.losses import ListenerSoftmax

    data = Corpus.load(corpus, "2025-01-01")
    first = tiny_config(tiny_bert)
    model1, batches1 = make_stage(data, first, DistributedContext(), cache=tmp_path / "cache")
    train_loop(model1, batches1, first.train, tmp_path / "s1")
    config = tiny_config(tiny_bert, tune="head", preference_sources={"listener": {"holdout_share": 0.3}},
                         semantic_weight=0.5, popularity_correction=1.0, learn_popularity=True)
    config.audio.adapter_hidden = 8
    model, batches = make_stage(data, config, DistributedContext(), cache=tmp_path / "cache",
                                init_from=tmp_path / "s1/last.pt")
    assert isinstance(model.preference_loss, ListenerSoftmax)
    plays = data.train_plays()
    drawable = np.flatnonzero((plays > 0) & ~batches.held_out)
    batch = batches(0)
    assert batch.catalogue_audio.shape == (len(drawable), 16) and batch.listeners == config.train.batch_size
    for rows in (batch.profile_rows, batch.positive_rows):
        assert not batches.held_out[drawable[rows.numpy()]].any()
    torch.testing.assert_close(batch.catalogue_log_popularity, torch.from_numpy(np.log1p(plays[drawable])).float())
    with torch.no_grad():
        expected = model.preference_loss(model.audio.head(batch.catalogue_audio), batch.profile_rows,
                                         batch.profile_owner, batch.positive_rows, batch.positive_owner,
                                         batch.listeners, batch.catalogue_log_popularity, batch.preference_weights)
        torch.testing.assert_close(model(batch)["preference_loss"], expected["loss"])
    halves = [BatchMaker(batches.bank, config, batches.semantic, batches.preference,
                         DistributedContext(rank=r, world_size=2), batches.features, plays, batches.held_out)(0)
              for r in range(2)]
    assert [h.listeners for h in halves] == [config.train.batch_size // 2] * 2
    assert all(torch.equal(h.catalogue_audio, batch.catalogue_audio) for h in halves)
    whole = batch.positive_rows[batch.positive_owner < config.train.batch_size // 2]
    assert torch.equal(halves[0].positive_rows, whole)
    report = train_loop(model, batches, config.train, tmp_path / "s2")
    assert {"preference_loss", "preference_popularity_weight", "semantic_loss"} <= set(report.history[-1])
    assert model.preference_loss.popularity_weight.item() != 1.0
    with pytest.raises(ConfigError, match="tune: head"):
        tiny_config(tiny_bert, preference_sources={"listener": {}})
