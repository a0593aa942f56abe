"""The integer codes of the simulator's categorical columns (a code is an index into these tuples)
and its time units. The generator draws codes; the encoder turns them into contract values."""

from __future__ import annotations

from payments_core.contract.events import EntryMode, FlowType, PaymentSolution, enum_values
from payments_core.taxonomy import DECLINES

FLOWS: tuple[str, ...] = enum_values(FlowType)
ENTRY_MODES: tuple[str, ...] = enum_values(EntryMode)
SOLUTIONS: tuple[str, ...] = enum_values(PaymentSolution)
ANTIFRAUD_RESULTS: tuple[str | None, ...] = (None, "pass", "review", "fail")
REASONS: tuple[str | None, ...] = (None, *DECLINES)  # code 0 = no decline
RAW_CODES: tuple[str | None, ...] = (None, *(d.raw_code for d in DECLINES.values()))

US_PER_S = 1_000_000
US_PER_H = 3_600 * US_PER_S
US_PER_DAY = 24 * US_PER_H
