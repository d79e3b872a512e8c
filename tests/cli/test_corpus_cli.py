"""`tunespace corpus build` with listener parameters: every one lands in build.json and a changed one changes the log.

Six tunes and ten listeners keep each build to a few seconds; the second build reuses the first one's renders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pandas as pd
import pytest

from tunespace.cli.main import main
from tunespace.corpus.build import START
from tunespace.corpus.listeners import ListenerConfig

pytest.importorskip("tinysoundfont")

TINY = ["corpus", "build", "--tracks", "6", "--listeners", "10"]


def build(out, *extra: str) -> tuple[dict, pd.DataFrame]:
    assert main([*TINY, "--out", str(out), *extra]) == 0
    return json.loads((out / "build.json").read_text()), pd.read_parquet(out / "interactions.parquet")


def test_listener_parameters_are_recorded_and_change_the_log(tmp_path, capsys):
    out = tmp_path / "c"
    report, default_log = build(out)
    assert report["config"]["listener"] == {}
    assert report["listener_config"] == asdict(ListenerConfig(users=10, start=START, seed=0))
    assert {f.name for f in fields(ListenerConfig)} == set(report["listener_config"])

    report, changed_log = build(out, "--temperature", "3", "--latent-weight", "0", "--zipf-exponent", "1.2",
                                "--listener-option", "favoured_values=2", "--listener-option", "playlist-share=0.1")
    assert report["rendered_now"] == 0  # same tunes, cached renders: only the listeners differ
    changed = {"temperature": 3.0, "latent_weight": 0.0, "zipf_exponent": 1.2, "favoured_values": 2,
               "playlist_share": 0.1}
    assert report["config"]["listener"] == changed
    expected = asdict(ListenerConfig(users=10, start=START, seed=0, **changed))
    assert report["listener_config"] == expected
    assert isinstance(report["listener_config"]["favoured_values"], int)
    assert not changed_log.equals(default_log)
    users = pd.read_parquet(out / "users.parquet")
    assert users["style_favourites"].map(len).le(2).all()
    assert "temperature=3.0" in capsys.readouterr().out
    record = json.loads((out / "provenance.json").read_text())
    assert record["status"] == "ok" and record["settings"]["listener"] == changed
    assert record["figures"]["interactions"] == report["interactions"]


@pytest.mark.parametrize("extra, said", [
    (["--listener-option", "users=5"], "set by the corpus"),
    (["--listener-option", "seed=5"], "set by the corpus"),
    (["--listener-option", "nonsense=1"], "unknown listener parameter 'nonsense'"),
    (["--listener-option", "favoured_values=2.5"], "whole number"),
    (["--listener-option", "temperature=warm"], "not a number"),
    (["--temperature", "0"], "temperature=0.0"),
    (["--semantic-weight", "-1"], "semantic_weight=-1.0"),
])
def test_bad_listener_parameters_fail_before_rendering(tmp_path, capsys, extra, said):
    out = tmp_path / "c"
    assert main([*TINY, "--out", str(out), *extra]) == 1
    assert said in capsys.readouterr().out
    assert not (out / "audio").exists() and not (out / "build.json").exists()


def test_a_parameter_given_twice_is_a_usage_error(tmp_path, capsys):
    code = main([*TINY, "--out", str(tmp_path / "c"), "--temperature", "2", "--listener-option", "temperature=3"])
    assert code == 2
    assert "temperature" in capsys.readouterr().out


def test_relisten_remakes_the_log_under_changed_parameters(tmp_path, capsys):
    source, out = tmp_path / "c", tmp_path / "latent0"
    built, source_log = build(source, "--temperature", "2")
    assert main(["corpus", "relisten", str(source), "--out", str(out), "--latent-weight", "0",
                 "--listener-option", "favoured_values=2"]) == 0
    said = capsys.readouterr().out
    assert "10 listeners" in said and "latent_weight 1.0 -> 0.0" in said and "favoured_values 3 -> 2" in said
    report = json.loads((out / "build.json").read_text())
    assert report["listener_config"] == {**built["listener_config"], "latent_weight": 0.0, "favoured_values": 2}
    assert report["relistened_from"]["listener_config"] == built["listener_config"]
    assert not pd.read_parquet(out / "interactions.parquet").equals(source_log)
    assert (out / "tracks.parquet").read_bytes() == (source / "tracks.parquet").read_bytes()
    record = json.loads((out / "provenance.json").read_text())
    assert record["status"] == "ok" and record["settings"]["listener"] == {"latent_weight": 0.0, "favoured_values": 2}
    assert record["figures"]["interactions"] == report["interactions"]

    assert main(["corpus", "relisten", str(source), "--out", str(tmp_path / "again")]) == 0
    assert "changed: none" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again" / "interactions.parquet"), source_log)

    assert main(["corpus", "relisten", str(source), "--out", str(out)]) == 1
    assert "not an empty folder" in capsys.readouterr().out
    assert main(["corpus", "relisten", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 1
    assert "build.json: not found" in capsys.readouterr().out
    code = main(["corpus", "relisten", str(source), "--out", str(tmp_path / "x"), "--latent-weight", "0",
                 "--listener-option", "latent_weight=1"])
    assert code == 2 and "latent_weight" in capsys.readouterr().out
    assert not (tmp_path / "x").exists()
