"""Arrow schema derived from the contract's pydantic models (the one definition), for writers of
columnar batches (the simulator's Parquet and Arrow output)."""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any, Literal, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel

SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of one field annotation (optional, Annotated and Literal unwrapped)."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return arrow_type(args[0])
    if get_origin(annotation) is typing.Annotated:
        return arrow_type(get_args(annotation)[0])
    if get_origin(annotation) is Literal:
        return SCALARS[type(get_args(annotation)[0])]
    if get_origin(annotation) is list:
        return pa.list_(arrow_type(get_args(annotation)[0]))
    return SCALARS[annotation]


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """Fields in the model's order, nullable as Arrow fields always are."""
    return pa.schema([(name, arrow_type(info.annotation)) for name, info in model.model_fields.items()])
