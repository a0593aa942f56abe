"""Spark StructType derived from the contract's pydantic models (the one definition)."""

from __future__ import annotations

import types
from datetime import datetime
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pyspark.sql import types as T

_SCALARS: dict[type, T.DataType] = {
    str: T.StringType(),
    int: T.LongType(),
    float: T.DoubleType(),
    bool: T.BooleanType(),
    datetime: T.TimestampType(),
}


def _unwrap_optional(annotation) -> tuple[object, bool]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def spark_type(annotation) -> T.DataType:
    annotation, _ = _unwrap_optional(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        values = get_args(annotation)
        return _SCALARS[type(values[0])]
    if origin is list:
        (item,) = get_args(annotation)
        return T.ArrayType(spark_type(item), containsNull=False)
    if origin is dict:
        key, value = get_args(annotation)
        return T.MapType(spark_type(key), spark_type(value), valueContainsNull=False)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return struct_type_for(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    # Annotated[...] aliases resolve to their first argument
    args = get_args(annotation)
    if args:
        return spark_type(args[0])
    raise TypeError(f"no Spark type for {annotation!r}")


def struct_type_for(model: type[BaseModel]) -> T.StructType:
    fields = []
    for name, info in model.model_fields.items():
        _, optional = _unwrap_optional(info.annotation)
        # Fields with defaults may be absent from the JSON, so they are nullable in Spark too.
        nullable = optional or not info.is_required()
        fields.append(T.StructField(name, spark_type(info.annotation), nullable=nullable))
    return T.StructType(fields)
