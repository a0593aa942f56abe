"""Command line: ``python -m services.simulator run|backfill|scenario|scenarios``.

Every option falls back to the environment (``PA_*``, see ``settings.py``), so ``make up`` runs
``python -m services.simulator run`` with no options.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import typer

from payments_core.contract.topics import SIMULATOR_CONTROL, TRANSACTIONS, prefixed
from services.simulator.control import ControlListener, publish_switch
from services.simulator.generator import GeneratorConfig, TransactionGenerator
from services.simulator.population import COUNTRIES, ISSUERS
from services.simulator.producer import EventProducer
from services.simulator.runner import backfill as run_backfill
from services.simulator.runner import run as run_loop
from services.simulator.scenarios import DESCRIPTIONS, SCENARIOS, ScenarioSwitch
from services.simulator.settings import SimulatorSettings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Transaction simulator: realistic, reproducible, scenario-driven events into Kafka.",
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _settings() -> SimulatorSettings:
    try:
        return SimulatorSettings()
    except Exception as exc:  # pydantic ValidationError: show which variable is wrong
        _fail(f"invalid PA_* environment: {exc}")
        raise


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{name} must be an ISO 8601 timestamp like 2026-01-01T00:00:00Z, not {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _parse_rate(value: str | None, default: float) -> float:
    if value is None:
        return default
    if value.lower() in ("max", "0", "unlimited"):
        return 0.0
    try:
        rate = float(value)
    except ValueError:
        _fail(f"--rate must be a number of events per second or 'max', not {value!r}")
    if rate < 0:
        _fail("--rate must be >= 0")
    return rate


def _check_scenario(name: str) -> None:
    if name not in SCENARIOS:
        _fail(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, _frame):
        typer.echo(f"{signal.Signals(signum).name}: stopping after the current batch and flushing", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@app.command()
def run(
    rate: str = typer.Option(None, help="Events per second, or 'max'. [env PA_SIMULATOR_RATE, default 200]"),
    count: int = typer.Option(None, min=0, help="Stop after this many events (default: run until stopped)"),
    duration: float = typer.Option(None, min=0, help="Stop after this many seconds"),
    scenario: str = typer.Option(None, help=f"Scenario at start: {', '.join(SCENARIOS)} [env PA_SIMULATOR_SCENARIO]"),
    issuer: str = typer.Option(None, help="Scenario target issuer id (iss_br_02) or BIN"),
    seed: int = typer.Option(None, min=0, help="Seed [env PA_SIMULATOR_SEED, default 42]"),
    start: str = typer.Option(
        None, help="Simulated clock start (ISO 8601) for reproducible timestamps; default real time"
    ),
    batch_size: int = typer.Option(None, min=1, help="Events per batch (default: rate/10, at most 20,000)"),
    bootstrap: str = typer.Option(None, help="Kafka bootstrap servers [env PA_KAFKA_BOOTSTRAP]"),
    topic_prefix: str = typer.Option(None, help="Topic name prefix [env PA_TOPIC_PREFIX]"),
    progress_interval: float = typer.Option(None, min=0.1, help="Seconds between progress lines"),
    control: bool = typer.Option(None, "--control/--no-control", help="Follow switches on the control topic"),
) -> None:
    """Stream events to payments.transactions until stopped (SIGTERM/Ctrl-C flush cleanly)."""
    _logging()
    s = _settings()
    scenario_explicit = scenario is not None or "simulator_scenario" in s.model_fields_set
    scenario = scenario or s.simulator_scenario
    _check_scenario(scenario)
    the_rate = _parse_rate(rate, s.simulator_rate)
    bootstrap = bootstrap or s.kafka_bootstrap
    prefix = s.topic_prefix if topic_prefix is None else topic_prefix
    try:
        gen = TransactionGenerator(
            GeneratorConfig(
                seed=s.simulator_seed if seed is None else seed,
                start=_parse_time(start, "--start") or s.simulator_start,
                events_per_second=the_rate or 200.0,
                scenario=scenario,
                issuer=issuer or s.simulator_issuer,
                n_merchants=s.simulator_merchants,
                n_cardholders=s.simulator_cardholders,
            )
        )
        producer = EventProducer(
            bootstrap,
            prefixed(TRANSACTIONS, prefix),
            compression=s.simulator_compression,
            linger_ms=s.simulator_linger_ms,
        )
    except ValueError as exc:
        _fail(str(exc))
    started = datetime.now(UTC)
    listener = None
    if s.simulator_control if control is None else control:
        listener = ControlListener(
            bootstrap, prefixed(SIMULATOR_CONTROL, prefix), since=started if scenario_explicit else None
        )
    stop = _stop_on_signals()
    target = f" ({gen.scenario_issuer})" if gen.scenario_issuer else ""
    typer.echo(
        f"simulator: {producer.topic} at {bootstrap}, rate {the_rate or 'max'} ev/s, scenario "
        f"{gen.scenario}{target}, seed {gen.config.seed}, clock "
        f"{'simulated from ' + gen.clock.isoformat() if gen.simulated else 'real time'}"
    )
    try:
        report = run_loop(
            gen,
            producer,
            rate=the_rate or None,
            count=count,
            duration=duration,
            batch_size=batch_size or s.simulator_batch_size,
            control=listener,
            stop=stop,
            progress=typer.echo,
            progress_interval=progress_interval or (1.0 if sys.stdout.isatty() else s.simulator_progress_interval),
            flush_timeout=15.0,
        )
    finally:
        if listener is not None:
            listener.close()
    typer.echo(f"done: {report.summary()}")
    if report.lost:
        typer.echo(f"error: {report.lost:,} events not delivered", err=True)
        raise typer.Exit(1)


@app.command()
def backfill(
    days: float = typer.Option(7.0, min=0.001, help="Days of history"),
    start: str = typer.Option(None, help="First timestamp (ISO 8601; default: DAYS before now)"),
    events_per_day: int = typer.Option(100_000, min=1, help="Average events per simulated day"),
    output: Path = typer.Option(None, help="Write to this .parquet / .jsonl file instead of Kafka"),
    seed: int = typer.Option(None, min=0, help="Seed [env PA_SIMULATOR_SEED, default 42]"),
    scenario: str = typer.Option("normal", help="Background scenario"),
    incidents: bool = typer.Option(
        True, "--incidents/--no-incidents", help="Sprinkle reproducible outages/attacks/latency spikes in history"
    ),
    bootstrap: str = typer.Option(None, help="Kafka bootstrap servers [env PA_KAFKA_BOOTSTRAP]"),
    topic_prefix: str = typer.Option(None, help="Topic name prefix [env PA_TOPIC_PREFIX]"),
) -> None:
    """Generate N days of history quickly (simulated clock), to Kafka or to a file for the lakehouse."""
    _logging()
    s = _settings()
    _check_scenario(scenario)
    producer = None
    if output is None:
        prefix = s.topic_prefix if topic_prefix is None else topic_prefix
        producer = EventProducer(
            bootstrap or s.kafka_bootstrap,
            prefixed(TRANSACTIONS, prefix),
            compression=s.simulator_compression,
            linger_ms=s.simulator_linger_ms,
        )
    stop = _stop_on_signals()
    try:
        report = run_backfill(
            days,
            _parse_time(start, "--start"),
            events_per_day=events_per_day,
            seed=s.simulator_seed if seed is None else seed,
            path=output,
            producer=producer,
            scenario=scenario,
            incidents=incidents,
            n_merchants=s.simulator_merchants,
            n_cardholders=s.simulator_cardholders,
            stop=stop,
            progress=typer.echo,
        )
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(
        f"backfill: {report.events:,} events {report.start:%Y-%m-%d %H:%M} .. {report.end:%Y-%m-%d %H:%M} "
        f"-> {report.target} in {report.seconds:.1f}s, approval {report.approval_rate:.1%}"
    )
    for inc in report.incidents:
        typer.echo(
            f"  incident {inc.scenario}{' ' + inc.issuer if inc.issuer else ''} "
            f"{inc.start:%Y-%m-%d %H:%M}-{inc.end:%H:%M}"
        )
    if report.delivery is not None:
        typer.echo(f"delivery: {report.delivery.summary()}")
        if report.delivery.lost:
            raise typer.Exit(1)


@app.command("scenario")
def switch_scenario(
    name: str = typer.Argument(..., help=f"One of: {', '.join(SCENARIOS)}"),
    issuer: str = typer.Option(None, help="Target issuer id (e.g. iss_br_02) or BIN"),
    bootstrap: str = typer.Option(None, help="Kafka bootstrap servers [env PA_KAFKA_BOOTSTRAP]"),
    topic_prefix: str = typer.Option(None, help="Topic name prefix [env PA_TOPIC_PREFIX]"),
) -> None:
    """Switch every running simulator to a scenario (publishes to payments.simulator.control)."""
    s = _settings()
    _check_scenario(name)
    if (
        issuer is not None
        and issuer.lower() not in {i.id for i in ISSUERS}
        and not (issuer.isdigit() and 6 <= len(issuer) <= 8)
    ):
        _fail(f"unknown issuer {issuer!r}; use an issuer id ({', '.join(i.id for i in ISSUERS)}) or a BIN")
    prefix = s.topic_prefix if topic_prefix is None else topic_prefix
    topic = prefixed(SIMULATOR_CONTROL, prefix)
    switch = ScenarioSwitch(scenario=name, issuer=issuer)
    try:
        publish_switch(bootstrap or s.kafka_bootstrap, topic, switch)
    except RuntimeError as exc:
        _fail(str(exc))
    typer.echo(f"published {switch.model_dump_json()} to {topic}")


@app.command()
def scenarios() -> None:
    """List the scenarios and the issuers they can target."""
    for name in SCENARIOS:
        typer.echo(f"{name:<14} {DESCRIPTIONS[name]}")
    typer.echo("\nissuers: " + ", ".join(f"{i.id} ({COUNTRIES[i.country]})" for i in ISSUERS))


if __name__ == "__main__":
    app()
