"""Static reference data of the lakehouse (no network, no trained model, no Kafka needed).

* ``COUNTRIES``: every country the product sees (the five markets plus the cardholders' home countries
  that only show up cross-border) with name, region and a centroid for the world map (dashboard 12).
* ``SEGMENTS``: the merchant-segment dimension (contract enum ``MerchantSegment``) with its card-scheme
  MCC and a risk class; silver joins it onto every transaction.
* ``USD_PER_UNIT``: indicative FX rates, major units of each contract currency -> USD, so gold can add
  values across currencies. Gold values are DECIMAL(18,2) USD computed from integer minor units; they
  are analytics figures, never settlement amounts.
"""

from __future__ import annotations

from decimal import Decimal

from payments_core.contract.events import Currency, MerchantSegment, enum_values

# code -> (name, region, latitude, longitude)
COUNTRIES: dict[str, tuple[str, str, float, float]] = {
    "BR": ("Brazil", "LATAM", -14.24, -51.93),
    "US": ("United States", "North America", 37.09, -95.71),
    "MX": ("Mexico", "LATAM", 23.63, -102.55),
    "AR": ("Argentina", "LATAM", -38.42, -63.62),
    "CL": ("Chile", "LATAM", -35.68, -71.54),
    "CO": ("Colombia", "LATAM", 4.57, -74.30),
    "PE": ("Peru", "LATAM", -9.19, -75.02),
    "UY": ("Uruguay", "LATAM", -32.52, -55.77),
    "CA": ("Canada", "North America", 56.13, -106.35),
    "DE": ("Germany", "Europe", 51.17, 10.45),
    "ES": ("Spain", "Europe", 40.46, -3.75),
    "PT": ("Portugal", "Europe", 39.40, -8.22),
    "FR": ("France", "Europe", 46.23, 2.21),
    "GB": ("United Kingdom", "Europe", 55.38, -3.44),
    "IT": ("Italy", "Europe", 41.87, 12.57),
    "CN": ("China", "Asia", 35.86, 104.20),
    "JP": ("Japan", "Asia", 36.20, 138.25),
    "IN": ("India", "Asia", 20.59, 78.96),
}
MARKETS: tuple[str, ...] = ("BR", "US", "MX", "AR", "CL")

# segment -> (mcc, mcc description, risk class)
SEGMENTS: dict[str, tuple[str, str, str]] = {
    "Travel": ("4722", "Travel agencies and tour operators", "high"),
    "Retail": ("5311", "Department stores", "low"),
    "Gaming": ("7994", "Video game arcades and online gaming", "high"),
    "Digital": ("5818", "Digital goods", "high"),
    "Entertainment": ("7832", "Motion picture theatres and events", "medium"),
    "Grocery": ("5411", "Grocery stores and supermarkets", "low"),
    "Fuel": ("5541", "Service stations", "low"),
    "Subscription": ("5968", "Continuity and subscription merchants", "medium"),
}
assert set(SEGMENTS) == set(enum_values(MerchantSegment)), "segment dimension out of date with the contract"

USD_PER_UNIT: dict[str, Decimal] = {
    "BRL": Decimal("0.19"),
    "USD": Decimal("1.00"),
    "MXN": Decimal("0.055"),
    "ARS": Decimal("0.0011"),
    "CLP": Decimal("0.0011"),
    "EUR": Decimal("1.08"),
}
assert set(USD_PER_UNIT) == set(enum_values(Currency)), "FX table out of date with the contract"


def country_rows() -> list[dict]:
    return [
        {
            "country_code": c,
            "country_name": n,
            "region": r,
            "latitude": lat,
            "longitude": lon,
            "is_market": c in MARKETS,
        }
        for c, (n, r, lat, lon) in COUNTRIES.items()
    ]
