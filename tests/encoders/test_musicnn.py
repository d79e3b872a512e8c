"""The torch MusiCNN against the reference musicnn 0.1.0 (TensorFlow) outputs in fixtures/musicnn_reference.npz.

The weights are the safetensors files packaged in tunespace/encoders/weights/musicnn, converted from the TF1
checkpoints of musicnn 0.1.0; the tests that compare them with those checkpoints need the musicnn wheel
(`pip install --no-deps musicnn==0.1.0`) and are skipped without it.

Every comparison reports its largest |torch - TensorFlow| difference: printed per output (`pytest -rA`), attached as
a user property (junit XML), and, with TUNESPACE_RECORD_PARITY=1 (or a folder), written with the run's provenance
to bench/results/musicnn_parity-<UTC time>.json (or that folder), the record the README's parity figures cite:

    TUNESPACE_RECORD_PARITY=1 python -m pytest tests/encoders/test_musicnn.py -q -rA
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tunespace.audio.features import mel_filterbank
from tunespace.encoders import musicnn as mn
from tunespace.encoders.base import BackendUnavailableError, get_backend
from tunespace.encoders.tf_checkpoint import read_index
from tunespace.provenance import bench_record_path, recorded_run

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]
needs_wheel = pytest.mark.skipif(importlib.util.find_spec("musicnn") is None,
                                 reason="musicnn TF1 checkpoints not installed: pip install --no-deps musicnn==0.1.0")
needs_weights = pytest.mark.skipif(not all((mn.WEIGHTS_DIR / f"{m}.safetensors").is_file() for m in mn.MODELS)
                                   and importlib.util.find_spec("musicnn") is None,
                                   reason="neither the packaged musicnn weights nor the musicnn wheel are installed")
# Absolute tolerances on |torch - TensorFlow|, per architecture and output: twice the largest difference measured
# over the fixture's clips and every test below, rounded up to one significant digit. Measured (Intel Xeon, torch
# 2.13 on one thread; the same on two): musicnn taggram 2.4e-6, penultimate 1.5e-5, mean pool 8.2e-5, max pool
# 2.8e-4 (values up to 118; under 3e-6 of the largest); vgg taggram 1.4e-6, penultimate (pool5) 3.8e-5. Float32
# rounding over a deep network differs between TensorFlow and torch; it grows with the size of the values.
TOLERANCE = {("musicnn", "taggram"): 5e-6, ("musicnn", "penultimate"): 4e-5, ("musicnn", "mean_pool"): 2e-4,
             ("musicnn", "max_pool"): 6e-4, ("vgg", "taggram"): 3e-6, ("vgg", "penultimate"): 8e-5}
MEASURED: dict[tuple[str, str], dict[str, float]] = {}
"""(model, output) -> the largest |difference| and |reference| seen in this session's comparisons."""
FRONT_END: dict[str, float] = {}
"""The log-mel front end against librosa's: the largest |difference| and the share of values within 1e-5."""


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


def _architecture(model: str) -> str:
    return "vgg" if model.endswith("vgg") else "musicnn"


def parity_figures() -> dict:
    """The measured differences per model and output, and per architecture and output against its tolerance."""
    worst: dict[str, dict] = {}
    for (model, output), seen in sorted(MEASURED.items()):
        key = f"{_architecture(model)} {output}"
        if key not in worst or seen["max_abs_difference"] > worst[key]["max_abs_difference"]:
            worst[key] = {**seen, "model": model, "tolerance": TOLERANCE[_architecture(model), output]}
    for entry in worst.values():
        entry["relative_to_largest_reference"] = entry["max_abs_difference"] / entry["largest_reference"]
        entry["margin"] = entry["tolerance"] / max(entry["max_abs_difference"], 1e-30)
    return {"by_output": worst, "by_model": {f"{model} {output}": seen for (model, output), seen
                                             in sorted(MEASURED.items())}, "log_mel": dict(FRONT_END)}


def _parity_summary() -> str:
    lines = ["largest |torch - TensorFlow| per output over the fixture (tolerance, largest |reference|):"]
    for key, entry in parity_figures()["by_output"].items():
        lines.append(f"  {key:<20} {entry['max_abs_difference']:.2e} (tolerance {entry['tolerance']:.0e}, "
                     f"{entry['margin']:.1f}x margin; {entry['model']}; |reference| up to "
                     f"{entry['largest_reference']:.3g}, {entry['relative_to_largest_reference']:.1e} of it)")
    if FRONT_END:
        lines.append(f"  {'log-mel front end':<20} {FRONT_END['max_abs_difference']:.2e} (tolerance 1e-03, one float16 "
                     f"step; at least {FRONT_END['least_share_within_1e-5']:.2%} of the values within 1e-5)")
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def parity_record(request, single_thread):
    """Collects the differences the tests measure; prints them at the end, and records them when asked to (the
    record's `tests_failed` counts this module's failures: its status only says whether recording worked)."""
    MEASURED.clear()
    FRONT_END.clear()
    failed_before = request.session.testsfailed
    target = os.environ.get("TUNESPACE_RECORD_PARITY", "")
    if target.lower() in ("", "0", "false", "no"):
        yield
        if MEASURED:
            print("\n" + _parity_summary())
        return
    folder = ROOT / "bench" / "results" if target.lower() in ("1", "true", "yes") else Path(target)
    fixture = FIXTURES / "musicnn_reference.npz"
    path = bench_record_path("musicnn_parity", folder)
    with recorded_run(path) as record:
        with np.load(fixture) as data:
            reference_environment = json.loads(str(data["versions"]))
        tolerances = {f"{architecture} {output}": value for (architecture, output), value in TOLERANCE.items()}
        record["environment"] = {"TUNESPACE_RECORD_PARITY": target}
        record["settings"] = {"fixture": str(fixture.relative_to(ROOT)),
                              "fixture_sha256": hashlib.sha256(fixture.read_bytes()).hexdigest(),
                              "reference_environment": reference_environment, "clips": list(RECIPE.CLIPS),
                              "torch_threads": torch.get_num_threads(), "tolerances": tolerances}
        yield
        record["figures"] = parity_figures()
        record["tests_failed"] = request.session.testsfailed - failed_before
        if not MEASURED:
            record["skipped"] = "no comparison ran (musicnn wheel not installed, or deselected)"
    print("\n" + _parity_summary() + f"\nprovenance record: {path}")


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


def assert_close(ours: np.ndarray, theirs: np.ndarray, model: str, output: str, what: str = "",
                 record_property=None) -> float:
    """Max |ours - theirs| within the tolerance of the model's architecture and output; noted in MEASURED, printed,
    and attached to the test as a property when `record_property` is given."""
    what = what or f"{model} {output}"
    assert ours.shape == theirs.shape, what
    difference = float(np.abs(ours - theirs).max())
    seen = MEASURED.setdefault((model, output), {"max_abs_difference": 0.0, "largest_reference": 0.0})
    seen["max_abs_difference"] = max(seen["max_abs_difference"], difference)
    seen["largest_reference"] = max(seen["largest_reference"], float(np.abs(theirs).max()))
    tolerance = TOLERANCE[_architecture(model), output]
    print(f"{what}: max |difference| {difference:.2e} (tolerance {tolerance:.0e})")
    if record_property is not None:
        record_property(f"max_abs_difference {what}", difference)
    assert difference <= tolerance, f"{what}: max |difference| {difference:.2e} > {tolerance:.0e}"
    return difference


def test_front_end_matches_librosa_reference(reference, clips, record_property):
    """The reference rounds through float16, so a value on a rounding boundary may land one float16 step away
    (1e-3 at these magnitudes); almost all agree to float32 rounding (measured: all, within 4.8e-7)."""
    for name, clip in clips.items():
        ours = mn.log_mel(torch.from_numpy(clip)[None])[0, :RECIPE.LOGMEL_FRAMES].numpy()
        difference = np.abs(ours - reference[f"{name}__logmel"])
        FRONT_END["max_abs_difference"] = max(FRONT_END.get("max_abs_difference", 0.0), float(difference.max()))
        FRONT_END["least_share_within_1e-5"] = min(FRONT_END.get("least_share_within_1e-5", 1.0),
                                                   float(np.mean(difference < 1e-5)))
        print(f"{name} log-mel: max |difference| {difference.max():.2e}, {np.mean(difference < 1e-5):.2%} within 1e-5")
        record_property(f"max_abs_difference {name} log-mel", float(difference.max()))
        np.testing.assert_allclose(ours, reference[f"{name}__logmel"], atol=1e-3, rtol=0)  # one float16 step
        assert np.mean(difference < 1e-5) > 0.999


@needs_weights
@pytest.mark.parametrize("model", mn.MODELS)
def test_parity_with_tensorflow_reference(reference, clips, networks, model, record_property):
    for name, clip in clips.items():
        result = mn.musicnn_features(clip, model=model, network=networks[model])
        prefix = f"{name}__{model}__"
        assert not result.repeat_padded and len(result.tags) == 50
        assert_close(result.taggram, reference[prefix + "taggram"], model, "taggram", prefix + "taggram",
                     record_property)
        for layer, values in result.features.items():
            assert_close(values, reference[prefix + layer], model, layer, prefix + layer, record_property)
        assert set(result.features) == ({"penultimate"} if model.endswith("vgg")
                                        else {"penultimate", "mean_pool", "max_pool"})


@needs_weights
def test_every_patch_has_its_own_penultimate(reference, clips, networks):
    """The upstream extractor repeats the first patch's penultimate values; the port must not."""
    result = mn.musicnn_features(clips["loud"], model="MSD_musicnn", network=networks["MSD_musicnn"])
    penultimate = result.features["penultimate"]
    assert len(penultimate) == 3 and np.abs(penultimate[1:] - penultimate[:1]).max() > 0.1
    assert_close(penultimate, reference["loud__MSD_musicnn__penultimate"], "MSD_musicnn", "penultimate")


@needs_weights
def test_backend_contract_and_batching(reference, clips, record_property):
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
        assert_close(features[row][valid[row]].numpy(), reference[f"{name}__MSD_musicnn__penultimate"],
                     "MSD_musicnn", "penultimate", f"{name} batched", record_property)
    mean = features[valid].mean(dim=0, keepdim=True).numpy()
    assert backend.finalize(mean, np.array([6])).shape == (1, 200)


@needs_weights
@pytest.mark.parametrize("name,layer,dim", [("musicnn-mtt", "taggram", 50), ("musicnn-msd", "max_pool", 753),
                                            ("musicnn-mtt", "mean_pool", 753), ("vgg-msd", "penultimate", 256),
                                            ("vgg-mtt", "taggram", 50)])
def test_layers(reference, clips, name, layer, dim, record_property):
    backend = get_backend(name, layer=layer)
    clip = clips["melody"]
    features, valid = backend.frames(torch.from_numpy(clip)[None], torch.tensor([len(clip)]))
    assert backend.dim == dim and features.shape == (1, 1, dim) and bool(valid.all())
    assert_close(features[0].numpy(), reference[f"melody__{backend.model}__{layer}"], backend.model, layer,
                 f"melody {name} {layer}", record_property)


def test_unknown_layer_and_model():
    with pytest.raises(ValueError, match="layer must be one of"):
        mn.MusicnnBackend("MSD_musicnn", "musicnn-msd", layer="cnn3")
    with pytest.raises(ValueError, match="unknown musicnn model"):
        mn.checkpoint_dir("MSD_musicnn_big")


@needs_weights
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


@needs_weights
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


@needs_weights
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
    with pytest.raises(BackendUnavailableError, match="no MSD_musicnn weights"):
        get_backend("musicnn-msd", weights=tmp_path)
    index = read_index(package / "MSD_musicnn")
    assert index.entries["conv2d_1/kernel"].shape == (7, 67, 1, 204)  # the 7 x 67 timbral filters
    assert len(index.entries) == 150  # the model's variables and their Adam slots


def test_missing_weights_name_the_install_line(monkeypatch, tmp_path):
    monkeypatch.setattr(mn, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(mn, "musicnn_package_dir", lambda: None)
    with pytest.raises(BackendUnavailableError, match=r"musicnn weights are not installed.*reinstall tunespace"):
        get_backend("musicnn-msd")
    with pytest.raises(BackendUnavailableError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        mn.checkpoint_dir("MSD_musicnn")
    assert mn.tag_names("MSD_musicnn")[0] == "rock" and mn.tag_names("MTT_vgg")[0] == "guitar"


@needs_weights
def test_packaged_weights_load_without_the_wheel(monkeypatch):
    """The default weights are the packaged safetensors files: no musicnn wheel is needed."""
    monkeypatch.setattr(mn, "musicnn_package_dir", lambda: None)
    assert mn.weights_path("MTT_musicnn") == mn.WEIGHTS_DIR / "MTT_musicnn.safetensors"
    backend = get_backend("musicnn-mtt", layer="taggram")
    noise = np.random.default_rng(0).standard_normal(mn.MIN_SAMPLES).astype(np.float32) * 0.1
    features, valid = backend.frames(torch.from_numpy(noise)[None], torch.tensor([len(noise)]))
    assert features.shape == (1, 1, 50) and bool(valid.all()) and bool(((features > 0) & (features < 1)).all())


def test_packaged_weights_are_small_and_licensed():
    files = sorted(mn.WEIGHTS_DIR.glob("*.safetensors"))
    assert [f.stem for f in files] == sorted(mn.MODELS)
    assert sum(f.stat().st_size for f in files) < 20e6  # about 11 MB for the four models
    notice = (mn.WEIGHTS_DIR / "LICENSE").read_text()
    assert "ISC" in notice and "Permission to use, copy, modify" in notice
    for f in files:
        metadata = mn.safetensors_metadata(f)
        assert metadata["model"] == f.stem and metadata["license"].startswith("ISC")
        assert json.loads(metadata["tags"]) == mn.tag_names(f.stem)


@needs_wheel
@pytest.mark.parametrize("model", mn.MODELS)
def test_packaged_weights_equal_tf1_checkpoints(model, tmp_path):
    """The conversion's parity: every variable of the packaged file equals the TF1 checkpoint's, bit for bit, and a
    fresh conversion gives the same tensors and metadata; all three load to networks with identical outputs."""
    from safetensors.numpy import load_file

    from tunespace.encoders.tf_checkpoint import read_checkpoint

    packaged = load_file(str(mn.WEIGHTS_DIR / f"{model}.safetensors"))
    names = (mn.Vgg if model.endswith("vgg") else mn.MusiCNN).variable_names()
    original = read_checkpoint(mn.checkpoint_dir(model), names=names)
    assert sorted(packaged) == sorted(original) == sorted(names)
    for name in names:
        assert packaged[name].dtype == original[name].dtype == np.float32
        np.testing.assert_array_equal(packaged[name], original[name], err_msg=name)
    (converted,) = mn.convert_musicnn_checkpoints(tmp_path, models=[model])
    fresh = load_file(str(converted))
    assert all(np.array_equal(fresh[name], packaged[name]) for name in names)
    assert mn.safetensors_metadata(converted) == mn.safetensors_metadata(mn.WEIGHTS_DIR / f"{model}.safetensors")
    patches = torch.randn(2, mn.PATCH_FRAMES, mn.N_MELS, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        from_tf = mn.load_model(model, weights=mn.musicnn_package_dir())(patches)
        from_safetensors = mn.load_model(model)(patches)
        from_file = mn.load_model(model, weights=converted)(patches)
    for key, value in from_tf.items():
        assert torch.equal(value, from_safetensors[key]) and torch.equal(value, from_file[key]), key


@needs_wheel
def test_tf1_checkpoints_are_the_fallback(monkeypatch, tmp_path):
    monkeypatch.setattr(mn, "WEIGHTS_DIR", tmp_path)
    package = mn.musicnn_package_dir()
    assert mn.weights_path("MSD_vgg") == package / "MSD_vgg"
    assert mn.weights_path("MSD_vgg", weights=package) == package / "MSD_vgg"
    with pytest.raises(BackendUnavailableError, match="no MSD_vgg weights"):
        mn.weights_path("MSD_vgg", weights=tmp_path)
