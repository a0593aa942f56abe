"""Money is integer minor units in the contract; Decimal at the edges, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

# ISO 4217 minor-unit exponents for the currencies the product handles.
CURRENCY_EXPONENT: dict[str, int] = {"BRL": 2, "USD": 2, "MXN": 2, "ARS": 2, "CLP": 0, "EUR": 2}


def to_minor_units(amount: Decimal | str | int, currency: str) -> int:
    """Decimal major units -> integer minor units (banker's rounding on the last digit)."""
    exponent = CURRENCY_EXPONENT[currency]
    quantum = Decimal(1).scaleb(-exponent)
    return int((Decimal(amount).quantize(quantum, rounding=ROUND_HALF_EVEN)).scaleb(exponent))


def from_minor_units(amount_minor: int, currency: str) -> Decimal:
    """Integer minor units -> exact Decimal major units."""
    return Decimal(int(amount_minor)).scaleb(-CURRENCY_EXPONENT[currency])
