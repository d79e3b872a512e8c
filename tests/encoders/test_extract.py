"""The extraction pipeline: pooling maths, robustness to bad files, formats, resume and sharding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from tunespace.audio.features import mfcc_stats
from tunespace.audio.stream import stream_segments
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.encoders.base import AudioBackend, backend_names, get_backend
from tunespace.encoders.extract import ExtractionConfig, ExtractionError, Extractor, load_skipped

RATE = 16000
HOP = 160  # the test backend's frame: 10 ms


class FrameMeans(AudioBackend):
    """Frames are non-overlapping 10 ms windows; features are (mean, mean of squares) of the samples.

    A frame is valid only if it lies wholly inside the real audio, so the pooled mean over a track can be computed
    by hand from the whole signal when segments are whole numbers of frames.
    """

    name = "frame-means"
    sample_rate = RATE
    dim = 2
    segment_seconds = 0.5
    min_seconds = HOP / RATE

    def __init__(self, fail_on_loud: bool = False) -> None:
        super().__init__("cpu")
        self.calls = 0
        self.fail_on_loud = fail_on_loud

    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        if self.fail_on_loud and bool((waveforms.abs() > 0.95).any()):
            raise RuntimeError("model exploded")
        usable = waveforms.shape[1] // HOP * HOP
        framed = waveforms[:, :usable].reshape(len(waveforms), -1, HOP)
        features = torch.stack([framed.mean(-1), framed.square().mean(-1)], dim=-1)
        valid = torch.arange(framed.shape[1])[None, :] < (lengths // HOP)[:, None]
        return features, valid


def tone(seconds: float, freq: float = 220.0, amplitude: float = 0.5, rate: int = RATE, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (amplitude * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def catalogue(tmp_path, signals: dict[str, np.ndarray | None]) -> pd.DataFrame:
    rows = []
    for track_id, signal in signals.items():
        path = f"audio/{track_id}.wav"
        if signal is not None:
            (tmp_path / "audio").mkdir(exist_ok=True)
            soundfile.write(tmp_path / path, signal, RATE, subtype="FLOAT")
        rows.append({"track_id": track_id, "audio_path": path})
    return pd.DataFrame(rows)


def expected_frame_means(signal: np.ndarray) -> np.ndarray:
    usable = len(signal) // HOP * HOP
    framed = signal[:usable].astype(np.float64).reshape(-1, HOP)
    return np.array([framed.mean(-1).mean(), np.square(framed).mean(-1).mean()])


def test_registry_knows_mfcc_and_rejects_unknown_names():
    assert "mfcc" in backend_names()
    with pytest.raises(Exception, match="unknown backend 'nope'"):
        get_backend("nope")


def test_pooled_mean_spans_segments_and_ignores_padding(tmp_path):
    # 2.3 s = four full 0.5 s segments and a 0.3 s remainder; batching pads the remainder with zeros
    signals = {"long": tone(2.3, amplitude=0.8), "short": tone(0.73, 330.0, seed=1)}
    tracks = catalogue(tmp_path, signals)
    for batch_size in (1, 3, 16):
        out = tmp_path / f"out{batch_size}"
        Extractor(ExtractionConfig("frame-means", batch_size=batch_size), FrameMeans()).run(tracks, tmp_path, out)
        embeddings = ItemEmbeddings.load(out)
        for row, track_id in enumerate(embeddings.ids):
            expected = expected_frame_means(signals[track_id])
            np.testing.assert_allclose(embeddings.vectors[row], expected, rtol=1e-5, atol=1e-8)


def test_mean_plus_std_pooling(tmp_path):
    signal = tone(1.7, amplitude=0.6)
    tracks = catalogue(tmp_path, {"a": signal})
    out = tmp_path / "out"
    Extractor(ExtractionConfig("frame-means", pooling="mean+std"), FrameMeans()).run(tracks, tmp_path, out)
    vector = ItemEmbeddings.load(out).vectors[0]
    framed = signal[: len(signal) // HOP * HOP].astype(np.float64).reshape(-1, HOP)
    features = np.stack([framed.mean(-1), np.square(framed).mean(-1)], axis=1)
    np.testing.assert_allclose(vector, np.concatenate([features.mean(0), features.std(0)]), rtol=1e-4, atol=1e-7)


def test_mfcc_backend_matches_whole_track_statistics(tmp_path):
    signals = {"a": tone(3.0), "b": tone(5.5, 440.0, seed=3)}
    tracks = catalogue(tmp_path, signals)
    out = tmp_path / "out"
    report = Extractor(ExtractionConfig("mfcc")).run(tracks, tmp_path, out)
    assert report.embedded == 2 and report.skipped == 0
    embeddings = ItemEmbeddings.load(out)
    assert embeddings.dim == 104
    for row, track_id in enumerate(embeddings.ids):
        reference = mfcc_stats(signals[track_id], RATE)
        np.testing.assert_allclose(embeddings.vectors[row], reference, rtol=1e-3, atol=1e-2)


def test_mfcc_refuses_std_pooling():
    with pytest.raises(ExtractionError, match="pooling 'mean'"):
        Extractor(ExtractionConfig("mfcc", pooling="mean+std"))


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_embedded(tmp_path):
    nan_signal = tone(1.0)
    nan_signal[100] = np.nan
    tracks = catalogue(tmp_path, {"good": tone(1.0), "silent": np.zeros(RATE, np.float32), "short": tone(0.005),
                                  "nan": nan_signal, "missing": None, "loud": tone(1.0, amplitude=0.99)})
    (tmp_path / "audio" / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    soundfile.write(tmp_path / "audio" / "empty.wav", np.zeros(0, np.float32), RATE)
    extra = pd.DataFrame({"track_id": ["corrupt", "empty", "nopath"],
                          "audio_path": ["audio/corrupt.wav", "audio/empty.wav", None]})
    tracks = pd.concat([tracks, extra], ignore_index=True)
    out = tmp_path / "out"
    report = Extractor(ExtractionConfig("frame-means", batch_size=4), FrameMeans(fail_on_loud=True)).run(
        tracks, tmp_path, out)
    assert report.embedded == 1 and report.skipped == len(tracks) - 1
    assert list(ItemEmbeddings.load(out).ids) == ["good"]
    reasons = load_skipped(out).set_index("track_id")["reason"]
    assert "silent" in reasons["silent"]
    assert reasons["short"] == "shorter than 0.5 s: 0.005 s"
    assert "non-finite" in reasons["nan"]
    assert reasons["missing"] == f"{tmp_path / 'audio' / 'missing.wav'}: missing file"
    assert "not audio" in reasons["corrupt"]
    assert "empty" in reasons["empty"] or "not audio" in reasons["empty"]
    assert reasons["nopath"] == "no audio_path"
    assert "backend failed: model exploded" in reasons["loud"]


@pytest.mark.parametrize(("fmt", "subtype", "rate"), [
    ("FLAC", "PCM_16", 44100), ("OGG", "VORBIS", 44100), ("OGG", "OPUS", 48000), ("MP3", "MPEG_LAYER_III", 44100)])
def test_compressed_formats_decode_resample_and_mix_down(tmp_path, fmt, subtype, rate):
    seconds = 2.0
    left = tone(seconds, 440.0, rate=rate)
    stereo = np.stack([left, left], axis=1)
    suffix = {"FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3"}[fmt]
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, stereo, rate, format=fmt, subtype=subtype)
    decoded = np.concatenate(list(stream_segments(path, RATE, RATE // 2)))
    assert abs(len(decoded) - seconds * RATE) < 0.1 * RATE  # codecs may pad a few milliseconds
    spectrum = np.abs(np.fft.rfft(decoded[: RATE]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # a 1 s window: bin = Hz


def test_stream_segments_of_a_long_file_equal_the_whole_resampled_signal(tmp_path):
    import soxr

    rate = 44100
    signal = tone(20.0, 300.0, rate=rate)
    soundfile.write(tmp_path / "long.wav", signal, rate, subtype="FLOAT")
    segments = list(stream_segments(tmp_path / "long.wav", RATE, 3 * RATE))
    assert all(len(s) == 3 * RATE for s in segments[:-1]) and len(segments) == 7
    whole = soxr.resample(signal, rate, RATE)
    streamed = np.concatenate(segments)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    np.testing.assert_allclose(streamed[1000:n - 1000], whole[1000:n - 1000], atol=1e-4)


class Crash(Exception):
    pass


class CrashingFrameMeans(FrameMeans):
    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.crash_at = crash_at

    def frames(self, waveforms, lengths):
        if self.calls == self.crash_at:
            raise Crash
        return super().frames(waveforms, lengths)


def test_resume_after_a_crash_gives_the_same_shards(tmp_path):
    signals = {f"t{i:02d}": tone(0.4 + 0.3 * (i % 4), 200 + 20 * i, seed=i) for i in range(11)}
    signals["t05"] = np.zeros(RATE, np.float32)  # a skipped one
    tracks = catalogue(tmp_path, signals)
    config = ExtractionConfig("frame-means", batch_size=2, shard_size=3, min_seconds=0.1)
    clean = tmp_path / "clean"
    Extractor(config, FrameMeans()).run(tracks, tmp_path, clean)
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        Extractor(config, CrashingFrameMeans(crash_at=5)).run(tracks, tmp_path, crashed)
    assert 0 < len(list(crashed.glob("shard-?????.parquet"))) < 4
    assert not list(crashed.glob("*.tmp"))
    report = Extractor(config, FrameMeans()).run(tracks, tmp_path, crashed)
    assert report.shards_reused >= 1
    for shard in sorted(clean.glob("shard-*.parquet")):
        assert pd.read_parquet(shard).equals(pd.read_parquet(crashed / shard.name)), shard.name
    assert load_skipped(crashed).equals(load_skipped(clean))


def test_workers_split_shards_and_together_equal_one_run(tmp_path):
    signals = {f"t{i}": tone(0.5, 200 + 30 * i, seed=i) for i in range(7)}
    tracks = catalogue(tmp_path, signals)
    config = ExtractionConfig("frame-means", shard_size=2)
    Extractor(config, FrameMeans()).run(tracks, tmp_path, tmp_path / "one")
    for worker in (0, 1):
        Extractor(config, FrameMeans()).run(tracks, tmp_path, tmp_path / "two", worker=worker, workers=2)
    one, two = ItemEmbeddings.load(tmp_path / "one"), ItemEmbeddings.load(tmp_path / "two")
    assert list(one.ids) == list(two.ids) == list(signals)
    np.testing.assert_array_equal(one.vectors, two.vectors)


def test_an_output_folder_of_another_extraction_is_refused(tmp_path):
    tracks = catalogue(tmp_path, {"a": tone(0.5)})
    Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, tmp_path / "out")
    with pytest.raises(ExtractionError, match="differs in .*pooling"):
        Extractor(ExtractionConfig("frame-means", pooling="mean+std"), FrameMeans()).run(
            tracks, tmp_path, tmp_path / "out")


def test_unreadable_paths_are_skipped_with_their_true_reason(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "notes.mp3").write_text("a text file, not audio\n")
    (tmp_path / "audio" / "folder.wav").mkdir()
    tracks = pd.DataFrame({"track_id": ["missing", "text", "folder", "blank", "nan"],
                           "audio_path": ["audio/missing.wav", "audio/notes.mp3", "audio/folder.wav", "", np.nan]})
    out = tmp_path / "out"
    report = Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, out)
    assert report.skipped == 5 and report.embedded == 0
    skipped = load_skipped(out).set_index("track_id")
    assert skipped.loc["missing", "reason"] == f"{tmp_path / 'audio' / 'missing.wav'}: missing file"
    assert skipped.loc["text", "reason"] == f"{tmp_path / 'audio' / 'notes.mp3'}: not audio (no audio format recognised)"
    assert skipped.loc["folder", "reason"] == f"{tmp_path / 'audio' / 'folder.wav'}: is a directory"
    assert skipped["kind"].to_dict() == {"missing": "missing file", "text": "not audio", "folder": "is a directory",
                                         "blank": "no audio_path", "nan": "no audio_path"}


def test_mfcc_skips_clips_shorter_than_the_minimum_duration(tmp_path):
    tracks = catalogue(tmp_path, {"truncated": tone(0.18), "clip": tone(0.2), "song": tone(1.5)})
    out = tmp_path / "out"
    report = Extractor(ExtractionConfig("mfcc", min_seconds=1.0)).run(tracks, tmp_path, out)
    assert (report.embedded, report.skipped) == (1, 2)
    assert list(ItemEmbeddings.load(out).ids) == ["song"]
    skipped = load_skipped(out).set_index("track_id")
    assert skipped["reason"].to_dict() == {"truncated": "shorter than 1.0 s: 0.18 s", "clip": "shorter than 1.0 s: 0.2 s"}
    assert set(skipped["kind"]) == {"shorter than 1.0 s"}
    # the default minimum is 0.5 s, and a lower one embeds the clips (the backend's own floor is two 10 ms hops)
    assert Extractor(ExtractionConfig("mfcc")).min_track_seconds == 0.5
    lower = Extractor(ExtractionConfig("mfcc", min_seconds=0.1)).run(tracks, tmp_path, tmp_path / "lower")
    assert (lower.embedded, lower.skipped) == (3, 0)
    with pytest.raises(ExtractionError, match="min_seconds"):
        ExtractionConfig("mfcc", min_seconds=-1.0)


def test_a_minimum_duration_change_refuses_the_old_folder_but_an_older_manifest_resumes(tmp_path):
    import json

    tracks = catalogue(tmp_path, {"a": tone(0.6)})
    out = tmp_path / "out"
    Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, out)
    with pytest.raises(ExtractionError, match="differs in min_seconds"):
        Extractor(ExtractionConfig("frame-means", min_seconds=1.0), FrameMeans()).run(tracks, tmp_path, out)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["min_seconds"]  # written before the key existed
    (out / "manifest.json").write_text(json.dumps(manifest))
    report = Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, out)
    assert report.shards_reused == 1


def test_a_tracks_table_without_audio_path_is_one_clear_error(tmp_path):
    from tunespace.errors import DataValidationError

    tracks = pd.DataFrame({"track_id": ["a"], "title": ["A"]})
    with pytest.raises(DataValidationError) as caught:
        Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, tmp_path / "out",
                                                                     source="data/tracks.parquet")
    message = str(caught.value)
    assert message.startswith('data/tracks.parquet, column "audio_path": missing column') and "\n" not in message
    assert "columns present: track_id, title" in message
    tracks.to_parquet(tmp_path / "tracks.parquet")  # without `source`, the table in the root folder is named
    with pytest.raises(DataValidationError, match=f"^{tmp_path / 'tracks.parquet'}, column"):
        Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_crash_mid_shard_resumes_from_the_checkpoint_with_byte_identical_shards(tmp_path):
    signals = {f"t{i:02d}": tone(0.3 + 0.25 * (i % 3), 200 + 15 * i, seed=i) for i in range(10)}
    signals["t04"] = np.zeros(RATE // 2, np.float32)  # a skipped one before the checkpoint
    signals["t08"] = np.zeros(RATE // 2, np.float32)  # and one after it
    tracks = catalogue(tmp_path, signals)
    config = ExtractionConfig("frame-means", batch_size=2, min_seconds=0.1, checkpoint_tracks=3,
                              checkpoint_seconds=1e9)  # one shard of 10 tracks, checkpoints after 3, 6 and 9
    clean_backend = FrameMeans()
    Extractor(config, clean_backend).run(tracks, tmp_path, tmp_path / "clean")
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        Extractor(config, CrashingFrameMeans(crash_at=clean_backend.calls - 2)).run(tracks, tmp_path, crashed)
    assert not (crashed / "shard-00000.parquet").exists() and (crashed / "partial-00000.parquet").exists()
    assert len(pd.read_parquet(crashed / "partial-00000.parquet")) == 6  # the crash came before the third
    resumed_backend = FrameMeans()
    report = Extractor(config, resumed_backend).run(tracks, tmp_path, crashed)
    assert report.shards_written == 1 and resumed_backend.calls < clean_backend.calls / 2
    assert not (crashed / "partial-00000.parquet").exists()
    for name in ("shard-00000.parquet", "shard-00000.skipped.parquet"):
        assert (crashed / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert (report.embedded, report.skipped) == (8, 2)
    assert list(ItemEmbeddings.load(crashed).ids) == [t for t in signals if t not in ("t04", "t08")]


def test_a_grown_catalogue_embeds_only_the_new_tracks(tmp_path):
    signals = {f"t{i}": tone(0.6, 200 + 30 * i, seed=i) for i in range(8)}
    tracks = catalogue(tmp_path, signals)
    config = ExtractionConfig("frame-means", batch_size=1)
    out = tmp_path / "out"
    first = FrameMeans()
    Extractor(config, first).run(tracks.iloc[:5], tmp_path, out)
    assert first.calls == 5 * 2  # two 0.5 s segments a track, one per batch
    grown = FrameMeans()
    report = Extractor(config, grown).run(tracks.sample(frac=1.0, random_state=1), tmp_path, out)  # order is free
    assert grown.calls == 3 * 2 and (report.shards_reused, report.shards_written, report.embedded) == (1, 1, 3)
    loaded = ItemEmbeddings.load(out)
    assert sorted(loaded.ids) == sorted(signals) and len(loaded.ids) == 8
    again = FrameMeans()
    assert Extractor(config, again).run(tracks, tmp_path, out).shards_reused == 2 and again.calls == 0
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tracks"] == 8 and manifest["batches"] == [5, 3] and manifest["shards"] == 2


def test_a_removed_or_changed_track_is_refused_with_one_line(tmp_path):
    tracks = catalogue(tmp_path, {"a": tone(0.6), "b": tone(0.6, 300.0), "c": tone(0.6, 400.0)})
    out = tmp_path / "out"
    Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, out)
    with pytest.raises(ExtractionError, match=r"^[^\n]*track 'b' of this folder is no longer in the tracks table"):
        Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks.drop(index=1), tmp_path, out)
    moved = tracks.assign(audio_path=tracks["audio_path"].replace("audio/c.wav", "audio/c2.wav"))
    with pytest.raises(ExtractionError, match=r"^[^\n]*track 'c' changed its audio_path"):
        Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(moved, tmp_path, out)


def test_a_folder_from_before_the_catalogue_file_grows_when_its_tracks_come_first(tmp_path):
    tracks = catalogue(tmp_path, {f"t{i}": tone(0.6, 200 + 30 * i, seed=i) for i in range(4)})
    out = tmp_path / "out"
    Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks.iloc[:2], tmp_path, out)
    (out / "catalogue.parquet").unlink()  # written by an older version
    with pytest.raises(ExtractionError, match="not the first rows"):
        Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks.iloc[::-1], tmp_path, out)
    report = Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, out)
    assert (report.shards_reused, report.embedded) == (1, 2)
    assert list(ItemEmbeddings.load(out).ids) == ["t0", "t1", "t2", "t3"]


def test_loaders_count_the_shards_a_grown_manifest_promises():
    from tunespace.data.embeddings import expected_shards

    assert expected_shards({"tracks": 8, "shard_size": 256}) == 1  # a folder that never grew
    assert expected_shards({"tracks": 8, "shard_size": 256, "shards": 2}) == 2  # 5 tracks, then 3 more


def test_a_null_audio_path_read_from_parquet_is_no_audio_path(tmp_path):
    pd.DataFrame({"track_id": ["a"], "audio_path": pd.array([None], dtype="string")}).to_parquet(
        tmp_path / "tracks.parquet")
    tracks = pd.read_parquet(tmp_path / "tracks.parquet")
    assert tracks["audio_path"].iloc[0] is pd.NA
    Extractor(ExtractionConfig("frame-means"), FrameMeans()).run(tracks, tmp_path, tmp_path / "out")
    assert load_skipped(tmp_path / "out")["reason"].tolist() == ["no audio_path"]
