"""How far ahead of the server clock an event's ``event_timestamp`` may be.

Velocity windows live in event time: recording a transaction trims what is older than its event time
minus the largest window, so one transaction dated far in the future (a client clock gone wrong, or a
forged request) would wipe a card's or merchant's history and velocity rules would stop firing. The
contract therefore refuses an ``event_timestamp`` later than the validating server's clock plus an
allowed skew (``PA_MAX_EVENT_SKEW_SECONDS``, a ``CommonSettings`` field): ``POST /score`` answers 422
naming the field, the stream processor dead-letters the record with the reason. (The velocity store
also never trims relative to a time later than the Redis server's clock: defence in depth.)

Validators read the bound from the pydantic validation context (``EVENT_CLOCK``: an ``EventClock``),
so a batch is judged against one clock reading and a service can pass its own settings; without it,
from this process's configuration (``configure_max_event_skew``), else from the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic_core import PydanticCustomError

DEFAULT_MAX_EVENT_SKEW_SECONDS: Final = 300
# key of the pydantic validation context holding the EventClock to judge event times by
EVENT_CLOCK: Final = "event_clock"
ERROR_TYPE: Final = "event_in_future"

_configured: list[float | None] = [None]


def max_event_skew_seconds() -> float:
    """This process's allowed skew: ``configure_max_event_skew``, else ``PA_MAX_EVENT_SKEW_SECONDS``
    (read once, through the settings class that defines it)."""
    value = _configured[0]
    if value is None:
        from payments_core.settings import EventTimeSettings  # noqa: PLC0415 - settings import the contract

        value = _configured[0] = float(EventTimeSettings().max_event_skew_seconds)
    return value


def configure_max_event_skew(seconds: float | None) -> None:
    """Set this process's allowed skew (a service's settings); None: read the environment again."""
    _configured[0] = None if seconds is None else float(seconds)


@dataclass(frozen=True)
class EventClock:
    """One reading of the server clock and the skew allowed on top of it."""

    now: datetime
    skew_seconds: float

    @classmethod
    def current(cls, skew_seconds: float | None = None) -> EventClock:
        return cls(datetime.now(UTC), max_event_skew_seconds() if skew_seconds is None else float(skew_seconds))

    @property
    def latest(self) -> datetime:
        """The latest acceptable event time."""
        return self.now + timedelta(seconds=self.skew_seconds)

    def context(self) -> dict[str, Any]:
        """A pydantic validation context carrying this clock."""
        return {EVENT_CLOCK: self}

    def check(self, value: datetime) -> datetime:
        """``value`` if it is not later than ``latest``, else a pydantic error (type ``event_in_future``)."""
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive = UTC, as velocity reads it
        if aware > self.latest:
            ahead = (aware - self.now).total_seconds()
            raise PydanticCustomError(
                ERROR_TYPE,
                "event time is {ahead} s ahead of the server clock; at most {skew} s are allowed "
                "(PA_MAX_EVENT_SKEW_SECONDS)",
                {"ahead": f"{ahead:.0f}", "skew": f"{self.skew_seconds:g}"},
            )
        return value


def clock_of(context: Any) -> EventClock:
    """The EventClock of a validation context, else a fresh reading with this process's skew."""
    if isinstance(context, dict):
        clock = context.get(EVENT_CLOCK)
        if isinstance(clock, EventClock):
            return clock
    return EventClock.current()
