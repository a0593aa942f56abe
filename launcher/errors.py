"""Errors of the launcher: a missing prerequisite says what to do about it."""

from spark.common.jars import PrerequisiteError

__all__ = ["PrerequisiteError"]
