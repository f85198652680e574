"""The distributed backend: Milvus through pymilvus, behind the same `VectorIndex` contract.

Index settings (FACELEDGER_INDEX):

* `milvus://HOST:PORT` (or `milvus+https://HOST:PORT`): a Milvus standalone or distributed cluster.
  `?token=USER:PASSWORD`, `?db=NAME`, `?index=HNSW` (default AUTOINDEX) may follow.
* `milvus-lite:///absolute/path/vectors.db`, `milvus-lite://relative.db`, or any path ending in `.db`:
  embedded milvus-lite in one local file (relative paths are inside the data directory's index/).

One collection per embedding dimension (`faceledger_faces_<dim>`) holds every gallery; each row has
the face id (primary key), the gallery id (filtered on every search and delete) and the vector. The
metric is inner product, so scores are the same cosines FAISS and the calibration use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import FaceledgerError
from . import check_ids, check_vectors, no_hits
from . import milvus_lite_lock as lite_lock

CONNECT_TIMEOUT_S = 5.0
INSERT_BATCH = 5_000


def parse_target(description: str, base: Path) -> tuple[str, dict, bool]:
    """(uri for MilvusClient, options, is_lite)."""
    text = description.strip()
    if text.startswith("milvus-lite://"):
        path = Path(text[len("milvus-lite://"):])
        return str(path if path.is_absolute() else (base / path).resolve()), {}, True
    if text.endswith(".db") and "://" not in text:
        path = Path(text)
        return str(path if path.is_absolute() else (base / path).resolve()), {}, True
    parts = urlsplit(text)
    if parts.scheme not in ("milvus", "milvus+http", "milvus+https") or not parts.hostname:
        raise FaceledgerError(f"index {description!r}: expected milvus://HOST:PORT or milvus-lite:///path.db")
    scheme = "https" if parts.scheme == "milvus+https" else "http"
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return f"{scheme}://{parts.hostname}:{parts.port or 19530}", options, False


class MilvusConnection:
    """One client per engine; opens lazily and fails fast with a clear error when nobody answers."""

    def __init__(self, description: str, *, base: Path) -> None:
        self.description = description
        self.uri, self.options, self.lite = parse_target(description, base)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            try:
                from pymilvus import MilvusClient
            except ImportError as exc:  # pragma: no cover - a dependency
                raise FaceledgerError(f"the Milvus backend needs pymilvus: {exc}") from None
            _quiet_pymilvus()
            if self.lite:
                Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                lite_lock.hold(self.uri)  # one process per file: wait a little, else a clear refusal
            kwargs = {"timeout": CONNECT_TIMEOUT_S}
            if self.options.get("token"):
                kwargs["token"] = self.options["token"]
            if self.options.get("db"):
                kwargs["db_name"] = self.options["db"]
            try:
                self._client = MilvusClient(self.uri, **kwargs)
            except Exception as exc:  # pymilvus raises several types for "nobody answers"
                if self.lite and "open local milvus failed" in str(exc).lower():
                    raise lite_lock.MilvusLiteBusy(lite_lock.busy_message(
                        self.uri, "a process that is not faceledger, or an older one")) from None
                where = "milvus-lite file" if self.lite else "Milvus server"
                raise FaceledgerError(
                    f"cannot reach the {where} at {self.uri} ({_short(exc)}); nothing was lost: the store "
                    "keeps every embedding. Start Milvus or fix FACELEDGER_INDEX, then run `faceledger reindex`"
                ) from None
        return self._client

    def collection(self, dim: int) -> str:
        name = f"faceledger_faces_{dim}"
        client = self.client
        if not client.has_collection(name):
            from pymilvus import DataType

            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("gallery", DataType.INT64)
            schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
            params = client.prepare_index_params()
            kind = "FLAT" if self.lite else self.options.get("index", "AUTOINDEX")
            params.add_index(field_name="vec", index_type=kind, metric_type="IP")
            client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        else:
            client.load_collection(name)
        return name

    def fresh(self, gallery_id: int, dim: int) -> MilvusIndex:
        index = MilvusIndex(self, gallery_id, dim)
        index.clear()
        return index

    def existing(self, gallery_id: int, dim: int) -> MilvusIndex:
        return MilvusIndex(self, gallery_id, dim)


class MilvusIndex:
    """A gallery's faces inside a Milvus collection (filtered by gallery id)."""

    def __init__(self, connection: MilvusConnection, gallery_id: int, dim: int) -> None:
        self.connection = connection
        self.gallery_id = int(gallery_id)
        self.dim = dim
        self.description = connection.description
        self.kind = connection.description
        self.collection = connection.collection(dim)
        self._filter = f"gallery == {self.gallery_id}"

    @property
    def _client(self):
        return self.connection.client

    def clear(self) -> None:
        self._call(self._client.delete, self.collection, filter=self._filter)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = check_vectors(vectors, self.dim)
        ids = check_ids(ids, len(vectors))
        for start in range(0, len(ids), INSERT_BATCH):
            rows = [{"id": int(i), "gallery": self.gallery_id, "vec": v.tolist()}
                    for i, v in zip(ids[start:start + INSERT_BATCH], vectors[start:start + INSERT_BATCH])]
            self._call(self._client.upsert, self.collection, rows)

    def remove(self, ids: np.ndarray) -> int:
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1)]
        if not ids:
            return 0
        present = self._call(self._client.query, self.collection,
                             filter=f"{self._filter} and id in {ids}", output_fields=["id"])
        if present:
            self._call(self._client.delete, self.collection, ids=[r["id"] for r in present])
        return len(present)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_vectors(queries, self.dim)
        n = len(self)
        if n == 0:
            return no_hits(len(queries))
        k = max(1, min(int(k), n))
        hits = self._call(self._client.search, self.collection, data=[q.tolist() for q in queries],
                          filter=self._filter, limit=k, output_fields=["id"],
                          search_params={"metric_type": "IP"})
        scores = np.full((len(queries), k), -np.inf, np.float32)
        found = np.full((len(queries), k), -1, np.int64)
        for row, hit_list in enumerate(hits):
            for col, hit in enumerate(hit_list[:k]):
                scores[row, col] = hit["distance"]
                found[row, col] = hit["id"]
        return scores, found

    def __len__(self) -> int:
        result = self._call(self._client.query, self.collection, filter=self._filter,
                            output_fields=["count(*)"])
        return int(result[0]["count(*)"]) if result else 0

    def write(self, path: Path) -> None:  # the vectors already live in Milvus
        return None

    def _call(self, method, *args, **kwargs):
        if method.__name__ in ("query", "search"):  # see every write that returned, from any process
            kwargs["consistency_level"] = "Strong"
        try:
            return method(*args, timeout=CONNECT_TIMEOUT_S * 6, **kwargs)
        except FaceledgerError:
            raise
        except Exception as exc:
            raise FaceledgerError(
                f"Milvus at {self.connection.uri} failed: {_short(exc)}; the store keeps every embedding, "
                "run `faceledger reindex` once Milvus answers") from None


def _quiet_pymilvus() -> None:
    """pymilvus logs every failed call with a traceback; faceledger reports the failure itself, in one line."""
    for name in ("pymilvus", "pymilvus.decorators", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
