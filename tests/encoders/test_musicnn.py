"""The torch MusiCNN against the reference musicnn 0.1.0 (TensorFlow) outputs in fixtures/musicnn_reference.npz.

The weights come from the musicnn wheel (`pip install --no-deps musicnn==0.1.0`); tests that need them are skipped
when it is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from tunespace.audio.features import mel_filterbank
from tunespace.encoders import musicnn as mn
from tunespace.encoders.base import BackendUnavailableError, get_backend
from tunespace.encoders.tf_checkpoint import read_index

FIXTURES = Path(__file__).parent / "fixtures"
needs_wheel = pytest.mark.skipif(importlib.util.find_spec("musicnn") is None,
                                 reason="musicnn weights not installed: pip install --no-deps musicnn==0.1.0")
# Absolute tolerance, relative to max(1, |reference|): the pooled features reach ~120, where float32 rounding over a
# deep network differs between TensorFlow and torch by a few 1e-4 in absolute terms.
TOLERANCE = 1e-4


def _recipe():
    spec = importlib.util.spec_from_file_location("make_reference", FIXTURES / "make_musicnn_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPE = _recipe()


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Small batches run faster on one thread than on two that fight other processes for a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "musicnn_reference.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def clips(reference) -> dict[str, np.ndarray]:
    built = RECIPE.make_clips()
    for name, clip in built.items():  # the recipe must rebuild the clips the reference saw
        np.testing.assert_allclose(RECIPE.fingerprint(clip), reference[f"{name}__fingerprint"], rtol=1e-6)
    return built


@pytest.fixture(scope="module")
def networks() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {model: mn.load_model(model) for model in mn.MODELS}


def assert_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    assert ours.shape == theirs.shape, what
    excess = np.abs(ours - theirs) - TOLERANCE * np.maximum(1.0, np.abs(theirs))
    assert excess.max() <= 0, f"{what}: max |difference| {np.abs(ours - theirs).max():.2e}"


def test_front_end_matches_librosa_reference(reference, clips):
    for name, clip in clips.items():
        ours = mn.log_mel(torch.from_numpy(clip)[None])[0, :RECIPE.LOGMEL_FRAMES].numpy()
        np.testing.assert_allclose(ours, reference[f"{name}__logmel"], atol=1e-3, rtol=0)  # one float16 step
        assert np.mean(np.abs(ours - reference[f"{name}__logmel"]) < 1e-5) > 0.999


@needs_wheel
@pytest.mark.parametrize("model", mn.MODELS)
def test_parity_with_tensorflow_reference(reference, clips, networks, model):
    for name, clip in clips.items():
        result = mn.musicnn_features(clip, model=model, network=networks[model])
        prefix = f"{name}__{model}__"
        assert not result.repeat_padded and len(result.tags) == 50
        assert_close(result.taggram, reference[prefix + "taggram"], prefix + "taggram")
        for layer, values in result.features.items():
            assert_close(values, reference[prefix + layer], prefix + layer)
        assert set(result.features) == ({"penultimate"} if model.endswith("vgg")
                                        else {"penultimate", "mean_pool", "max_pool"})


@needs_wheel
def test_every_patch_has_its_own_penultimate(reference, clips, networks):
    """The upstream extractor repeats the first patch's penultimate values; the port must not."""
    result = mn.musicnn_features(clips["loud"], model="MSD_musicnn", network=networks["MSD_musicnn"])
    penultimate = result.features["penultimate"]
    assert len(penultimate) == 3 and np.abs(penultimate[1:] - penultimate[:1]).max() > 0.1
    assert_close(penultimate, reference["loud__MSD_musicnn__penultimate"], "penultimate")


@needs_wheel
def test_backend_contract_and_batching(reference, clips):
    backend = get_backend("musicnn-msd")
    assert (backend.name, backend.sample_rate, backend.dim, backend.output_dim) == ("musicnn-msd", 16000, 200, 200)
    assert round(backend.segment_seconds * backend.sample_rate) % mn.PATCH_SAMPLES == 0  # segments of whole patches
    names = ["chords", "melody", "loud"]
    lengths = torch.tensor([len(clips[n]) for n in names])
    waveforms = torch.zeros(3, int(lengths.max()))
    for row, name in enumerate(names):
        waveforms[row, :len(clips[name])] = torch.from_numpy(clips[name])
    features, valid = backend.frames(waveforms, lengths)
    assert features.shape == (3, 3, 200) and valid.tolist() == [[True, True, False], [True, False, False],
                                                                [True, True, True]]
    for row, name in enumerate(names):
        assert_close(features[row][valid[row]].numpy(), reference[f"{name}__MSD_musicnn__penultimate"], name)
    mean = features[valid].mean(dim=0, keepdim=True).numpy()
    assert backend.finalize(mean, np.array([6])).shape == (1, 200)


@needs_wheel
@pytest.mark.parametrize("name,layer,dim", [("musicnn-mtt", "taggram", 50), ("musicnn-msd", "max_pool", 753),
                                            ("musicnn-mtt", "mean_pool", 753), ("vgg-msd", "penultimate", 256),
                                            ("vgg-mtt", "taggram", 50)])
def test_layers(reference, clips, name, layer, dim):
    backend = get_backend(name, layer=layer)
    clip = clips["melody"]
    features, valid = backend.frames(torch.from_numpy(clip)[None], torch.tensor([len(clip)]))
    assert backend.dim == dim and features.shape == (1, 1, dim) and bool(valid.all())
    assert_close(features[0].numpy(), reference[f"melody__{backend.model}__{layer}"], layer)


def test_unknown_layer_and_model():
    with pytest.raises(ValueError, match="layer must be one of"):
        mn.MusicnnBackend("MSD_musicnn", "musicnn-msd", layer="cnn3")
    with pytest.raises(ValueError, match="unknown musicnn model"):
        mn.checkpoint_dir("MSD_musicnn_big")


@needs_wheel
def test_loud_audio_stays_finite(clips, networks):
    """Full-scale and clipped (|x| up to 4) audio: numpy 2's float16 arithmetic overflows upstream, not here."""
    t = np.arange(4 * 16000) / 16000
    square = np.sign(np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    for clip in (clips["loud"], square, 4.0 * square):
        spectrogram = mn.log_mel(torch.from_numpy(clip)[None])
        assert torch.isfinite(spectrogram).all()
        result = mn.musicnn_features(clip, network=networks["MSD_musicnn"])
        assert all(np.isfinite(v).all() for v in (result.taggram, *result.features.values()))
    power = mel_filterbank(16000, 512, 96).numpy() @ np.abs(np.fft.rfft(
        np.hanning(513)[:-1] * square[:512])) ** 2
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":  # the upstream formula, as numpy 2 evaluates it
        with np.errstate(over="ignore"):
            assert np.isinf(np.log10(10000 * power.astype(np.float16) + 1)).any()


@needs_wheel
def test_shorter_than_one_patch(networks):
    backend = get_backend("musicnn-msd")
    assert backend.min_seconds == pytest.approx(2.976)
    noise = np.random.default_rng(1).standard_normal(mn.MIN_SAMPLES + 4000).astype(np.float32) * 0.1
    lengths = torch.tensor([mn.MIN_SAMPLES - 1, mn.MIN_SAMPLES, 16000])
    waveforms = torch.zeros(3, len(noise))
    for row, length in enumerate(lengths.tolist()):
        waveforms[row, :length] = torch.from_numpy(noise[:length])
    features, valid = backend.frames(waveforms, lengths)
    assert valid.tolist() == [[False], [True], [False]] and features.shape == (3, 1, 200)
    features, valid = backend.frames(waveforms[:1, :16000], lengths[2:])
    assert features.shape == (1, 0, 200) and valid.shape == (1, 0)

    short = noise[:16000]
    with pytest.raises(mn.ClipTooShortError, match="shorter than one"):
        mn.musicnn_features(short, repeat_short=False, network=networks["MSD_musicnn"])
    padded = mn.musicnn_features(short, network=networks["MSD_musicnn"])
    assert padded.repeat_padded and padded.taggram.shape == (1, 50)
    tiled = mn.log_mel(torch.from_numpy(short)[None])[0].repeat(4, 1)[:mn.PATCH_FRAMES]
    with torch.inference_mode():
        direct = networks["MSD_musicnn"](tiled[None])["taggram"].numpy()
    np.testing.assert_allclose(padded.taggram, direct, atol=1e-6)


@needs_wheel
def test_resampling_and_tags(clips, networks):
    import soxr

    clip = clips["melody"]
    at_44k = soxr.resample(clip, 16000, 44100).astype(np.float32)
    result = mn.musicnn_features(at_44k, sample_rate=44100, network=networks["MSD_musicnn"])
    direct = mn.musicnn_features(clip, network=networks["MSD_musicnn"])
    assert result.tags == mn.tag_names("MSD_musicnn") and result.tags[0] == "rock"
    np.testing.assert_allclose(result.taggram, direct.taggram, atol=0.02)


@needs_wheel
def test_weights_option_and_real_checkpoint(tmp_path):
    package = mn.musicnn_package_dir()
    assert mn.checkpoint_dir("MTT_vgg", weights=package) == package / "MTT_vgg"
    assert mn.checkpoint_dir("MTT_vgg", weights=package / "MTT_vgg") == package / "MTT_vgg"
    with pytest.raises(BackendUnavailableError, match="no MSD_musicnn checkpoint"):
        get_backend("musicnn-msd", weights=tmp_path)
    index = read_index(package / "MSD_musicnn")
    assert index.entries["conv2d_1/kernel"].shape == (7, 67, 1, 204)  # the 7 x 67 timbral filters
    assert len(index.entries) == 150  # the model's variables and their Adam slots


def test_missing_wheel_names_the_install_line(monkeypatch):
    monkeypatch.setattr(mn, "musicnn_package_dir", lambda: None)
    with pytest.raises(BackendUnavailableError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        get_backend("musicnn-msd")
    assert mn.tag_names("MSD_musicnn") is None
