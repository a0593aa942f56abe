"""Shared samples: generating is cheap, but the same week of events serves many checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from services.simulator.generator import GeneratorConfig, TransactionGenerator

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def sample(
    scenario: str = "normal", n: int = 200_000, seed: int = 7, issuer: str | None = None, events_per_second: float = 0.5
) -> tuple[TransactionGenerator, pd.DataFrame]:
    gen = TransactionGenerator(
        GeneratorConfig(seed=seed, start=START, events_per_second=events_per_second, scenario=scenario, issuer=issuer)
    )
    frames = [gen.batch(50_000).to_pandas() for _ in range(n // 50_000)]
    return gen, pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def week() -> pd.DataFrame:
    """~4.6 simulated days of normal traffic (0.5 ev/s average)."""
    return sample()[1]


@pytest.fixture(scope="session")
def generator_and_week() -> tuple[TransactionGenerator, pd.DataFrame]:
    return sample(seed=11, n=100_000)
