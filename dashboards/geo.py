"""ISO 3166-1 numeric codes of the countries the product sees (``spark.etl.reference.COUNTRIES``).

The world map's shapes (npm ``world-atlas``, built into the control plane's /vendor/world-countries.geo.json
by ``make web``) are keyed by the numeric code; gold keys countries by the alpha-2 code.
"""

from __future__ import annotations

ISO_NUMERIC: dict[str, str] = {
    "AR": "032",
    "BR": "076",
    "CA": "124",
    "CL": "152",
    "CN": "156",
    "CO": "170",
    "DE": "276",
    "ES": "724",
    "FR": "250",
    "GB": "826",
    "IN": "356",
    "IT": "380",
    "JP": "392",
    "MX": "484",
    "PE": "604",
    "PT": "620",
    "US": "840",
    "UY": "858",
}
