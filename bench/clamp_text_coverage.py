"""How well the offline text tower reads English, German and Chinese captions: the packaged MiniLM against MiniLM
with its vocabulary extended from training captions (`tunespace.encoders.clamp_text`).

    python bench/clamp_text_coverage.py --captions /work/runs/corpus-medium/captions.parquet [--train-share 0.8]

Tracks are split at random (seeded): the extension is learned from the captions of the training tracks, and
coverage is measured on the captions of the other tracks, per language: the share of tokens that are [UNK], the
share of captions with any [UNK], and mean tokens per caption. The extended tower is written to a temporary folder
(or `--out`) and its tokenizer read back from there, so the figures are those of the saved tower. Writes a
provenance record to `--results` (default bench/results).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.encoders.clamp_text import VocabularyExtensionConfig, extend_text_model, token_coverage
from tunespace.provenance import bench_record_path, recorded_run


def split_tracks(captions: pd.DataFrame, train_share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    tracks = np.sort(captions["track_id"].unique())
    rng = np.random.default_rng(seed)
    train = set(rng.permutation(tracks)[: round(train_share * len(tracks))])
    in_train = captions["track_id"].isin(train)
    return captions[in_train], captions[~in_train]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=Path, required=True, help="Parquet with track_id, language, text")
    parser.add_argument("--base", default="minilm", help='"minilm" or a local BERT-family folder')
    parser.add_argument("--train-share", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=VocabularyExtensionConfig.vocab_size)
    parser.add_argument("--min-frequency", type=int, default=VocabularyExtensionConfig.min_frequency)
    parser.add_argument("--out", type=Path, default=None, help="keep the extended tower here")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from tunespace.encoders.text import resolve_model_dir

    captions = pd.read_parquet(args.captions, columns=["track_id", "language", "text"])
    train, held_out = split_tracks(captions, args.train_share, args.seed)
    config = VocabularyExtensionConfig(vocab_size=args.vocab_size, min_frequency=args.min_frequency)
    settings = {**vars(args), "train_tracks": int(train["track_id"].nunique()),
                "held_out_tracks": int(held_out["track_id"].nunique()), "train_captions": len(train)}
    with recorded_run(bench_record_path(__file__, args.results), extra={"settings": settings}) as record, \
            tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "extended"
        extension = extend_text_model(args.base, train["text"].tolist(), out, config)
        tokenizers = {"base": AutoTokenizer.from_pretrained(resolve_model_dir(args.base), local_files_only=True),
                      "extended": AutoTokenizer.from_pretrained(out, local_files_only=True)}
        figures: dict[str, dict[str, dict[str, float]]] = {}
        for language, rows in held_out.groupby("language"):
            figures[str(language)] = {name: token_coverage(tokenizer, rows["text"].tolist()).summary()
                                      for name, tokenizer in tokenizers.items()}
            for name, row in figures[str(language)].items():
                print(f"{language} {name:9s} [UNK] {row['unknown_share']:7.2%} of tokens, "
                      f"{row['texts_with_unknown_share']:7.2%} of captions; {row['tokens_per_text']:5.1f} tokens "
                      "per caption")
        print(f"added {extension.added} pieces ({extension.from_base_pieces} initialised from base pieces) to a "
              f"vocabulary of {extension.base_vocab}")
        record["extension"] = {key: value for key, value in vars(extension).items() if key != "folder"}
        record["figures"] = figures


if __name__ == "__main__":
    main()
