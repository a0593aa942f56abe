"""The model feature vector, defined once for training (Spark -> pandas) and scoring (one row).

``MODEL_FEATURES`` is the ordered list of column names every model (approval, risk, routing, retry)
is trained on and scored with. Categoricals are one-hot encoded against FIXED vocabularies taken
from the contract enums (no fitted encoders), so training and scoring cannot drift: a value outside
the vocabulary (e.g. a geo country other than the five markets) maps to an explicit ``=other``
column where one exists, otherwise to all zeros.

Two implementations over the same definitions, kept bit-identical by tests:

* ``feature_matrix(df)`` for a pandas DataFrame (training, backtest, stream batches);
* ``feature_vector(tx, derived, velocity)`` for one request dict (scoring API hot path).

Inputs: contract request fields (outcome fields are ignored), the derived features of
``payments_core.features`` (recomputed from the contract fields unless given), and the velocity
columns ``VELOCITY_FEATURES`` (0 when missing). Transforms: booleans -> 0/1, counts as is, money
(amount, velocity amount sums) as ``log1p`` of the amount (``math.log1p`` in both paths, so the
numbers are identical), scores as is. The matrix is float32.

Routing: ``ROUTE_COLUMNS`` are the ``payment_solution=*`` one-hot columns; the decision core scores
a copy of the vector per candidate route (``with_route``). Retry: ``next_attempt(tx, reason)`` is
the hypothetical next attempt of a declined transaction (the retry model predicts whether it is
approved); training uses the real retry rows (``is_retry`` with a soft ``previous_decline_code``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from payments_core.contract.events import (
    AntifraudResult,
    CardNetwork,
    Currency,
    DeclineReason,
    DeviceType,
    EntryMode,
    EntrySystem,
    FlowType,
    MerchantSegment,
    PaymentMethodType,
    PaymentSolution,
    enum_values,
)
from payments_core.features import AMOUNT_BUCKETS, RISK_TIERS, VELOCITY_FEATURES, derive_frame, derive_one

FEATURE_SCHEMA_VERSION = 1

# Markets of the product (SPEC: Brazil-first); any other country is "other".
GEO_MARKETS: tuple[str, ...] = ("BR", "US", "MX", "AR", "CL")

SCORE_FEATURES: tuple[str, ...] = ("fraud_score", "aml_risk_score", "device_trust_score", "composite_risk_score")
BOOL_FEATURES: tuple[str, ...] = (
    "uses_3ds",
    "three_ds_routed",
    "three_ds_friction",
    "three_ds_authenticated",
    "antifraud_used",
    "is_network_token",
    "has_passkey",
    "is_recurring",
    "is_retry",
    "is_cross_border",
    "is_weekend",
    "is_night",
)
# contract boolean fields with their defaults (TransactionRequest); derived booleans come from derive_*
_CONTRACT_BOOL_DEFAULTS = {
    name: False for name in BOOL_FEATURES if name not in ("is_cross_border", "is_weekend", "is_night")
}
_DERIVED_BOOLS = ("is_cross_border", "is_weekend", "is_night")
INT_FEATURES: tuple[str, ...] = ("retry_count", "attempt_number", "hour_of_day")
_INT_DEFAULTS = {"retry_count": 0, "attempt_number": 1}

VELOCITY_COUNT_FEATURES = tuple(n for n in VELOCITY_FEATURES if "_txn_count_" in n)
VELOCITY_AMOUNT_FEATURES = tuple(n for n in VELOCITY_FEATURES if "_amount_minor_" in n)

# One-hot vocabularies. ``None`` in a vocabulary is the explicit "missing" column (``=none``),
# "other" the explicit out-of-vocabulary column.
CATEGORICAL_VOCABULARIES: dict[str, tuple[str | None, ...]] = {
    "merchant_segment": enum_values(MerchantSegment),
    "card_network": enum_values(CardNetwork),
    "payment_method_type": enum_values(PaymentMethodType),
    "currency": enum_values(Currency),
    "entry_system": enum_values(EntrySystem),
    "flow_type": enum_values(FlowType),
    "entry_mode": enum_values(EntryMode),
    "payment_solution": enum_values(PaymentSolution),
    "device_type": enum_values(DeviceType),
    "antifraud_result": (*enum_values(AntifraudResult), None),
    "previous_decline_code": (*enum_values(DeclineReason), None),
    "geo_country": (*GEO_MARKETS, "other"),
    "amount_bucket": tuple(label for _, label in AMOUNT_BUCKETS),
    "risk_tier": tuple(label for _, label in RISK_TIERS),
}
_DERIVED_CATEGORICALS = ("amount_bucket", "risk_tier")
_NULLABLE_CATEGORICALS = ("antifraud_result", "previous_decline_code")


def _onehot_name(field: str, value: str | None) -> str:
    return f"{field}={'none' if value is None else value}"


def _build_names() -> tuple[str, ...]:
    names: list[str] = ["log_amount_major", *SCORE_FEATURES, *BOOL_FEATURES, *INT_FEATURES]
    names += list(VELOCITY_COUNT_FEATURES)
    names += [f"{n}_log1p" for n in VELOCITY_AMOUNT_FEATURES]
    for field, vocab in CATEGORICAL_VOCABULARIES.items():
        names += [_onehot_name(field, v) for v in vocab]
    return tuple(names)


MODEL_FEATURES: tuple[str, ...] = _build_names()
N_FEATURES = len(MODEL_FEATURES)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(MODEL_FEATURES)}
_ONEHOT_INDEX: dict[str, dict[str | None, int]] = {
    field: {v: FEATURE_INDEX[_onehot_name(field, v)] for v in vocab}
    for field, vocab in CATEGORICAL_VOCABULARIES.items()
}
# payment_solution one-hot column of each candidate route
ROUTE_COLUMNS: dict[str, int] = {v: i for v, i in _ONEHOT_INDEX["payment_solution"].items() if v is not None}


def _onehot_index(field: str, value: Any) -> int | None:
    table = _ONEHOT_INDEX[field]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return table.get(None)
    idx = table.get(value)
    if idx is None:
        idx = table.get("other")
    return idx


# ------------------------------------------------------------------------------------------ one row
# Where each input lands in the vector, worked out once (the one-row path runs per request).
_SCORE_AT = 1
_BOOL_AT = _SCORE_AT + len(SCORE_FEATURES)
_INT_AT = _BOOL_AT + len(BOOL_FEATURES)
_VEL_AT = _INT_AT + len(INT_FEATURES)
_TX_SCORES = tuple((_SCORE_AT + j, n) for j, n in enumerate(SCORE_FEATURES) if n != "composite_risk_score")
_COMPOSITE_AT = _SCORE_AT + SCORE_FEATURES.index("composite_risk_score")
_TX_BOOLS = tuple((_BOOL_AT + j, n) for j, n in enumerate(BOOL_FEATURES) if n not in _DERIVED_BOOLS)
_DERIVED_BOOL_AT = tuple((_BOOL_AT + j, n) for j, n in enumerate(BOOL_FEATURES) if n in _DERIVED_BOOLS)
_TX_INTS = tuple((_INT_AT + j, n, _INT_DEFAULTS[n]) for j, n in enumerate(INT_FEATURES) if n != "hour_of_day")
_HOUR_AT = _INT_AT + INT_FEATURES.index("hour_of_day")
_VEL_COUNTS = tuple((_VEL_AT + j, n) for j, n in enumerate(VELOCITY_COUNT_FEATURES))
_VEL_AMOUNTS = tuple((_VEL_AT + len(VELOCITY_COUNT_FEATURES) + j, n) for j, n in enumerate(VELOCITY_AMOUNT_FEATURES))
# (field, value -> column, column of a missing value, column of a value outside the vocabulary)
_ONEHOTS = tuple(
    (field, table, table.get(None), table.get("other"), field in _DERIVED_CATEGORICALS)
    for field, table in _ONEHOT_INDEX.items()
)


def feature_vector(
    tx: Mapping[str, Any], derived: Mapping[str, Any] | None = None, velocity: Mapping[str, Any] | None = None
) -> np.ndarray:
    """The model features of one transaction (float32, shape ``(N_FEATURES,)``).

    ``tx`` is a request/event dict (``TransactionRequest.model_dump()``), ``derived`` the output of
    ``derive_one(tx)`` (computed when omitted), ``velocity`` a mapping over ``VELOCITY_FEATURES``
    (missing names count as 0). Gives exactly the numbers of the matching ``feature_matrix`` row.
    """
    if derived is None:
        derived = derive_one(tx)
    velocity = velocity or {}
    values = [0.0] * N_FEATURES
    values[0] = math.log1p(float(derived["amount_major"]))
    for i, name in _TX_SCORES:
        values[i] = float(tx[name])
    values[_COMPOSITE_AT] = float(derived["composite_risk_score"])
    get = tx.get
    for i, name in _TX_BOOLS:
        if get(name, False):
            values[i] = 1.0
    for i, name in _DERIVED_BOOL_AT:
        if derived[name]:
            values[i] = 1.0
    for i, name, default in _TX_INTS:
        values[i] = float(get(name, default))
    values[_HOUR_AT] = float(derived["hour_of_day"])
    vel = velocity.get
    for i, name in _VEL_COUNTS:
        values[i] = float(vel(name) or 0)
    for i, name in _VEL_AMOUNTS:
        values[i] = math.log1p(float(vel(name) or 0))
    for field, table, missing, other, from_derived in _ONEHOTS:
        value = derived[field] if from_derived else get(field)
        # as _onehot_index: None and NaN are the missing value, anything else not in the table "other"
        missing_value = value is None or (isinstance(value, float) and math.isnan(value))
        idx = missing if missing_value else table.get(value, other)
        if idx is not None:
            values[idx] = 1.0
    # array('f') rounds each double to float32 as numpy's cast does, in a third of the time
    return np.frombuffer(array("f", values), dtype=np.float32)


# ------------------------------------------------------------------------------------------ frames
def _log1p_column(values: np.ndarray) -> np.ndarray:
    # math.log1p element by element: identical to the one-row path on every platform.
    return np.fromiter((math.log1p(v) for v in values.tolist()), dtype=np.float64, count=len(values))


def _column(df: pd.DataFrame, name: str, default: Any) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series([default] * len(df), index=df.index, dtype=object if default is None else None)


def feature_matrix(
    df: pd.DataFrame, derived: pd.DataFrame | None = None, velocity: pd.DataFrame | None = None
) -> np.ndarray:
    """The model features of every row of ``df`` (float32, shape ``(len(df), N_FEATURES)``).

    ``df`` holds contract fields (extra columns are ignored; velocity columns may be in ``df`` or
    in ``velocity``, aligned by position). ``derived`` defaults to ``derive_frame(df)``.
    """
    n = len(df)
    out = np.zeros((n, N_FEATURES), dtype=np.float64)
    if n == 0:
        return out.astype(np.float32)
    if derived is None:
        derived = derive_frame(df)
    out[:, 0] = _log1p_column(derived["amount_major"].to_numpy(dtype=np.float64))
    i = 1
    for name in SCORE_FEATURES:
        src = derived[name] if name == "composite_risk_score" else df[name]
        out[:, i] = src.to_numpy(dtype=np.float64)
        i += 1
    for name in BOOL_FEATURES:
        src = derived[name] if name in _DERIVED_BOOLS else _column(df, name, False)
        out[:, i] = src.fillna(False).astype(bool).to_numpy(dtype=np.float64)
        i += 1
    for name in INT_FEATURES:
        src = derived[name] if name == "hour_of_day" else _column(df, name, _INT_DEFAULTS[name])
        out[:, i] = src.fillna(_INT_DEFAULTS.get(name, 0)).to_numpy(dtype=np.float64)
        i += 1

    def vel(name: str) -> np.ndarray:
        if velocity is not None and name in velocity.columns:
            col = velocity[name]
        elif name in df.columns:
            col = df[name]
        else:
            return np.zeros(n, dtype=np.float64)
        return pd.to_numeric(col, errors="coerce").fillna(0).to_numpy(dtype=np.float64)

    for name in VELOCITY_COUNT_FEATURES:
        out[:, i] = vel(name)
        i += 1
    for name in VELOCITY_AMOUNT_FEATURES:
        out[:, i] = _log1p_column(vel(name))
        i += 1
    rows = np.arange(n)
    for field in CATEGORICAL_VOCABULARIES:
        src = derived[field] if field in _DERIVED_CATEGORICALS else _column(df, field, None)
        # one lookup per distinct value, not per row
        codes, uniques = pd.factorize(src, use_na_sentinel=True)  # -1: None / NaN
        lookup = np.array(
            [(-1 if (j := _onehot_index(field, v)) is None else j) for v in list(uniques)]
            + [-1 if (j := _onehot_index(field, None)) is None else j],
            dtype=np.int64,
        )
        idx = lookup[codes]  # codes == -1 picks the last entry: the missing value's column
        hit = idx >= 0
        out[rows[hit], idx[hit]] = 1.0
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------ helpers
def with_route(x: np.ndarray, route: str) -> np.ndarray:
    """A copy of feature row(s) ``x`` with ``payment_solution`` set to ``route`` (routing model)."""
    y = np.array(x, dtype=np.float32, copy=True)
    cols = list(ROUTE_COLUMNS.values())
    y[..., cols] = 0.0
    y[..., ROUTE_COLUMNS[route]] = 1.0
    return y


def next_attempt(tx: Mapping[str, Any], decline_reason: str) -> dict[str, Any]:
    """The hypothetical retry of ``tx`` after a decline for ``decline_reason`` (retry model input)."""
    nxt = dict(tx)
    nxt["is_retry"] = True
    nxt["retry_count"] = int(tx.get("retry_count", 0)) + 1
    nxt["attempt_number"] = int(tx.get("attempt_number", 1)) + 1
    nxt["previous_decline_code"] = decline_reason
    return nxt


def retry_feature_vector(x: np.ndarray, decline_reason: str) -> np.ndarray:
    """``feature_vector(next_attempt(tx, reason), ...)`` computed from ``x`` = the vector of ``tx``
    (same numbers, without re-deriving)."""
    y = np.array(x, dtype=np.float32, copy=True)
    y[..., FEATURE_INDEX["is_retry"]] = 1.0
    y[..., FEATURE_INDEX["retry_count"]] += 1.0
    y[..., FEATURE_INDEX["attempt_number"]] += 1.0
    for idx in _ONEHOT_INDEX["previous_decline_code"].values():
        y[..., idx] = 0.0
    y[..., _ONEHOT_INDEX["previous_decline_code"][decline_reason]] = 1.0
    return y
