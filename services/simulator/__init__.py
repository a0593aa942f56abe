"""Transaction simulator: realistic, reproducible, scenario-driven transaction events.

Service: ``python -m services.simulator run`` streams ``TransactionEvent`` JSON to
``payments.transactions`` (key = card token); ``backfill`` writes N days of history to Kafka or a
Parquet / JSON Lines file; ``scenario <name>`` switches running simulators; ``--help`` on each.

Library (for the lakehouse, the stream processor's load tests, benchmarks)::

    from datetime import UTC, datetime
    from services.simulator import GeneratorConfig, TransactionGenerator, backfill

    gen = TransactionGenerator(GeneratorConfig(seed=42, start=datetime(2026, 1, 1, tzinfo=UTC),
                                               events_per_second=20.0, scenario="normal"))
    batch = gen.batch(50_000)      # EventBatch: the next 50k events in time order
    batch.to_arrow()               # pyarrow.Table, exactly the TransactionEvent columns/types
                                   #   (event_timestamp timestamp[us, UTC], amount_minor int64, ...)
    batch.to_pandas()              # the same as a DataFrame (tz-aware UTC timestamps)
    batch.json_values()            # list[bytes]: one JSON document per event (the wire format)
    batch.keys()                   # list[bytes]: Kafka keys (card_token_id)
    batch.json_lines()             # bytes: JSON Lines
    gen.table(1_000_000)           # the next 1M events as one pyarrow.Table
    gen.set_scenario("issuer_outage", issuer="iss_br_02")  # from the next batch on
    gen.stats                      # events, approved, retries, fraud so far

    backfill(7, path="history.parquet", events_per_day=100_000, seed=42)   # or producer=EventProducer(...)

* ``GeneratorConfig.start`` set: simulated clock from ``start``; arrivals follow
  ``events_per_second`` with time-of-day / day-of-week seasonality, and the same config plus the
  same sequence of calls gives the same events, byte for byte. ``start=None``: real time
  (timestamps from the wall clock; ids are salted with the start time so restarts never repeat ids).
* Scenarios: ``normal``, ``issuer_outage``, ``fraud_ring``, ``bin_attack``, ``latency_spike``
  (see ``scenarios.py``). Issuers are ``iss_br_01``.. (``population.ISSUERS``).
* The hidden label ``is_fraud`` is part of the event (training/backtests only, never a feature).
* ``EventBatch.columns`` holds the internal arrays (codes, latent ``kind``: 0 legit, 1 stolen card,
  2 fraud ring, 3 card testing) for statistics.

Modules: ``population`` (the world), ``generator`` (causal outcome model, retries, clock),
``codes`` (the categorical codes), ``encode`` (Arrow/JSON), ``producer`` (Kafka), ``control`` (scenario
switches), ``runner`` (run loop and backfill), ``settings`` (``PA_*`` environment), ``__main__`` (CLI).
"""

from services.simulator.generator import GeneratorConfig, TransactionGenerator
from services.simulator.runner import backfill

__all__ = ["GeneratorConfig", "TransactionGenerator", "backfill"]
