"""Columnar batch -> pyarrow Table / pandas DataFrame / JSON bytes per event, vectorised.

The JSON is assembled without a per-row Python loop: fixed-width parts (ids, timestamp, BIN,
fingerprint, IP, scores) are written as byte matrices with numpy; the categorical and boolean
fields are grouped into a few combined codes whose JSON fragments are precomputed, so each group
is one ``take``; integers are cast by Arrow; one ``binary_join_element_wise`` glues the parts.
The output is plain JSON (``orjson.loads`` / ``TransactionEvent.model_validate_json`` read it),
with timestamps as RFC 3339 UTC (``...T12:34:56.123456Z``) like ``payments_core`` JsonSerde.
"""

from __future__ import annotations

from functools import cache
from itertools import product
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from payments_core.contract.arrow import arrow_schema
from payments_core.contract.events import TransactionEvent
from services.simulator import codes as C
from services.simulator import population as P

EVENT_FIELDS: tuple[str, ...] = tuple(TransactionEvent.model_fields)

ARROW_SCHEMA = arrow_schema(TransactionEvent)  # derived from the contract, in its field order

MAX_ATTEMPT = 8
# the boolean fields packed into group 3, in bit order
_G3_BOOLS = (
    "uses_3ds",
    "three_ds_routed",
    "three_ds_friction",
    "three_ds_authenticated",
    "antifraud_used",
    "is_network_token",
    "has_passkey",
    "is_recurring",
    "is_approved",
    "is_fraud",
)
_G3_COLS = (
    "uses_3ds",
    "routed",
    "friction",
    "authenticated",
    "af_used",
    "nt",
    "passkey",
    "recurring",
    "approved",
    "is_fraud",
)


def _table(strings: list[str]) -> np.ndarray:
    """Equal-length strings -> (k, w) uint8 lookup table."""
    return np.frombuffer("".join(strings).encode(), np.uint8).reshape(len(strings), -1)


# Lookup tables: formatting is a fancy-index into these, no per-digit arithmetic.
_LUT4 = _table([f"{i:04d}" for i in range(10_000)])
_HEX4 = _table([f"{i:04x}" for i in range(1 << 16)])
_OCTET = _table([f"{i:03d}." for i in range(256)])
_SCORE = _table([f"{i // 10_000}.{i % 10_000:04d}" for i in range(10_001)])


def _digits(x: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII zero-padded decimal digits of non-negative integers."""
    x = x.astype(np.int64)
    chunks = []
    while width > 0:
        w = min(4, width)
        chunks.append(_LUT4[x % 10_000, 4 - w :])
        x = x // 10_000
        width -= w
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks[::-1], axis=1)


def _hex(x: np.ndarray, width: int) -> np.ndarray:
    """(n, width) lower-case hex digits (width a multiple of 4)."""
    x = x.astype(np.uint64)
    parts = [_HEX4[((x >> np.uint64(16 * k)) & np.uint64(0xFFFF)).astype(np.intp)] for k in range(width // 4)]
    return np.concatenate(parts[::-1], axis=1)


def _const(b: bytes) -> np.ndarray:
    return np.frombuffer(b, np.uint8)[None, :]


def _rows(n: int, parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate fixed-width parts (constants broadcast) into an (n, W) uint8 matrix."""
    return np.concatenate([np.broadcast_to(p, (n, p.shape[1])) for p in parts], axis=1)


def _strings(mat: np.ndarray) -> pa.Array:
    """(n, W) uint8 matrix -> Arrow string array, zero-copy."""
    n, w = mat.shape
    mat = np.ascontiguousarray(mat)
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(mat))


def _timestamp(ts_us: np.ndarray) -> np.ndarray:
    """(n, 26) 'YYYY-MM-DDTHH:MM:SS.ffffff' in UTC."""
    days = ts_us // C.US_PER_DAY
    lo, hi = int(days.min()), int(days.max())
    first = np.datetime64(lo, "D")
    dates = _table([f"{first + i}T" for i in range(hi - lo + 1)])
    in_day = ts_us - days * C.US_PER_DAY
    secs = in_day // C.US_PER_S
    hm = (secs // 3600) * 100 + (secs // 60) % 60
    return _rows(
        ts_us.shape[0],
        [
            dates[days - lo],
            _LUT4[hm, :2],
            _const(b":"),
            _LUT4[hm, 2:],
            _const(b":"),
            _LUT4[secs % 60, 2:],
            _const(b"."),
            _digits(in_day % C.US_PER_S, 6),
        ],
    )


def _ip(ip: np.ndarray) -> np.ndarray:
    """(n, 15) dotted quad; every octet of a simulated address has three digits."""
    ip = ip.astype(np.int64)
    return _rows(
        ip.shape[0], [_OCTET[ip >> 24], _OCTET[(ip >> 16) & 255], _OCTET[(ip >> 8) & 255], _OCTET[ip & 255, :3]]
    )


def _score(x: np.ndarray) -> np.ndarray:
    """(n, 6) 'd.dddd' for scores in [0, 1]."""
    return _SCORE[np.rint(x * 10_000).astype(np.intp)]


def _j(value: Any) -> str:
    return orjson.dumps(value).decode()


@cache
def _groups() -> dict[str, pa.Array]:
    """Precomputed JSON fragments of the combined categorical codes."""
    g5 = [
        f',"issuer_country":{_j(ic)},"geo_country":{_j(geo)},"currency":{_j(P.CURRENCY_OF_COUNTRY[gi])},"amount_minor":'
        for ic, (gi, geo) in product(P.COUNTRIES, enumerate(P.COUNTRIES[: P.GEO_COUNTRIES]))
    ]
    g1 = [
        f',"merchant_segment":{_j(s)},"entry_system":{_j(e)},"flow_type":{_j(f)},"entry_mode":{_j(m)}'
        for s, e, f, m in product(P.SEGMENTS, P.ENTRY_SYSTEMS, C.FLOWS, C.ENTRY_MODES)
    ]
    g2 = [
        f',"card_network":{_j(nw)},"payment_method_type":{_j(me)},"device_type":{_j(d)},"payment_solution":{_j(so)}'
        for nw, me, d, so in product(P.NETWORKS, P.METHODS, P.DEVICE_TYPES, C.SOLUTIONS)
    ]
    g3 = []
    for af, bits in product(C.ANTIFRAUD_RESULTS, range(1 << len(_G3_BOOLS))):
        flags = ",".join(f'"{name}":{_j(bool(bits >> i & 1))}' for i, name in enumerate(_G3_BOOLS))
        g3.append(f',"antifraud_result":{_j(af)},{flags}')
    g4 = []
    for reason_i, prev_i, attempt in product(range(len(C.REASONS)), range(len(C.REASONS)), range(MAX_ATTEMPT)):
        a = max(attempt, 1)
        g4.append(
            f',"is_retry":{_j(a > 1)},"retry_count":{a - 1},"attempt_number":{a},'
            f'"previous_decline_code":{_j(C.REASONS[prev_i])},"decline_reason":{_j(C.REASONS[reason_i])},'
            f'"decline_code_raw":{_j(C.RAW_CODES[reason_i])},"processing_time_ms":'
        )
    return {k: pa.array(v, pa.string()) for k, v in {"g1": g1, "g2": g2, "g3": g3, "g4": g4, "g5": g5}.items()}


def _cat(values: tuple, codes: np.ndarray) -> pa.Array:
    return pa.array(list(values), pa.string()).take(pa.array(codes.astype(np.int32)))


class EventBatch:
    """A batch of generated events in columnar form (internal codes + the population to decode them).

    ``to_arrow()`` / ``to_pandas()`` give exactly the contract columns; ``json_values()`` the wire
    bytes; ``keys()`` the Kafka keys (card token). ``columns`` exposes the internal arrays (codes,
    latent ``kind``) for statistics.
    """

    def __init__(self, columns: dict[str, np.ndarray], population: P.Population):
        self.columns = columns
        self.population = population
        self.columns["is_fraud"] = columns["kind"] > 0

    def __len__(self) -> int:
        return int(self.columns["ts"].shape[0])

    # --- shared fixed-width pieces
    def _merchant_ids(self) -> np.ndarray:
        return self.population.merchant_number[self.columns["merchant"]]

    def _bins(self) -> np.ndarray:
        return self.population.bin_value[self.columns["bin_idx"]]

    def keys(self) -> list[bytes]:
        """Kafka keys: the card token of each event."""
        n = len(self)
        mat = _rows(n, [_const(b"tok_"), _digits(self.columns["token_num"], 8)])
        return np.ascontiguousarray(mat).view("S12").ravel().tolist()

    def json_array(self) -> pa.StringArray:
        """One JSON object per event as an Arrow string array."""
        c = self.columns
        n = len(self)
        if int(c["attempt"].max(initial=1)) >= MAX_ATTEMPT:
            raise ValueError(f"attempt_number above {MAX_ATTEMPT - 1} is not supported by the encoder")
        fixed = _rows(
            n,
            [
                _const(b'{"schema_version":1,"transaction_id":"txn_'),
                _hex(c["txn_id"], 16),
                _const(b'","event_timestamp":"'),
                _timestamp(c["ts"]),
                _const(b'Z","merchant_id":"m_'),
                _digits(self._merchant_ids(), 6),
                _const(b'","cardholder_id":"ch_'),
                _digits(c["holder_num"], 7),
                _const(b'","card_token_id":"tok_'),
                _digits(c["token_num"], 8),
                _const(b'","card_bin":"'),
                _digits(self._bins(), 6),
                _const(b'","device_fingerprint":"dev_'),
                _hex(c["device_fp"], 12),
                _const(b'","ip_address":"'),
                _ip(c["ip"]),
                _const(b'","fraud_score":'),
                _score(c["fraud_score"]),
                _const(b',"aml_risk_score":'),
                _score(c["aml"]),
                _const(b',"device_trust_score":'),
                _score(c["trust"]),
            ],
        )
        g = _groups()
        g5 = c["issuer_country"].astype(np.int32) * P.GEO_COUNTRIES + c["geo"]
        g1 = ((c["segment"].astype(np.int32) * 4 + c["entry_system"]) * 5 + c["flow"]) * 4 + c["entry_mode"]
        g2 = ((c["network"].astype(np.int32) * 2 + c["method"]) * 4 + c["device_type"]) * 6 + c["solution"]
        bits = np.zeros(n, np.int32)
        for i, name in enumerate(_G3_COLS):
            bits |= c[name].astype(np.int32) << i
        g3 = c["af_result"].astype(np.int32) * (1 << len(_G3_COLS)) + bits
        g4 = (c["reason"].astype(np.int32) * len(C.REASONS) + c["prev_reason"]) * MAX_ATTEMPT + c["attempt"]
        take = pc.take
        return pc.binary_join_element_wise(
            _strings(fixed),
            take(g["g5"], pa.array(g5.astype(np.int32))),
            pc.cast(pa.array(c["amount_minor"]), pa.string()),
            take(g["g1"], pa.array(g1.astype(np.int32))),
            take(g["g2"], pa.array(g2.astype(np.int32))),
            take(g["g3"], pa.array(g3.astype(np.int32))),
            take(g["g4"], pa.array(g4.astype(np.int32))),
            pc.cast(pa.array(c["processing_ms"]), pa.string()),
            "}",
            "",
        )

    def json_values(self) -> list[bytes]:
        """One JSON document (bytes) per event, ready for ``Producer.produce``."""
        return self.json_array().cast(pa.binary()).to_pylist()

    def json_lines(self) -> bytes:
        """All events as JSON Lines (one object per line)."""
        lines = pc.binary_join_element_wise(self.json_array(), "\n", "")
        _, offsets, data = lines.buffers()
        bounds = np.frombuffer(offsets, np.int32)[lines.offset : lines.offset + len(lines) + 1]
        return data.to_pybytes()[bounds[0] : bounds[-1]]

    def to_arrow(self) -> pa.Table:
        """Exactly the contract columns and types (timestamps tz-aware UTC, money integer minor units)."""
        c = self.columns
        n = len(self)
        cols: dict[str, pa.Array] = {
            "schema_version": pa.array(np.ones(n, np.int64)),
            "transaction_id": _strings(_rows(n, [_const(b"txn_"), _hex(c["txn_id"], 16)])),
            "event_timestamp": pa.array(c["ts"], pa.timestamp("us", tz="UTC")),
            "merchant_id": _strings(_rows(n, [_const(b"m_"), _digits(self._merchant_ids(), 6)])),
            "merchant_segment": _cat(P.SEGMENTS, c["segment"]),
            "cardholder_id": _strings(_rows(n, [_const(b"ch_"), _digits(c["holder_num"], 7)])),
            "card_token_id": _strings(_rows(n, [_const(b"tok_"), _digits(c["token_num"], 8)])),
            "card_bin": _strings(_digits(self._bins(), 6)),
            "card_network": _cat(P.NETWORKS, c["network"]),
            "payment_method_type": _cat(P.METHODS, c["method"]),
            "issuer_country": _cat(P.COUNTRIES, c["issuer_country"]),
            "geo_country": _cat(P.COUNTRIES, c["geo"]),
            "amount_minor": pa.array(c["amount_minor"].astype(np.int64)),
            "currency": _cat(P.CURRENCY_OF_COUNTRY, c["geo"]),
            "entry_system": _cat(P.ENTRY_SYSTEMS, c["entry_system"]),
            "flow_type": _cat(C.FLOWS, c["flow"]),
            "entry_mode": _cat(C.ENTRY_MODES, c["entry_mode"]),
            "payment_solution": _cat(C.SOLUTIONS, c["solution"]),
            "device_type": _cat(P.DEVICE_TYPES, c["device_type"]),
            "device_fingerprint": _strings(_rows(n, [_const(b"dev_"), _hex(c["device_fp"], 12)])),
            "ip_address": _strings(_ip(c["ip"])),
            "uses_3ds": pa.array(c["uses_3ds"]),
            "three_ds_routed": pa.array(c["routed"]),
            "three_ds_friction": pa.array(c["friction"]),
            "three_ds_authenticated": pa.array(c["authenticated"]),
            "antifraud_used": pa.array(c["af_used"]),
            "antifraud_result": _cat(C.ANTIFRAUD_RESULTS, c["af_result"]),
            "is_network_token": pa.array(c["nt"]),
            "has_passkey": pa.array(c["passkey"]),
            "is_recurring": pa.array(c["recurring"]),
            "is_retry": pa.array(c["attempt"] > 1),
            "retry_count": pa.array(c["attempt"].astype(np.int64) - 1),
            "attempt_number": pa.array(c["attempt"].astype(np.int64)),
            "previous_decline_code": _cat(C.REASONS, c["prev_reason"]),
            "fraud_score": pa.array(c["fraud_score"].astype(np.float64)),
            "aml_risk_score": pa.array(c["aml"].astype(np.float64)),
            "device_trust_score": pa.array(c["trust"].astype(np.float64)),
            "is_approved": pa.array(c["approved"]),
            "decline_reason": _cat(C.REASONS, c["reason"]),
            "decline_code_raw": _cat(C.RAW_CODES, c["reason"]),
            "processing_time_ms": pa.array(c["processing_ms"].astype(np.int64)),
            "is_fraud": pa.array(c["is_fraud"]),
        }
        return pa.Table.from_arrays([cols[f] for f in EVENT_FIELDS], schema=ARROW_SCHEMA)

    def to_pandas(self) -> pd.DataFrame:
        return self.to_arrow().to_pandas()

    def to_dicts(self) -> list[dict[str, Any]]:
        """Events as dicts (timestamps as aware datetimes) - slow, for tests and small samples."""
        return self.to_arrow().to_pylist()
