"""Similar past transactions: a vector per transaction, an HNSW index over them (usearch) with the
outcome of every indexed transaction beside it, and the "mix" of a transaction's nearest neighbours.

Vector (``SIMILARITY_FEATURES``, version ``VECTOR_VERSION``): the decision core's model features
(``payments_core.model_features``; the same encoding for a lakehouse row through ``feature_matrix``
and a ``/score`` body through ``feature_vector``, which tests keep bit-identical) minus the velocity
columns (a ``POST /similar`` lookup must not record or read velocity), with fixed weights chosen so
that, in squared Euclidean distance, one unit means "one attribute differs":

* every categorical is one-hot; each one-hot column weighs 1/sqrt(2), so a different category adds
  exactly 1 (two columns differ);
* booleans 0/1 (a flip adds 1);
* amount: log1p of the major-unit amount / ln 10 (a tenfold amount adds about 1);
* scores as they are, the composite risk doubled (a risk difference of 0.5 adds 1);
* retries on a log2 scale (first retry vs none adds 1);
* hour of day on a circle of radius 1/2 (23:00 is next to 00:00; opposite hours add 1).

No fitted scaler: the weights are constants, so the index and the query can never disagree.

Metric: squared Euclidean (``l2sq``). Cosine would divide out the vector's length, but every vector
has the same number of one-hot ones, so length mostly carries amount, risk and retry magnitude:
exactly what must count. With L2 the distance reads as "how many attributes differ, and by how much".

Index files (``save`` / ``open``), all beside ``path`` and replaced atomically (``os.replace``):

* ``path`` - the usearch HNSW index; key = row number of the transaction in the sidecar;
* ``path.outcomes.npy`` - the sidecar, one row per key (``OUTCOME_DTYPE``): transaction id (as its
  64-bit value), event and ingestion time, amount in minor units and currency, a few facts to show,
  and the outcome: approved or not, decline reason, fraud label (-1 when unknown);
* ``path.json`` - the vector version, metric and HNSW parameters.

Rows are only ever appended, and the sidecar is replaced before the index: a reader that opens the
index first always finds a sidecar at least as long (a key is a row number, so extra rows are harmless).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow  # noqa: F401 - loaded before usearch: usearch.compiled first makes pyarrow's tz-aware to_pandas segfault
from usearch.index import Index

from payments_core.contract.events import (
    CardNetwork,
    Currency,
    DeclineReason,
    MerchantSegment,
    PaymentSolution,
    enum_values,
)
from payments_core.contract.money import from_minor_units
from payments_core.features import VELOCITY_FEATURES
from payments_core.model_features import FEATURE_INDEX, MODEL_FEATURES, feature_matrix, feature_vector

VECTOR_VERSION: Final = 1
METRIC: Final = "l2sq"
DEFAULT_K: Final = 20
MAX_K: Final = 100
# HNSW: M (links per node), efConstruction, ef. Tuned on simulated transactions (bench/similar.py): at
# 200k, efConstruction 128 rather than 64 costs 2.5x the build time and lifts recall@20 at ef 64 from
# ~0.975 to ~0.99; at 1M (a simulated week) ef 96 gives recall@20 0.99 for about 1 ms of CPU a lookup.
CONNECTIVITY: Final = 16
EXPANSION_ADD: Final = 128
EXPANSION_SEARCH: Final = 96
INDEX_FILE_FORMAT: Final = 1

ONE_HOT_WEIGHT: Final = math.sqrt(0.5)
AMOUNT_WEIGHT: Final = 1.0 / math.log(10.0)
COMPOSITE_RISK_WEIGHT: Final = 2.0
HOUR_RADIUS: Final = 0.5

_TRANSACTION_ID = re.compile(r"^txn_[0-9a-f]{16}$")
_VELOCITY = set(VELOCITY_FEATURES)
_LOG2_COLUMNS = ("retry_count", "attempt_number")


def _similarity_layout() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    names: list[str] = []
    weights: list[float] = []
    for name in MODEL_FEATURES:
        if name in _VELOCITY or name == "hour_of_day":
            continue
        names.append(name)
        if "=" in name:
            weights.append(ONE_HOT_WEIGHT)
        elif name == "log_amount_major":
            weights.append(AMOUNT_WEIGHT)
        elif name == "composite_risk_score":
            weights.append(COMPOSITE_RISK_WEIGHT)
        else:
            weights.append(1.0)
    columns = np.array([FEATURE_INDEX[n] for n in names], dtype=np.intp)
    return (*names, "hour_cos", "hour_sin"), columns, np.array(weights, dtype=np.float64)


SIMILARITY_FEATURES, _MODEL_COLUMNS, _WEIGHTS = _similarity_layout()
NDIM: Final = len(SIMILARITY_FEATURES)
_LOG2_POSITIONS = [SIMILARITY_FEATURES.index(n) for n in _LOG2_COLUMNS]
_HOUR_COLUMN = FEATURE_INDEX["hour_of_day"]
# Lookup tables, not np.log2 / np.cos: NumPy's SIMD kernels may round the last bit differently for a
# lone row than inside a long array, and the two paths must give the same vector. Hours are 0..23;
# counts are small integers (the contract caps retries at 50 and attempts at 51).
_HOUR_CIRCLE = np.array(
    [[math.cos(2 * math.pi * h / 24) * HOUR_RADIUS, math.sin(2 * math.pi * h / 24) * HOUR_RADIUS] for h in range(24)]
)
_LOG2_OF = np.array([0.0] + [math.log2(i) for i in range(1, 53)])


# ------------------------------------------------------------------------------------------ vectors
def vectors_from_features(model_features: np.ndarray) -> np.ndarray:
    """Similarity vectors (float32, ``(n, NDIM)``) of model feature rows (``(n, N_FEATURES)``)."""
    x = np.asarray(model_features, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    kept = x[:, _MODEL_COLUMNS]
    # log2(retry_count + 1) and log2(attempt_number): "none" / "first attempt" at 0, one retry more at 1
    retries = np.clip(kept[:, _LOG2_POSITIONS[0]].astype(np.int64) + 1, 1, _LOG2_OF.shape[0] - 1)
    attempts = np.clip(kept[:, _LOG2_POSITIONS[1]].astype(np.int64), 1, _LOG2_OF.shape[0] - 1)
    kept[:, _LOG2_POSITIONS[0]] = _LOG2_OF[retries]
    kept[:, _LOG2_POSITIONS[1]] = _LOG2_OF[attempts]
    kept *= _WEIGHTS
    hour = _HOUR_CIRCLE[np.clip(x[:, _HOUR_COLUMN].astype(np.int64), 0, 23)]
    return np.ascontiguousarray(np.concatenate([kept, hour], axis=1), dtype=np.float32)


def vector_of_request(tx: Mapping[str, Any]) -> np.ndarray:
    """The vector of one request/event dict (``TransactionRequest.model_dump()``): ``(NDIM,)``."""
    return vectors_from_features(feature_vector(tx))[0]


def vectors_of_frame(df: pd.DataFrame) -> np.ndarray:
    """The vectors of every row of a frame of contract columns (silver rows, simulator tables)."""
    return vectors_from_features(feature_matrix(df))


# ------------------------------------------------------------------------------------------ outcomes
CURRENCIES: Final = enum_values(Currency)
SEGMENTS: Final = enum_values(MerchantSegment)
NETWORKS: Final = enum_values(CardNetwork)
SOLUTIONS: Final = enum_values(PaymentSolution)
DECLINE_REASONS: Final = enum_values(DeclineReason)

OUTCOME_DTYPE: Final = np.dtype(
    [
        ("txn_key", "<u8"),  # the 64 bits of the transaction id (txn_ + 16 hex digits)
        ("event_us", "<i8"),  # event time, microseconds since the epoch (UTC)
        ("ingested_us", "<i8"),  # when the lakehouse got it (the index job's watermark)
        ("amount_minor", "<i8"),  # money: integer minor units, as in the contract
        ("currency", "i1"),  # codes: positions in the contract enums, -1 when unknown
        ("merchant_segment", "i1"),
        ("card_network", "i1"),
        ("payment_solution", "i1"),
        ("geo_country", "S2"),
        ("is_approved", "i1"),
        ("decline_reason", "i1"),  # -1: none (approved) or unknown
        ("is_fraud", "i1"),  # 1 fraud, 0 not fraud, -1 label unknown
    ]
)


def transaction_key(transaction_id: str) -> int:
    """``txn_`` + 16 hex digits -> the 64-bit value they spell. ValueError for any other id."""
    if not _TRANSACTION_ID.match(transaction_id):
        raise ValueError(f"not a transaction id (txn_ + 16 lowercase hex digits): {transaction_id!r}")
    return int(transaction_id[4:], 16)


def transaction_id_of(key: int) -> str:
    return f"txn_{int(key):016x}"


def _codes(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    lookup = {v: i for i, v in enumerate(vocabulary)}
    return np.array([lookup.get(v, -1) for v in values.tolist()], dtype=np.int8)


def _epoch_us(values: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(values, utc=True)  # naive timestamps are UTC (Spark's session time zone)
    return ts.astype("datetime64[us, UTC]").to_numpy(dtype="datetime64[us]").astype(np.int64)


def outcome_rows(df: pd.DataFrame) -> np.ndarray:
    """Sidecar rows (``OUTCOME_DTYPE``) of a frame with the contract's transaction id, time, amount,
    currency, segment, network, solution, geo country and outcome columns. ``decline_reason`` and
    ``is_fraud`` may be missing or null (unknown); ``ingested_at`` defaults to the event time."""
    n = len(df)
    out = np.zeros(n, dtype=OUTCOME_DTYPE)
    if n == 0:
        return out
    out["txn_key"] = np.array([transaction_key(t) for t in df["transaction_id"].tolist()], dtype=np.uint64)
    out["event_us"] = _epoch_us(df["event_timestamp"])
    ingested = df["ingested_at"] if "ingested_at" in df.columns else None
    out["ingested_us"] = out["event_us"] if ingested is None else _epoch_us(ingested.fillna(df["event_timestamp"]))
    out["amount_minor"] = df["amount_minor"].to_numpy(dtype=np.int64)
    out["currency"] = _codes(df["currency"], CURRENCIES)
    out["merchant_segment"] = _codes(df["merchant_segment"], SEGMENTS)
    out["card_network"] = _codes(df["card_network"], NETWORKS)
    out["payment_solution"] = _codes(df["payment_solution"], SOLUTIONS)
    out["geo_country"] = df["geo_country"].astype(str).str.encode("ascii").to_numpy(dtype="S2")
    out["is_approved"] = df["is_approved"].fillna(False).astype(bool).to_numpy(dtype=np.int8)
    reasons = df["decline_reason"] if "decline_reason" in df.columns else pd.Series([None] * n, index=df.index)
    out["decline_reason"] = _codes(reasons, DECLINE_REASONS)
    if "is_fraud" in df.columns:
        fraud = df["is_fraud"]
        out["is_fraud"] = np.where(fraud.isna(), -1, fraud.fillna(False).astype(bool)).astype(np.int8)
    else:
        out["is_fraud"] = -1
    return out


@dataclass(frozen=True)
class Neighbour:
    """One similar past transaction and what happened to it."""

    transaction_id: str
    distance: float  # squared Euclidean distance of the vectors (0: same features)
    event_timestamp: datetime
    amount_minor: int
    currency: str | None
    merchant_segment: str | None
    card_network: str | None
    payment_solution: str | None
    geo_country: str
    is_approved: bool
    decline_reason: str | None
    is_fraud: bool | None  # None: no label

    @property
    def amount(self) -> str | None:
        """Major units as exact decimal text (never a float)."""
        return str(from_minor_units(self.amount_minor, self.currency)) if self.currency else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "amount": self.amount}


@dataclass(frozen=True)
class NeighbourMix:
    """What happened to the neighbours: shares over the k of them."""

    neighbours: int
    approval_rate: float | None  # None when there are no neighbours
    declines: int
    top_decline_reason: str | None  # most common among the declined ones (ties: alphabetical)
    top_decline_reason_count: int
    fraud_share: float | None  # among the neighbours with a known label; None when none has one
    fraud_labelled: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(vocabulary: Sequence[str], code: int) -> str | None:
    return vocabulary[code] if 0 <= code < len(vocabulary) else None


def neighbour_mix(rows: np.ndarray) -> NeighbourMix:
    """The mix of sidecar rows (``OUTCOME_DTYPE``)."""
    n = int(rows.shape[0])
    approved = rows["is_approved"] == 1
    declined = ~approved
    reasons = rows["decline_reason"][declined & (rows["decline_reason"] >= 0)]
    top, top_count = None, 0
    if reasons.size:
        counts = np.bincount(reasons.astype(np.int64), minlength=len(DECLINE_REASONS))
        top_count = int(counts.max())
        # the alphabetically first of the reasons with the highest count
        top = min(DECLINE_REASONS[i] for i in np.flatnonzero(counts == top_count))
    labelled = rows["is_fraud"] >= 0
    n_labelled = int(labelled.sum())
    return NeighbourMix(
        neighbours=n,
        approval_rate=round(float(approved.mean()), 4) if n else None,
        declines=int(declined.sum()),
        top_decline_reason=top,
        top_decline_reason_count=top_count,
        fraud_share=round(float((rows["is_fraud"][labelled] == 1).mean()), 4) if n_labelled else None,
        fraud_labelled=n_labelled,
    )


def outcomes_mix(
    is_approved: Sequence[bool], decline_reasons: Sequence[str | None], is_fraud: Sequence[bool | None]
) -> NeighbourMix:
    """``neighbour_mix`` of outcomes given as plain lists (e.g. rows of a Vector Search query)."""
    if not len(is_approved) == len(decline_reasons) == len(is_fraud):
        raise ValueError("is_approved, decline_reasons and is_fraud must have the same length")
    rows = np.zeros(len(is_approved), dtype=OUTCOME_DTYPE)
    rows["is_approved"] = [1 if a else 0 for a in is_approved]
    rows["decline_reason"] = _codes(pd.Series(list(decline_reasons), dtype=object), DECLINE_REASONS)
    rows["is_fraud"] = [-1 if f is None else int(bool(f)) for f in is_fraud]
    return neighbour_mix(rows)


def neighbour_of(row: np.void, distance: float) -> Neighbour:
    fraud = int(row["is_fraud"])
    return Neighbour(
        transaction_id=transaction_id_of(int(row["txn_key"])),
        distance=round(float(distance), 6),
        event_timestamp=datetime.fromtimestamp(int(row["event_us"]) / 1e6, UTC),
        amount_minor=int(row["amount_minor"]),
        currency=_label(CURRENCIES, int(row["currency"])),
        merchant_segment=_label(SEGMENTS, int(row["merchant_segment"])),
        card_network=_label(NETWORKS, int(row["card_network"])),
        payment_solution=_label(SOLUTIONS, int(row["payment_solution"])),
        geo_country=bytes(row["geo_country"]).decode("ascii"),
        is_approved=bool(row["is_approved"]),
        decline_reason=_label(DECLINE_REASONS, int(row["decline_reason"])),
        is_fraud=None if fraud < 0 else bool(fraud),
    )


@dataclass(frozen=True)
class SimilarResult:
    neighbours: list[Neighbour]
    mix: NeighbourMix


# ------------------------------------------------------------------------------------------ index
class IndexFormatError(RuntimeError):
    """The files at the path are not an index this code can read (another vector version, or broken)."""


def outcomes_path(path: Path) -> Path:
    return path.with_name(path.name + ".outcomes.npy")


def meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def index_signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the index file is replaced (inode, mtime, size); None when it is missing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class SimilarIndex:
    """The HNSW index and its outcome sidecar. ``open(path)`` memory-maps both read-only (serving);
    ``open(path, writable=True)`` or ``empty()`` give an index to ``add`` to and ``save``."""

    def __init__(self, index: Index, outcomes: np.ndarray, *, built_at: str | None = None, writable: bool = True):
        self.index = index
        self.outcomes = outcomes
        self.built_at = built_at
        self.writable = writable
        self._sorted_keys: np.ndarray | None = None
        self._sorted_rows: np.ndarray | None = None

    # -------------------------------------------------------------------------------- life cycle
    @classmethod
    def empty(
        cls,
        *,
        connectivity: int = CONNECTIVITY,
        expansion_add: int = EXPANSION_ADD,
        expansion_search: int = EXPANSION_SEARCH,
    ) -> SimilarIndex:
        index = Index(
            ndim=NDIM,
            metric=METRIC,
            dtype="f32",  # f16 would halve the file but blur near-ties (recall is measured against exact f32)
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        return cls(index, np.zeros(0, dtype=OUTCOME_DTYPE))

    @classmethod
    def open(cls, path: Path, *, writable: bool = False) -> SimilarIndex:
        """The index saved at ``path``. Read-only opens memory-map the files (no copy in memory).
        FileNotFoundError when there is none; IndexFormatError when it is of another version."""
        path = Path(path)
        meta = read_meta(path)
        index = Index.restore(str(path), view=not writable)
        if index is None:
            raise FileNotFoundError(f"no similar-transaction index at {path}")
        if index.ndim != NDIM:
            raise IndexFormatError(f"{path}: vectors of {index.ndim} dimensions, this code makes {NDIM}")
        # usearch defines these setters apart from their getters, which mypy reads as read-only properties
        index.expansion_search = int(meta.get("expansion_search", EXPANSION_SEARCH))  # type: ignore[misc]
        index.expansion_add = int(meta.get("expansion_add", EXPANSION_ADD))  # type: ignore[misc]
        outcomes = np.load(outcomes_path(path), mmap_mode=None if writable else "r", allow_pickle=False)
        if outcomes.dtype != OUTCOME_DTYPE or outcomes.shape[0] < len(index):
            raise IndexFormatError(f"{outcomes_path(path)} does not match the index ({len(index)} vectors)")
        opened = cls(index, outcomes[: len(index)], built_at=meta.get("built_at"), writable=writable)
        opened.lookup_table()  # now, not on the first request that needs it
        return opened

    def save(self, path: Path) -> None:
        """Write the three files next to ``path`` and swap them in (sidecar, metadata, then index)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = f".tmp-{os.getpid()}"
        side, meta, main = (Path(str(p) + tmp) for p in (outcomes_path(path), meta_path(path), path))
        with open(side, "wb") as fh:  # np.save on a name would append ".npy"
            np.save(fh, np.ascontiguousarray(self.outcomes), allow_pickle=False)
        self.built_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        meta.write_text(
            json.dumps(
                {
                    "format": INDEX_FILE_FORMAT,
                    "vector_version": VECTOR_VERSION,
                    "features": list(SIMILARITY_FEATURES),
                    "metric": METRIC,
                    "count": len(self),
                    "connectivity": self.index.connectivity,
                    "expansion_add": self.index.expansion_add,
                    "expansion_search": self.index.expansion_search,
                    "built_at": self.built_at,
                },
                indent=1,
            )
        )
        self.index.save(str(main))
        os.replace(side, outcomes_path(path))
        os.replace(meta, meta_path(path))
        os.replace(main, path)

    # -------------------------------------------------------------------------------- content
    def __len__(self) -> int:
        return int(self.outcomes.shape[0])

    @property
    def watermark_us(self) -> int | None:
        """The latest ingestion time indexed (microseconds since the epoch), None when empty."""
        return int(self.outcomes["ingested_us"].max()) if len(self) else None

    def lookup_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Transaction keys sorted, and the row of each (built once per index version)."""
        if self._sorted_keys is None or self._sorted_rows is None:
            keys = np.asarray(self.outcomes["txn_key"])
            order = np.argsort(keys, kind="stable")
            self._sorted_keys, self._sorted_rows = keys[order], order
        return self._sorted_keys, self._sorted_rows

    def row_of(self, transaction_id: str) -> int | None:
        """Row (= index key) of an indexed transaction, None when it is not indexed."""
        try:
            key = transaction_key(transaction_id)
        except ValueError:
            return None
        keys, rows = self.lookup_table()
        at = int(np.searchsorted(keys, np.uint64(key)))
        return int(rows[at]) if at < keys.shape[0] and int(keys[at]) == key else None

    def indexed(self, txn_keys: np.ndarray) -> np.ndarray:
        """Which of these 64-bit transaction keys are already in the index (boolean mask)."""
        keys, _ = self.lookup_table()
        if keys.shape[0] == 0:
            return np.zeros(txn_keys.shape[0], dtype=bool)
        at = np.minimum(np.searchsorted(keys, txn_keys), keys.shape[0] - 1)
        return keys[at] == txn_keys

    def vector_at(self, row: int) -> np.ndarray:
        """The stored vector of the transaction at ``row``."""
        return np.asarray(self.index.get(row), dtype=np.float32)

    def vector_of(self, transaction_id: str) -> np.ndarray | None:
        row = self.row_of(transaction_id)
        return None if row is None else self.vector_at(row)

    def add(self, vectors: np.ndarray, outcomes: np.ndarray) -> int:
        """Append transactions not indexed yet (by transaction id; the first of in-batch duplicates).
        Returns how many were added."""
        if not self.writable:
            raise PermissionError("this index is memory-mapped read-only: open it with writable=True to add")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != NDIM or vectors.shape[0] != outcomes.shape[0]:
            raise ValueError(f"expected ({outcomes.shape[0]}, {NDIM}) vectors, got {vectors.shape}")
        _, first = np.unique(outcomes["txn_key"], return_index=True)
        keep = np.zeros(outcomes.shape[0], dtype=bool)
        keep[first] = True
        keep &= ~self.indexed(np.asarray(outcomes["txn_key"]))
        if not keep.any():
            return 0
        new_vectors, new_rows = vectors[keep], outcomes[keep]
        start = len(self)
        keys = np.arange(start, start + new_rows.shape[0], dtype=np.uint64)
        self.index.add(keys, new_vectors, threads=os.cpu_count() or 1)  # threads=0 ran on one core here
        self.outcomes = np.concatenate([np.asarray(self.outcomes), new_rows])
        self._sorted_keys = self._sorted_rows = None
        return int(new_rows.shape[0])

    # -------------------------------------------------------------------------------- queries
    def search_rows(
        self, vector: np.ndarray, k: int, *, exclude_row: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and distances of the ``k`` nearest transactions (``exclude_row`` left out)."""
        if k < 1 or not len(self):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        wanted = k + (exclude_row is not None)  # usearch widens its search to max(expansion_search, wanted)
        # one query: one thread (the default fans out to every core, and its tail suffers when they are busy)
        matches = self.index.search(np.asarray(vector, dtype=np.float32), wanted, threads=1)
        rows = matches.keys.astype(np.int64)
        distances = matches.distances
        if exclude_row is not None:
            keep = rows != exclude_row
            rows, distances = rows[keep], distances[keep]
        return rows[:k], distances[:k]

    def mix_of(self, vector: np.ndarray, k: int = DEFAULT_K, *, exclude_row: int | None = None) -> NeighbourMix:
        """Only the mix (the ``/score`` enrichment: no neighbour objects built)."""
        rows, _ = self.search_rows(vector, k, exclude_row=exclude_row)
        return neighbour_mix(self.outcomes[rows])

    def search(self, vector: np.ndarray, k: int = DEFAULT_K, *, exclude_row: int | None = None) -> SimilarResult:
        rows, distances = self.search_rows(vector, k, exclude_row=exclude_row)
        picked = self.outcomes[rows]
        return SimilarResult(
            neighbours=[neighbour_of(r, d) for r, d in zip(picked, distances.tolist(), strict=True)],
            mix=neighbour_mix(picked),
        )


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata saved next to the index; IndexFormatError when it is of another vector version."""
    try:
        meta = json.loads(meta_path(Path(path)).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no similar-transaction index at {path}") from None
    if meta.get("vector_version") != VECTOR_VERSION or meta.get("format") != INDEX_FILE_FORMAT:
        raise IndexFormatError(
            f"{path} holds vectors of version {meta.get('vector_version')} (format {meta.get('format')}); this code "
            f"makes version {VECTOR_VERSION}: rebuild it (python -m spark.jobs.similar_index --rebuild)"
        )
    return meta


def default_index_path(data_dir: Path) -> Path:
    """Where the index lives unless PA_SIMILAR_INDEX_PATH says otherwise."""
    return Path(data_dir) / "similar" / "index.usearch"
