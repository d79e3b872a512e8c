"""`htcl finetune --preset listener` is the README's recipe; explicit flags and --set override it; the defaults
without a preset are unchanged."""

from __future__ import annotations

import pytest

from tunespace.cli import htcl as htcl_cli
from tunespace.cli.main import main
from tunespace.contrastive.htcl import load_config, save_config


@pytest.fixture
def captured(tmp_path, monkeypatch):
    init = tmp_path / "s1"
    init.mkdir()
    save_config(load_config("tiny"), init / "config.yaml")
    (init / "last.pt").write_bytes(b"")  # training itself is replaced below: only the folder's shape matters
    seen = {}
    monkeypatch.setattr(htcl_cli, "train_recorded", lambda config, *args: seen.setdefault("config", config))
    return init, seen


def finetune(init, *extra):
    return main(["htcl", "finetune", "--data", str(init), "--init", str(init), "--out", str(init.parent / "s2"),
                 *extra])


def test_the_listener_preset_is_the_readme_recipe(captured):
    init, seen = captured
    assert finetune(init, "--preset", "listener") == 0
    config = seen["config"]
    assert list(config.stage.preference_sources) == ["listener"] and config.stage.tune == "head"
    assert config.stage.semantic_weight == 0.1 and config.stage.popularity_correction == 1.0
    assert config.stage.learn_popularity and config.audio.adapter_hidden == 256
    assert (config.train.batch_size, config.train.lr, config.train.warmup_steps, config.train.steps) == \
        (256, 0.001, 100, 2000)


def test_explicit_flags_and_set_override_the_preset(captured):
    init, seen = captured
    assert finetune(init, "--preset", "listener", "--lambda", "0.5", "--steps", "10",
                    "--set", "train.batch_size=32") == 0
    config = seen["config"]
    assert config.stage.semantic_weight == 0.5 and config.train.steps == 10 and config.train.batch_size == 32
    assert list(config.stage.preference_sources) == ["listener"]


def test_without_a_preset_the_defaults_are_unchanged_and_an_unknown_preset_is_refused(captured):
    init, seen = captured
    assert finetune(init) == 0
    config = seen["config"]
    assert list(config.stage.preference_sources) == ["session", "playlist"] and config.stage.tune == "all"
    assert config.stage.semantic_weight == 0.5 and not config.stage.learn_popularity
    assert finetune(init, "--preset", "fast") == 1


def test_playlist_and_editorial_pair_sources_are_accepted(captured):
    from tunespace.contrastive.pairs import PAIR_SOURCES

    init, seen = captured
    names = ["artist", "album", "playlist-random", "playlist-top", "playlist-emb"]
    assert finetune(init, "--pairs", ",".join(names)) == 0
    sources = seen["config"].stage.preference_sources
    assert list(sources) == names and sources["playlist-top"] == {"weight": 1.0, "top": 10, "min_count": 2}
    assert all(name in PAIR_SOURCES for name in names)  # each is a registered source the stage can build


def test_init_takes_the_run_folder_or_its_checkpoint(captured, tmp_path, capsys):
    init, seen = captured

    def run(start):
        return main(["htcl", "finetune", "--data", str(init), "--init", str(start), "--out", str(tmp_path / "s2")])

    assert run(init / "last.pt") == 0 and "config" in seen
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(empty) == 1
    assert "not a stage-1 run folder" in capsys.readouterr().out
