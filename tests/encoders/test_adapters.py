"""Adapters for pretrained music encoders, each run on a tiny randomly initialised model of the same architecture
saved the way the real checkpoint is, and loaded through the adapter's own loading path."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tunespace.encoders.base import BackendUnavailableError, get_backend

transformers = pytest.importorskip("transformers")

from tunespace.encoders import hf  # noqa: E402
from tunespace.encoders.encodecmae import EncodecMAEModel, fold_weight_norm  # noqa: E402
from tunespace.encoders.musicfm import MusicFMEncoder, conformer_config, htk_mel_filterbank  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: on a busy machine, thread hand-offs cost far more than the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _audio(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, samples, generator=generator)


def assert_padding_invariant(backend, short: int, long: int, atol: float = 1e-5) -> None:
    """A clip alone and the same clip batched (zero-padded) with a longer one give the same frames and mask."""
    batch = _audio(2, long)
    batch[1, short:] = 0.0
    lengths = torch.tensor([long, short])
    features, valid = backend.frames(batch, lengths)
    alone, alone_valid = backend.frames(batch[1:, :short], lengths[1:])
    frames = int(alone_valid.sum())
    assert frames > 0
    assert int(valid[1].sum()) == frames and bool(valid[1, :frames].all())
    torch.testing.assert_close(features[1, :frames], alone[0, :frames], atol=atol, rtol=0)
    assert not features[1, frames:].any()  # padded frames carry nothing


# ---------------------------------------------------------------- MERT and Music2Vec (wav2vec 2.0 family)

def _hubert_config(stable: bool, norm: str) -> object:
    return transformers.HubertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, do_stable_layer_norm=stable,
        feat_extract_norm=norm, feat_proj_layer_norm=True, conv_bias=False)


def save_mert(folder: Path, stable: bool = False, norm: str = "group", do_normalize: bool = True,
              **overrides: object) -> Path:
    """A tiny HuBERT saved as the MERT repositories hold it: MERT config (remote-code model type, extra fields),
    pytorch_model.bin with the old weight_g / weight_v names, preprocessor_config.json."""
    torch.manual_seed(1)
    config = _hubert_config(stable, norm)
    model = transformers.HubertModel(config)
    state = {key.replace("parametrizations.weight.original0", "weight_g")
             .replace("parametrizations.weight.original1", "weight_v"): value
             for key, value in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    raw = config.to_dict()
    raw.update(model_type="mert_model", architectures=["MERTModel"], sample_rate=24000, attention_relax=32.0,
               deepnorm=False, feature_extractor_cqt=False, feature_extractor_cqt_bins=336,
               auto_map={"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
               _name_or_path="m-a-p/MERT-v1-330M", torch_dtype="float32", transformers_version="4.26.1",
               tokenizer_class="Wav2Vec2CTCTokenizer", mask_channel_length=10, mask_channel_prob=0.0)
    raw.update(overrides)
    (folder / "config.json").write_text(json.dumps(raw))
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": do_normalize, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
         "padding_value": 0.0, "return_attention_mask": True, "sampling_rate": 24000}))
    return folder


def save_music2vec(folder: Path) -> Path:
    torch.manual_seed(2)
    config = transformers.Data2VecAudioConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
        num_conv_pos_embeddings=3, conv_pos_kernel_size=5, num_conv_pos_embedding_groups=2)
    transformers.Data2VecAudioModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mert(tmp_path_factory.mktemp("mert"))


def test_normalisation_matches_wav2vec2_feature_extractor() -> None:
    audio = _audio(2, 4000).numpy() + 0.3
    lengths = [4000, 2500]
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    expected = extractor([audio[0], audio[1, :2500]], sampling_rate=16000, padding=True, return_tensors="pt")
    mine = hf.normalise_waveforms(torch.from_numpy(audio), torch.tensor(lengths))
    torch.testing.assert_close(mine, expected["input_values"].float(), atol=1e-5, rtol=1e-5)
    assert not mine[1, 2500:].any()


@pytest.mark.parametrize("name", ["mert-v1-95m", "mert-v1-330m"])
def test_mert_frames_mask_and_padding(tmp_path: Path, name: str) -> None:
    stable = name.endswith("330m")
    backend = get_backend(name, weights=save_mert(tmp_path / "m", stable=stable))
    assert backend.sample_rate == 24000 and backend.dim == 16 and backend.output_dim == 16
    assert not backend.padded_batches  # group norm: equal-length groups, no padding
    lengths = torch.tensor([24000, 17000, 399, 400])
    features, valid = backend.frames(_audio(4, 24000), lengths)
    expected = backend.model._get_feat_extract_output_lengths(lengths).clamp_min(0)
    assert features.shape == (4, 74, 16) and valid.shape == (4, 74)
    assert valid.sum(dim=1).tolist() == expected.tolist() == [74, 52, 0, 1]
    assert not features[2].any()
    # The formula is the model's real output length.
    out = backend.model(input_values=_audio(1, 17000)).last_hidden_state
    assert out.shape[1] == 52
    assert backend.min_seconds == pytest.approx(400 / 24000)
    assert_padding_invariant(backend, short=9000, long=24000)


def test_mert_with_layer_norm_front_end_uses_an_attention_mask(tmp_path: Path) -> None:
    backend = get_backend("mert-v1-95m", weights=save_mert(tmp_path / "m", stable=True, norm="layer"))
    assert backend.padded_batches
    assert_padding_invariant(backend, short=9000, long=24000)


def test_mert_layers(mert_dir: Path) -> None:
    clip = _audio(1, 12000)
    lengths = torch.tensor([12000])
    model = get_backend("mert-v1-95m", weights=mert_dir, layer=0).model
    out = model(input_values=hf.normalise_waveforms(clip, lengths), output_hidden_states=True)
    states = list(out.hidden_states)
    states[-1] = out.last_hidden_state
    assert len(states) == 3
    for layer, expected in [(0, states[0]), (1, states[1]), (-1, states[2]), ("2", states[2]),
                            ("mean", sum(states) / 3)]:
        features, valid = get_backend("mert-v1-95m", weights=mert_dir, layer=layer).frames(clip, lengths)
        torch.testing.assert_close(features[0, :int(valid.sum())], expected[0], atol=1e-5, rtol=1e-5)
    for bad in (3, -4, "last"):
        with pytest.raises(ValueError, match="layer"):
            get_backend("mert-v1-95m", weights=mert_dir, layer=bad)


def test_mert_normalisation_follows_the_checkpoint(tmp_path: Path) -> None:
    clip = _audio(1, 8000) + 0.5
    lengths = torch.tensor([8000])
    raw = get_backend("mert-v1-95m", weights=save_mert(tmp_path / "raw", do_normalize=False), layer=0)
    normalised = get_backend("mert-v1-95m", weights=save_mert(tmp_path / "norm", do_normalize=True), layer=0)
    assert not raw.do_normalize and normalised.do_normalize
    assert not torch.allclose(raw.frames(clip, lengths)[0], normalised.frames(clip, lengths)[0])
    direct = raw.model(input_values=clip, output_hidden_states=True).hidden_states[0]
    torch.testing.assert_close(raw.frames(clip, lengths)[0][0], direct[0], atol=1e-5, rtol=1e-5)


def test_mert_refusals(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="CQT"):
        get_backend("mert-v1-95m", weights=save_mert(tmp_path / "cqt", feature_extractor_cqt=True))
    with pytest.raises(BackendUnavailableError, match="24000 Hz"):
        get_backend("mert-v1-95m", weights=save_mert(tmp_path / "rate", sample_rate=16000))
    folder = save_mert(tmp_path / "partial")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    del state["encoder.layers.1.feed_forward.output_dense.weight"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(BackendUnavailableError, match="output_dense"):
        get_backend("mert-v1-95m", weights=folder)


def test_music2vec(tmp_path: Path) -> None:
    backend = get_backend("music2vec", weights=save_music2vec(tmp_path / "m2v"))
    assert backend.sample_rate == 16000 and backend.dim == 16 and backend.do_normalize
    assert backend.hidden_states == 3 and backend.layer is None  # default: mean of all hidden states
    assert not backend.padded_batches  # stacked positional convolutions carry padding into real frames
    features, valid = backend.frames(_audio(2, 16000), torch.tensor([16000, 8000]))
    assert features.shape == (2, 49, 16)
    assert valid.sum(dim=1).tolist() == backend.model._get_feat_extract_output_lengths(
        torch.tensor([16000, 8000])).tolist() == [49, 24]
    assert_padding_invariant(backend, short=6000, long=16000)


# ---------------------------------------------------------------- CLAP

def save_clap(folder: Path, fusion: bool = False) -> Path:
    torch.manual_seed(3)
    chars = [chr(c) for c in range(33, 127)] + ["\u0120"]
    vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", *chars])}
    audio = {"depths": [1, 1], "num_attention_heads": [1, 2], "hidden_size": 32, "patch_embeds_hidden_size": 16,
             "window_size": 8, "enable_fusion": fusion, "spec_size": 256, "num_mel_bins": 64, "projection_dim": 8}
    text = {"vocab_size": len(vocab), "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 64, "projection_dim": 8}
    model = transformers.ClapModel(transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=8))
    with torch.no_grad():  # positive first-layer biases keep the random projections' ReLUs from zeroing a vector
        for projection in (model.text_projection, model.audio_projection):
            projection.linear1.bias.uniform_(0.1, 0.3)
    model.save_pretrained(folder)
    transformers.ClapFeatureExtractor(truncation="fusion" if fusion else "rand_trunc").save_pretrained(folder)
    try:  # transformers 5 builds the tokenizer from the vocabulary itself, 4.x from its files
        tokenizer = transformers.RobertaTokenizer(vocab=vocab, merges=[])
    except TypeError:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = transformers.RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_clap(tmp_path_factory.mktemp("clap"))


def test_clap_windows(clap_dir: Path) -> None:
    backend = get_backend("clap", weights=clap_dir)
    assert backend.sample_rate == 48000 and backend.segment_seconds == 10.0 and backend.dim == 8
    lengths = torch.tensor([48000 * 3, 48000 * 2, 30000])
    features, valid = backend.frames(_audio(3, 48000 * 3), lengths)
    assert features.shape == (3, 1, 8) and valid.tolist() == [[True], [True], [False]]
    torch.testing.assert_close(features[:2, 0].norm(dim=-1), torch.ones(2))
    assert not features[2].any()  # less than min_seconds of audio: no window
    assert_padding_invariant(backend, short=48000 + 500, long=48000 * 3)
    pooled = get_backend("clap", weights=clap_dir, layer="pooled")
    assert pooled.dim == 32 and pooled.frames(_audio(1, 48000 * 2), torch.tensor([96000]))[0].shape == (1, 1, 32)
    with pytest.raises(ValueError, match="layer"):
        get_backend("clap", weights=clap_dir, layer=3)


def test_clap_fusion_model_is_independent_of_its_batch(tmp_path: Path) -> None:
    backend = get_backend("clap", weights=save_clap(tmp_path / "fused", fusion=True))
    audio = _audio(3, 48000 * 2)
    lengths = torch.full((3,), 96000)
    together = backend.frames(audio, lengths)[0]
    for row in range(3):
        torch.testing.assert_close(backend.frames(audio[row:row + 1], lengths[:1])[0][0], together[row],
                                   atol=1e-5, rtol=0)


def test_clap_text_embeddings(clap_dir: Path) -> None:
    backend = get_backend("clap", weights=clap_dir)
    vectors = backend.embed_text(["calm piano", "loud rock with drums"])
    assert vectors.shape == (2, 8)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(vectors[0], vectors[1])
    tokens = backend._tokenizer(["calm piano"], return_tensors="pt")
    direct = backend.model.text_projection(backend.model.text_model(**tokens).pooler_output)
    torch.testing.assert_close(vectors[:1], torch.nn.functional.normalize(direct, dim=-1), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- MusicFM

def save_musicfm(folder: Path, drop: str | None = None) -> Path:
    """A tiny MusicFM saved as the reference's Lightning checkpoint ("model."-prefixed, training-only parts too)."""
    torch.manual_seed(4)
    encoder = MusicFMEncoder(conformer_config(transformers, encoder_dim=32, depth=2, ffn_dim=64, kernel=31),
                             0.0, 1.0, conv_dim=4)
    for module in encoder.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = {f"model.{key}": value for key, value in encoder.state_dict().items() if key != drop}
    state.update({"model.cls_token": torch.randn(32), "model.linear.weight": torch.randn(16, 32),
                  "model.quantizer_melspec_2048_0.codebook": torch.randn(16, 16)})
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, folder / "musicfm_tiny.pt")
    (folder / "tiny_stats.json").write_text(json.dumps({"melspec_2048_mean": -30.0, "melspec_2048_std": 20.0}))
    return folder


def test_htk_filterbank_shape() -> None:
    bank = htk_mel_filterbank()
    assert bank.shape == (1025, 128) and bank.min() >= 0 and bank.max() <= 1
    assert (bank.sum(dim=0) > 0).all()  # every band covers some FFT bins


def test_musicfm(tmp_path: Path) -> None:
    folder = save_musicfm(tmp_path / "fm")
    backend = get_backend("musicfm", weights=folder, layer=1)
    assert backend.sample_rate == 24000 and backend.dim == 32 and backend.segment_seconds == 30.0
    lengths = torch.tensor([48000, 30000, 1000])
    features, valid = backend.frames(_audio(3, 48000), lengths)
    assert features.shape == (3, 50, 32)
    assert valid.sum(dim=1).tolist() == [50, 32, 0]  # ceil((samples // 240) / 4) at 25 Hz
    encoded = backend.model.hidden_states(_audio(1, 30000), 1)
    assert encoded.shape[1] == 32
    assert_padding_invariant(backend, short=13000, long=48000)
    clip, clip_length = _audio(1, 12000), torch.tensor([12000])
    states = [get_backend("musicfm", weights=folder, layer=i).frames(clip, clip_length)[0] for i in range(3)]
    mean = get_backend("musicfm", weights=folder, layer="mean").frames(clip, clip_length)[0]
    torch.testing.assert_close(mean, sum(states) / 3, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="layer"):
        get_backend("musicfm", weights=folder)  # the default, 6, needs the real 12-layer model


def test_musicfm_refusals(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"conformer\.layers\.1\.conv_module\.pointwise_conv1\.weight"):
        get_backend("musicfm", weights=save_musicfm(tmp_path / "a",
                                                    drop="conformer.layers.1.conv_module.pointwise_conv1.weight"))
    folder = save_musicfm(tmp_path / "b")
    (folder / "tiny_stats.json").unlink()
    with pytest.raises(BackendUnavailableError, match=r"stats\.json"):
        get_backend("musicfm", weights=folder, layer=1)


# ---------------------------------------------------------------- EnCodecMAE

def _encodec_names(key: str) -> str:
    """This module's EnCodec names back to the `encodec` package's (SConv1d wraps NormConv1d wraps Conv1d)."""
    return key.replace(".conv.", ".conv.conv.")


def save_encodecmae(folder: Path, layout: str) -> Path:
    """A tiny EnCodecMAE as a Lightning checkpoint in one of the two layouts of the reference code, with weight norm
    split into g and v as torch's old weight_norm stores it."""
    torch.manual_seed(5)
    model = EncodecMAEModel(filters=2, codec_dim=8, dim=16, layers=2, heads=2, ff_dim=32)
    with torch.no_grad():
        model.position_scale.fill_(0.7)
    codec, projection, scale = {
        "old": ("wav_encoder.model.model.", "feat_projector.", "positional_encoder.scale"),
        "new": ("wav_encoder.encoder.model.model.", "wav_encoder.post_net.", "masker.positional_encoder.scale"),
    }[layout]
    state: dict[str, torch.Tensor] = {scale: model.position_scale.detach().clone()}
    for key, value in model.state_dict().items():
        if key.startswith("encodec."):
            name = codec + _encodec_names(key[len("encodec."):])
            if name.endswith("conv.weight"):
                norm = value.flatten(1).norm(dim=1).view(-1, 1, 1)
                state[name + "_g"], state[name + "_v"] = norm, value * 3.0  # v's scale is irrelevant
                continue
            state[name] = value
        elif key.startswith("projection."):
            state[projection + key[len("projection."):]] = value
        elif key.startswith("transformer."):
            state["visible_encoder." + key[len("transformer."):]] = value
    state["decoder.final_norm.weight"] = torch.ones(16)  # training-only parts are ignored
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "epoch": 3}, folder / "model.pt")
    return folder


@pytest.mark.parametrize("layout", ["old", "new"])
def test_encodecmae(tmp_path: Path, layout: str) -> None:
    folder = save_encodecmae(tmp_path / layout, layout)
    backend = get_backend("encodecmae", weights=folder)
    assert backend.sample_rate == 24000 and backend.dim == 16 and backend.segment_seconds == 4.0
    assert backend.layer == 2 and float(backend.model.position_scale) == pytest.approx(0.7)
    lengths = torch.tensor([24000, 17000, 2048])
    features, valid = backend.frames(_audio(3, 24000), lengths)
    assert features.shape == (3, 75, 16) and valid.sum(dim=1).tolist() == [75, 53, 0]
    assert_padding_invariant(backend, short=9100, long=24000)
    clip, clip_length = _audio(1, 9600), torch.tensor([9600])
    states = [get_backend("encodecmae", weights=folder, layer=i).frames(clip, clip_length)[0] for i in range(3)]
    assert not torch.allclose(states[1], states[2])
    mean = get_backend("encodecmae", weights=folder, layer="mean").frames(clip, clip_length)[0]
    torch.testing.assert_close(mean, sum(states) / 3, atol=1e-5, rtol=0)


def test_encodecmae_weight_norm_fold() -> None:
    weight = torch.randn(4, 3, 5)
    gain = torch.rand(4, 1, 1) + 0.5
    folded = fold_weight_norm({"c.weight_g": gain, "c.weight_v": weight, "c.bias": torch.zeros(4)})
    assert set(folded) == {"c.weight", "c.bias"}
    torch.testing.assert_close(folded["c.weight"].flatten(1).norm(dim=1), gain.flatten())


def test_encodecmae_rejects_unknown_layouts(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    torch.save({"state_dict": {"something.weight": torch.zeros(2)}}, tmp_path / "model.pt")
    with pytest.raises(BackendUnavailableError, match="not an EnCodecMAE checkpoint"):
        get_backend("encodecmae", weights=tmp_path)


# ---------------------------------------------------------------- Jukebox (through a stand-in for jukemirlib)

def test_jukebox_plumbing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[np.ndarray] = []

    def extract(audio: np.ndarray, layers: list[int]) -> dict[int, np.ndarray]:
        calls.append(audio)
        tokens = len(audio) // 128
        return {layers[0]: np.tile(np.abs(audio[:tokens * 128]).reshape(tokens, 128).mean(1)[:, None], (1, 4800))}

    stub = types.SimpleNamespace(extract=extract, CACHE_DIR="~", DEVICE="cuda",
                                 constants=types.SimpleNamespace(CACHE_DIR="~", DEVICE="cuda"))
    monkeypatch.setitem(sys.modules, "jukemirlib", stub)
    for name in ("vqvae.pth.tar", "prior_level_2.pth.tar"):
        (tmp_path / name).write_bytes(b"")
    backend = get_backend("jukebox", weights=tmp_path)
    assert stub.CACHE_DIR == stub.constants.CACHE_DIR == str(tmp_path) and stub.DEVICE == "cpu"
    assert backend.sample_rate == 44100 and backend.dim == 4800 and backend.layer == 36
    waveforms = _audio(3, 4410)
    lengths = torch.tensor([4410, 1000, 100])
    features, valid = backend.frames(waveforms, lengths)
    assert features.shape == (3, 34, 4800) and valid.sum(dim=1).tolist() == [34, 7, 0]
    assert len(calls) == 2 and len(calls[1]) == 1000 and np.abs(calls[1]).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="layer"):
        get_backend("jukebox", weights=tmp_path, layer=73)


# ---------------------------------------------------------------- missing weights and packages

@pytest.mark.parametrize("name", ["mert-v1-95m", "mert-v1-330m", "music2vec", "clap", "musicfm", "encodecmae",
                                  "jukebox"])
def test_missing_weights_name_the_path(tmp_path: Path, name: str) -> None:
    absent = tmp_path / "nowhere"
    with pytest.raises(BackendUnavailableError, match="nowhere"):
        get_backend(name, weights=absent)


@pytest.mark.parametrize("name,repo", [("mert-v1-330m", "m-a-p/MERT-v1-330M"), ("music2vec", "m-a-p/music2vec-v1"),
                                       ("clap", "laion/larger_clap_music"),
                                       ("encodecmae", "lpepino/encodecmae-base")])
def test_no_weights_and_empty_cache_name_the_repository(monkeypatch: pytest.MonkeyPatch, name: str,
                                                        repo: str) -> None:
    monkeypatch.setattr(hf, "cached_snapshot", lambda repo_id: None)
    monkeypatch.setattr("tunespace.encoders.encodecmae.cached_snapshot", lambda repo_id: None)
    with pytest.raises(BackendUnavailableError, match=repo):
        get_backend(name)


def test_incomplete_folder_lists_the_expected_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BackendUnavailableError, match=r"preprocessor_config\.json") as caught:
        get_backend("clap", weights=tmp_path)
    assert "model.safetensors or pytorch_model.bin" in str(caught.value)


def test_jukebox_without_jukemirlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jukemirlib", None)
    for name in ("vqvae.pth.tar", "prior_level_2.pth.tar"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(BackendUnavailableError, match="jukemirlib"):
        get_backend("jukebox", weights=tmp_path)
