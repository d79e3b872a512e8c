"""Random item vectors for every item of a dataset: the control row of content models. A model that scores well over
them gets its figure from structure (popularity, ranking new items first), not from content.

    python bench/random_embeddings.py --dataset folder --data corpus-medium --out random-128.parquet [--dim 128]

Each vector is N(0, I) drawn from a generator seeded by --seed; items in catalogue order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.sources import load_source


def random_embeddings(ids: np.ndarray, dim: int, seed: int) -> ItemEmbeddings:
    rng = np.random.default_rng(seed)
    return ItemEmbeddings(ids=ids, vectors=rng.standard_normal((len(ids), dim)).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tracks = load_source(args.dataset, args.data).dataset.tracks
    random_embeddings(tracks["track_id"].astype(str).to_numpy(), args.dim, args.seed).save(args.out)
    print(f"wrote {len(tracks)} random {args.dim}-d vectors to {args.out}")


if __name__ == "__main__":
    main()
