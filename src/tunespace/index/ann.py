"""Nearest-neighbour search over an embedding folder with faiss: exact by default, HNSW or IVF-PQ at scale.

Why it is built this way:
- Similarity is cosine: vectors are L2-normalised when the index is built and queries when they are searched, so
  inner product (what faiss ranks by) equals cosine and scores are comparable across kinds.
- `kind="auto"` keeps exact search (`flat`) below `AUTO_HNSW_MIN_ITEMS` items, where a brute-force scan costs a few
  milliseconds a query and answers exactly; above it HNSW, whose recall and speed `bench/ann_recall.py` measures.
  IVF-PQ is only chosen by name: it trades recall for memory (a few bytes a vector), which only a catalogue that
  does not fit in memory needs.
- A saved index remembers the fingerprint of the embeddings it was built from (a hash of ids and vectors in row
  order); `load` recomputes it from the embeddings and refuses an index whose embeddings changed, so search never
  answers with ids that point at the wrong rows.
- Excluded ids (a listener's history) are filtered after the search, asking faiss for `k` plus the excluded ids
  the index holds, and more (and, for IVF, more lists probed) until `k` results remain or the catalogue runs out.
- faiss is an optional dependency (the `index` extra), imported only when an index is built or loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunespace.data.embeddings import MANIFEST, ItemEmbeddings
from tunespace.errors import DataValidationError, MissingExtraError, TunespaceError, UnknownIdError
from tunespace.extras import install_hint

log = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivfpq")
AUTO_HNSW_MIN_ITEMS = 100_000  # kind="auto": exact below this many items, HNSW from here on
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
KMEANS_POINTS = 39  # training vectors per centroid below which faiss warns that k-means is starved
KMEANS_MAX_POINTS = 64  # ...and above which IVF training subsamples (k-means on all of 1M vectors takes minutes)
PARAMS_FILE = "index.json"  # kind, parameters, dimension, size, source folder, fingerprint
DEFAULTS: dict[str, dict[str, int]] = {
    "flat": {},
    "hnsw": {"hnsw_m": 32, "ef_construction": 80, "ef_search": 128},
    "ivfpq": {"nlist": 0, "pq_m": 0, "nbits": 8, "nprobe": 32},  # 0: chosen from the catalogue's size and dim
}
SEARCH_PARAMS = {"hnsw": ("ef_search",), "ivfpq": ("nprobe",), "flat": ()}


class SearchIndexError(TunespaceError):
    """Base of the errors of building, saving, loading and searching an index."""


class IndexConfigError(SearchIndexError, ValueError):
    """An index was asked for with a kind or parameters it cannot be built with."""


class IndexFormatError(SearchIndexError, FileNotFoundError):
    """A folder given as an index is not one `EmbeddingIndex.save` wrote (or lacks a file of it)."""


class StaleIndexError(SearchIndexError):
    """The embeddings an index was built from have changed since: its rows no longer match their ids."""


@dataclass(frozen=True)
class Hit:
    item_id: str
    score: float  # cosine similarity (approximate for IVF-PQ, whose vectors are compressed)


def import_faiss() -> Any:
    """faiss, or a one-line MissingExtraError naming the `index` extra."""
    try:
        import faiss
    except ImportError as error:
        raise MissingExtraError(f"search needs faiss (the 'index' extra), which is not installed; install it "
                                f"with: {install_hint('index')}") from error
    return faiss


def fingerprint(embeddings: ItemEmbeddings) -> str:
    """Identity of the embeddings in row order: a changed vector, id, order or size changes it."""
    digest = hashlib.sha256()
    digest.update(np.asarray(embeddings.vectors.shape, dtype=np.int64).tobytes())
    digest.update("\0".join(embeddings.ids.tolist()).encode())
    digest.update(np.ascontiguousarray(embeddings.vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()


def normalised(vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Rows scaled to unit length (float32, contiguous); a zero row has no direction and is refused."""
    vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        row = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise DataValidationError(what, "a zero vector has no direction to search by", row + 1)
    return vectors / norms


def resolve_kind(kind: str, n_items: int) -> str:
    """The kind `auto` stands for at this size (see the module docstring), or `kind` checked."""
    if kind == "auto":
        return "flat" if n_items < AUTO_HNSW_MIN_ITEMS else "hnsw"
    if kind not in KINDS:
        raise IndexConfigError(f"unknown index kind {kind!r}; choose one of auto, {', '.join(KINDS)}")
    return kind


def ivfpq_params(n_items: int, dim: int, nlist: int = 0, pq_m: int = 0, nbits: int = 8,
                 nprobe: int = 32) -> dict[str, int]:
    """IVF-PQ parameters with the zeros filled in: about 4 sqrt(n) lists, sub-quantizers of 4 dimensions each (the
    largest divisor of `dim` up to dim/4), and fewer bits per code on a small catalogue, so that every k-means
    (lists, codebooks) has the 39 training vectors per centroid it wants from the catalogue itself."""
    if nlist <= 0:
        nlist = int(max(1, min(4 * math.sqrt(n_items), n_items // KMEANS_POINTS)))
    if pq_m <= 0:
        pq_m = max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)
    if dim % pq_m:
        raise IndexConfigError(f"pq_m={pq_m} must divide the dimension {dim}")
    nbits = max(1, min(nbits, int(math.log2(max(2, n_items // KMEANS_POINTS)))))
    if nlist > n_items:
        raise IndexConfigError(f"nlist={nlist} exceeds the {n_items} items to cluster")
    return {"nlist": nlist, "pq_m": pq_m, "nbits": nbits, "nprobe": max(1, min(nprobe, nlist))}


def _params(kind: str, n_items: int, dim: int, given: dict[str, Any]) -> dict[str, int]:
    unknown = sorted(set(given) - set(DEFAULTS[kind]))
    if unknown:
        raise IndexConfigError(f"a {kind} index takes no parameter {', '.join(unknown)} "
                               f"(it takes: {', '.join(DEFAULTS[kind]) or 'none'})")
    params = {**DEFAULTS[kind], **{key: int(value) for key, value in given.items() if value is not None}}
    bad = [key for key, value in params.items() if value < 0 or (value == 0 and DEFAULTS[kind][key] != 0)]
    if bad:
        raise IndexConfigError(f"{', '.join(bad)} must be positive")
    return ivfpq_params(n_items, dim, **params) if kind == "ivfpq" else params


class EmbeddingIndex:
    """A faiss index over one set of item embeddings, with its row -> id map and the manifest it came from."""

    def __init__(self, index: Any, kind: str, ids: Sequence[str], manifest: dict[str, Any],
                 params: dict[str, int], source: str | None = None) -> None:
        self._index = index
        self.kind = kind
        self.ids = [str(i) for i in ids]
        self.dim = int(index.d)
        self.manifest = manifest
        self.params = params
        self.source = source  # the embeddings folder it was built from, when built from one
        self._rows = pd.Index(self.ids)
        self.tune(**{key: params[key] for key in SEARCH_PARAMS[kind]})

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, embeddings: ItemEmbeddings, kind: str = "auto", manifest: dict[str, Any] | None = None,
              source: str | Path | None = None, **params: Any) -> EmbeddingIndex:
        """Index `embeddings` for cosine search. `params` are the kind's (DEFAULTS lists them); `manifest` is the
        embeddings' own (from_folder passes the folder's), to which the fingerprint is added."""
        faiss = import_faiss()
        n, dim = embeddings.vectors.shape
        if n == 0:
            raise DataValidationError("embeddings", "no vectors to index")
        kind = resolve_kind(kind, n)
        chosen = _params(kind, n, dim, params)
        zero = np.flatnonzero(~embeddings.vectors.any(axis=1))
        if len(zero):
            raise DataValidationError("embeddings", f"the vector of track {embeddings.ids[zero[0]]!r} is all zeros "
                                      f"and has no direction to search by ({len(zero)} such tracks)", zero[0] + 1)
        vectors = normalised(embeddings.vectors)
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, chosen["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = chosen["ef_construction"]
        else:
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, chosen["nlist"], chosen["pq_m"], chosen["nbits"],
                                     faiss.METRIC_INNER_PRODUCT)
            index.cp.max_points_per_centroid = KMEANS_MAX_POINTS
            index.train(vectors)
        index.add(vectors)
        if kind == "ivfpq":
            index.make_direct_map()  # vector(id) reconstructs from the codes
        record = {**(manifest or {}), "fingerprint": fingerprint(embeddings)}
        log.info("built a %s index over %d items of dim %d (%s)", kind, n, dim, chosen)
        return cls(index, kind, embeddings.ids.tolist(), record, chosen, str(source) if source else None)

    @classmethod
    def from_folder(cls, embeddings_dir: str | Path, kind: str = "auto", **params: Any) -> EmbeddingIndex:
        """Index an embedding folder (or Parquet file); an unfinished extraction is refused by its loader."""
        path = Path(embeddings_dir)
        embeddings = ItemEmbeddings.load(path)
        return cls.build(embeddings, kind, manifest=_folder_manifest(path), source=path.resolve(), **params)

    def tune(self, **params: int) -> None:
        """Change search-time settings (HNSW `ef_search`, IVF `nprobe`) for the speed/recall trade-off."""
        allowed = SEARCH_PARAMS[self.kind]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise IndexConfigError(f"a {self.kind} index has no search setting {', '.join(unknown)} "
                                   f"(it has: {', '.join(allowed) or 'none'})")
        for key, value in params.items():
            if int(value) < 1:
                raise IndexConfigError(f"{key} must be positive")
            self.params[key] = int(value)
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = self.params["ef_search"]
        elif self.kind == "ivfpq":
            self._index.nprobe = min(self.params["nprobe"], self.params["nlist"])

    def row(self, item_id: str) -> int:
        """The row of `item_id`; UnknownIdError when the index does not hold it."""
        position = self._rows.get_indexer([str(item_id)])[0]
        if position < 0:
            raise UnknownIdError(f"track {item_id!r} is not in the index ({len(self)} items)")
        return int(position)

    def vector(self, item_id: str) -> np.ndarray:
        """The item's unit vector as the index holds it (decoded from its codes for IVF-PQ, so approximate)."""
        return np.asarray(self._index.reconstruct(self.row(item_id)), dtype=np.float32)

    def candidates(self, queries: np.ndarray, n: int) -> np.ndarray:
        """Rows (the positions of `ids`) of the `n` items nearest each query, best first, -1 where the index found
        fewer: the raw candidate lists an evaluation re-ranks by exact scores (no exclusion, no Hit objects)."""
        if n < 1:
            raise IndexConfigError(f"n must be at least 1, got {n}")
        queries = normalised(queries, "query")
        if queries.shape[1] != self.dim:
            raise DataValidationError("query", f"a {queries.shape[1]}-d query cannot search a {self.dim}-d index")
        _, rows = self._raw_search(queries, min(n, len(self)), self.params.get("nprobe", 0))
        return np.asarray(rows, dtype=np.int64)

    def search(self, queries: np.ndarray, k: int,
               exclude: Sequence[Collection[str]] | None = None) -> list[list[Hit]]:
        """The `k` items most similar to each query row, best first, skipping that query's `exclude` ids (ids the
        index does not hold are ignored). Fewer than `k` come back only when the catalogue has no more."""
        if k < 1:
            raise IndexConfigError(f"k must be at least 1, got {k}")
        queries = normalised(queries, "query")
        if queries.shape[1] != self.dim:
            raise DataValidationError("query", f"a {queries.shape[1]}-d query cannot search a {self.dim}-d index "
                                      "(was it embedded by the backend the index was built from?)")
        if exclude is not None and len(exclude) != len(queries):
            raise IndexConfigError(f"exclude has {len(exclude)} entries for {len(queries)} queries")
        banned = [self._excluded_rows(exclude[i] if exclude is not None else ()) for i in range(len(queries))]
        results: list[list[Hit]] = [[] for _ in queries]
        pending = np.arange(len(queries))
        fetch = k + max((len(b) for b in banned), default=0)
        nprobe = self.params.get("nprobe", 0)
        while len(pending):
            scores, rows = self._raw_search(queries[pending], min(fetch, len(self)), nprobe)
            still = []
            for slot, query in enumerate(pending):
                wanted = min(k, len(self) - len(banned[query]))
                keep = rows[slot] >= 0
                if len(banned[query]):
                    keep &= ~np.isin(rows[slot], banned[query])
                found, found_scores = rows[slot][keep][:k].tolist(), scores[slot][keep][:k].tolist()
                results[query] = [Hit(self.ids[row], score) for row, score in zip(found, found_scores)]
                if len(found) < wanted:
                    still.append(query)
            exhausted = fetch >= len(self) and (self.kind != "ivfpq" or nprobe >= self.params["nlist"])
            if exhausted:
                break
            pending = np.asarray(still, dtype=np.int64)
            fetch *= 2
            if self.kind == "ivfpq":
                nprobe = min(2 * nprobe, self.params["nlist"])
        return results

    def _excluded_rows(self, ids: Collection[str]) -> np.ndarray:
        """Distinct rows of the excluded ids the index holds (the others cannot come back anyway)."""
        if not ids:
            return np.zeros(0, dtype=np.int64)
        positions = self._rows.get_indexer([str(i) for i in ids])
        return np.unique(positions[positions >= 0]).astype(np.int64)

    def _raw_search(self, queries: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's answer for normalised queries, widened as the retry loop asks: HNSW explores at least `k`
        candidates (and, asked for the whole catalogue, which its graph cannot enumerate, scans its stored vectors
        exactly); IVF probes `nprobe` lists."""
        if self.kind == "hnsw":
            faiss = import_faiss()
            if k >= len(self):
                return faiss.downcast_index(self._index.storage).search(queries, k)
            if k > self.params["ef_search"]:
                return self._index.search(queries, k, params=faiss.SearchParametersHNSW(efSearch=k))
        if self.kind == "ivfpq" and nprobe != self._index.nprobe:
            faiss = import_faiss()
            return self._index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        return self._index.search(queries, k)

    def save(self, path: str | Path) -> None:
        """Write the index folder (faiss index, ids, manifest, parameters) in one rename: a crash leaves the old
        folder or none. An existing folder is replaced only if it is an index folder."""
        faiss = import_faiss()
        path = Path(path)
        if path.exists() and not (path / PARAMS_FILE).is_file() and (not path.is_dir() or any(path.iterdir())):
            raise IndexFormatError(f"{path} exists and is not an index folder; refusing to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            faiss.write_index(self._index, str(tmp / INDEX_FILE))
            pd.DataFrame({"track_id": pd.array(self.ids, dtype="string")}).to_parquet(tmp / IDS_FILE, index=False)
            (tmp / MANIFEST).write_text(json.dumps(self.manifest, indent=2) + "\n", encoding="utf-8")
            meta = {"kind": self.kind, "params": self.params, "dim": self.dim, "items": len(self),
                    "metric": "cosine", "source": self.source, "fingerprint": self.manifest["fingerprint"],
                    "faiss": faiss.__version__}
            (tmp / PARAMS_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o777 & ~_umask())
            _replace_folder(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | Path, embeddings_dir: str | Path | None = None) -> EmbeddingIndex:
        """Read an index folder and check it against its embeddings (`embeddings_dir`, else the folder it was built
        from): StaleIndexError if they changed. An index whose embeddings cannot be found is refused too."""
        faiss = import_faiss()
        path = Path(path)
        meta = _read_json(path / PARAMS_FILE, path)
        manifest = _read_json(path / MANIFEST, path)
        for name in (INDEX_FILE, IDS_FILE):
            if not (path / name).is_file():
                raise IndexFormatError(f"{path} is not a complete index folder: {name} is missing")
        source = Path(embeddings_dir) if embeddings_dir is not None else (
            Path(meta["source"]) if meta.get("source") else None)
        if source is None or not source.exists():
            where = f"its embeddings ({source}) are gone" if source else "it was not built from a folder"
            raise StaleIndexError(f"cannot check the index {path} against its embeddings: {where}; pass the "
                                  "embeddings folder it was built from (embeddings_dir=...)")
        current = fingerprint(ItemEmbeddings.load(source))
        if current != meta["fingerprint"]:
            raise StaleIndexError(f"the index {path} is stale: the embeddings in {source} changed since it was "
                                  f"built; rebuild it with `tunespace index build --embeddings {source} "
                                  f"--out {path}`")
        try:
            ids = pd.read_parquet(path / IDS_FILE)["track_id"].astype(str).tolist()
            index = faiss.read_index(str(path / INDEX_FILE))
        except Exception as error:  # pyarrow and faiss raise several types for a damaged file
            raise IndexFormatError(f"{path}: a file of the index cannot be read ({error}); rebuild it with "
                                   "`tunespace index build`") from error
        if index.ntotal != len(ids) or index.d != int(meta["dim"]):
            raise IndexFormatError(f"{path}: the faiss index holds {index.ntotal} vectors of dim {index.d} but "
                                   f"{len(ids)} ids of dim {meta['dim']} are recorded")
        if meta["kind"] == "ivfpq":
            index.make_direct_map()
        return cls(index, meta["kind"], ids, manifest, dict(meta["params"]), str(source.resolve()))


def _folder_manifest(path: Path) -> dict[str, Any]:
    """The `tunespace embed` manifest of an embedding folder; a plain Parquet file or another tool's folder has
    none, and is described by its path alone."""
    manifest_path = path / MANIFEST if path.is_dir() else None
    if manifest_path is not None and manifest_path.is_file():
        try:
            return dict(json.loads(manifest_path.read_text(encoding="utf-8")))
        except ValueError as error:
            raise DataValidationError(str(manifest_path), f"not a JSON manifest ({error})") from error
    return {"backend": None, "embeddings": path.name}


def _read_json(file: Path, folder: Path) -> dict[str, Any]:
    if not file.is_file():
        raise IndexFormatError(f"{folder} is not an index folder ({file.name} is missing); build one with "
                               "`tunespace index build`")
    try:
        return dict(json.loads(file.read_text(encoding="utf-8")))
    except ValueError as error:
        raise IndexFormatError(f"{file} is not valid JSON ({error})") from error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_folder(new: Path, target: Path) -> None:
    """Put `new` at `target`: an existing target is moved aside first and deleted after the swap."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / target.name, target)
        raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
