"""``scoring.coalesce_batches``: real-time mode's small Arrow batches are decided one by one while the
worker keeps up, and together once they wait (no Spark here: the input is a plain iterator)."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from services.stream_processor import pipeline
from services.stream_processor.scoring import coalesce_batches
from services.stream_processor.settings import StreamProcessorSettings


def batch(start: int, n: int) -> tuple[pa.Array, ...]:
    """Six columns like the Kafka source's (key, value, topic, partition, offset, timestamp)."""
    ids = list(range(start, start + n))
    return (
        pa.array([str(i).encode() for i in ids], pa.binary()),
        pa.array([f"v{i}".encode() for i in ids], pa.binary()),
        pa.array(["t"] * n, pa.string()),
        pa.array([0] * n, pa.int32()),
        pa.array(ids, pa.int64()),
        pa.array([0] * n, pa.timestamp("ms")),
    )


def offsets(groups: list[tuple[pa.Array, ...]]) -> list[list[int]]:
    return [g[4].to_pylist() for g in groups]


def test_waiting_batches_are_decided_together_in_order_up_to_the_cap():
    go, ready = threading.Event(), threading.Event()

    def source():
        yield batch(0, 4)
        go.wait(5)  # the rest arrives while the first batch is being decided
        for k in range(1, 10):
            yield batch(4 * k, 4)
        ready.set()

    it = coalesce_batches(source(), max_rows=16)
    first = next(it)
    go.set()
    ready.wait(5)
    time.sleep(0.05)
    groups = [first, *it]
    assert offsets(groups) == [list(range(4)), list(range(4, 20)), list(range(20, 36)), list(range(36, 40))]
    assert all(len({len(c) for c in g}) == 1 for g in groups)  # every column joined alike
    assert groups[1][1].to_pylist()[:2] == [b"v4", b"v5"]


def test_batches_that_come_one_at_a_time_are_decided_one_at_a_time():
    def source():
        for k in range(3):
            time.sleep(0.05)
            yield batch(4 * k, 4)

    assert offsets(list(coalesce_batches(source(), max_rows=2000))) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_an_input_error_fails_the_scorer():
    def source():
        yield batch(0, 4)
        raise OSError("socket closed")

    with pytest.raises(OSError, match="socket closed"):
        list(coalesce_batches(source(), max_rows=100))


def test_zero_turns_it_off():
    source = [batch(0, 4), batch(4, 4)]
    assert [g is s for g, s in zip(coalesce_batches(iter(source), 0), source, strict=True)] == [True, True]


def test_only_the_publishing_real_time_scorer_coalesces():
    settings = StreamProcessorSettings(mlflow_tracking_uri=None, _env_file=None)
    assert pipeline.scoring_config(settings, publish=True).coalesce_rows == settings.stream_realtime_coalesce_rows > 0
    assert pipeline.scoring_config(settings, publish=False).coalesce_rows == 0  # micro-batch: Spark's batches
    off = settings.model_copy(update={"stream_realtime_coalesce_rows": 0})
    assert pipeline.scoring_config(off, publish=True).coalesce_rows == 0
