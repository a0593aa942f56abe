"""The simulated world: issuers, merchants, cardholders with cards and devices, fraud rings and the
card-testing crew. Built once from a seed (columnar numpy arrays, indexed by integer ids) and then
only read by the generator.

Geography is Brazil-first (SPEC): transactions happen in BR 72%, US 10%, MX 8%, AR 6%, CL 4%;
cardholders live in those countries plus a few European ones (they only show up cross-border).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from payments_core.contract.events import (
    CardNetwork,
    DeviceType,
    EntrySystem,
    MerchantSegment,
    PaymentMethodType,
    enum_values,
)

# ---------------------------------------------------------------------------- reference data
COUNTRIES: tuple[str, ...] = ("BR", "US", "MX", "AR", "CL", "DE", "ES", "PT")
GEO_COUNTRIES = 5  # the first five are where transactions happen (merchant / acquiring country)
GEO_SHARE = np.array([0.72, 0.10, 0.08, 0.06, 0.04])
HOME_SHARE = np.array([0.70, 0.10, 0.08, 0.06, 0.04, 0.007, 0.007, 0.006])
UTC_OFFSET_H = np.array([-3, -5, -6, -3, -4, 1, 1, 0])
CURRENCY_OF_COUNTRY = ("BRL", "USD", "MXN", "ARS", "CLP", "EUR", "EUR", "EUR")
# BRL -> local currency (major units), rough, only for plausible local amounts
FX_FROM_BRL = np.array([1.0, 0.19, 3.4, 190.0, 175.0, 0.17, 0.17, 0.17])
# first IPv4 octets per country (all three-digit so addresses have a fixed width of 15)
IP_FIRST_OCTETS: tuple[tuple[int, ...], ...] = (
    (177, 179, 186, 187, 189, 191, 200, 201),
    (104, 107, 108, 128, 173, 198),
    (187, 189, 201, 148),
    (181, 186, 190, 200),
    (152, 181, 186, 190, 200),
    (109, 141, 176, 217),
    (213, 217, 188),
    (188, 193, 213),
)

# the contract's vocabularies, in its order (the share arrays below follow that order)
SEGMENTS: tuple[str, ...] = enum_values(MerchantSegment)
SEGMENT_MERCHANT_SHARE = np.array([0.08, 0.26, 0.08, 0.14, 0.10, 0.12, 0.07, 0.15])
# median ticket in BRL and log-normal sigma per segment
SEGMENT_MEDIAN_BRL = np.array([380.0, 95.0, 22.0, 19.0, 48.0, 72.0, 110.0, 39.0])
SEGMENT_SIGMA = np.array([0.80, 0.95, 1.00, 0.90, 0.75, 0.70, 0.50, 0.45])
# probability that a transaction at a merchant of this segment is cross-border
SEGMENT_XBORDER_P = np.array([0.22, 0.03, 0.10, 0.12, 0.05, 0.01, 0.01, 0.06])
# relative propensity of opportunistic (stolen card) fraud per segment
SEGMENT_FRAUD_MULT = np.array([2.0, 1.0, 2.5, 2.5, 1.2, 0.4, 0.5, 0.8])

NETWORKS: tuple[str, ...] = enum_values(CardNetwork)
NETWORK_SHARE_BY_COUNTRY = {
    0: (0.42, 0.46, 0.07, 0.05),
    1: (0.55, 0.25, 0.14, 0.06),
}
NETWORK_SHARE_DEFAULT = (0.50, 0.42, 0.06, 0.02)
DEBIT_SHARE = np.array([0.35, 0.40, 0.45, 0.40, 0.40, 0.50, 0.50, 0.50])
METHODS: tuple[str, ...] = enum_values(PaymentMethodType)

DEVICE_TYPES: tuple[str, ...] = enum_values(DeviceType)
DEVICE_TYPE_SHARE = np.array([0.24, 0.35, 0.35, 0.06])

ENTRY_SYSTEMS: tuple[str, ...] = enum_values(EntrySystem)
ENTRY_SYSTEM_SHARE = np.array([0.25, 0.18, 0.12, 0.45])
TIERS: tuple[str, ...] = ("low", "medium", "high")
THREEDS_POLICIES: tuple[str, ...] = ("none", "risk_based", "always")


@dataclass(frozen=True)
class IssuerSpec:
    id: str
    country: int  # index into COUNTRIES
    share: float  # share of the country's cards
    dnh: float  # base do-not-honor probability
    tech_fail: float  # base issuer-unavailable probability
    fraud_threshold: float  # fraud score above which the issuer starts declining as fraud
    latency_ms: float  # median issuer processing time


ISSUERS: tuple[IssuerSpec, ...] = (
    IssuerSpec("iss_br_01", 0, 0.20, 0.018, 0.0015, 0.80, 95),
    IssuerSpec("iss_br_02", 0, 0.18, 0.022, 0.0020, 0.78, 110),
    IssuerSpec("iss_br_03", 0, 0.16, 0.016, 0.0012, 0.82, 70),  # digital bank: fast, lenient
    IssuerSpec("iss_br_04", 0, 0.14, 0.030, 0.0030, 0.74, 150),
    IssuerSpec("iss_br_05", 0, 0.12, 0.026, 0.0025, 0.76, 130),
    IssuerSpec("iss_br_06", 0, 0.08, 0.034, 0.0045, 0.72, 190),  # state bank: strict, slow
    IssuerSpec("iss_br_07", 0, 0.07, 0.020, 0.0018, 0.80, 85),
    IssuerSpec("iss_br_08", 0, 0.05, 0.040, 0.0050, 0.70, 210),
    IssuerSpec("iss_us_01", 1, 0.35, 0.020, 0.0010, 0.80, 80),
    IssuerSpec("iss_us_02", 1, 0.30, 0.022, 0.0010, 0.80, 85),
    IssuerSpec("iss_us_03", 1, 0.20, 0.028, 0.0015, 0.76, 90),
    IssuerSpec("iss_us_04", 1, 0.15, 0.030, 0.0015, 0.76, 95),
    IssuerSpec("iss_mx_01", 2, 0.45, 0.030, 0.0030, 0.76, 140),
    IssuerSpec("iss_mx_02", 2, 0.35, 0.034, 0.0035, 0.74, 160),
    IssuerSpec("iss_mx_03", 2, 0.20, 0.040, 0.0040, 0.72, 180),
    IssuerSpec("iss_ar_01", 3, 0.40, 0.036, 0.0050, 0.74, 170),
    IssuerSpec("iss_ar_02", 3, 0.35, 0.040, 0.0060, 0.72, 200),
    IssuerSpec("iss_ar_03", 3, 0.25, 0.044, 0.0060, 0.72, 220),
    IssuerSpec("iss_cl_01", 4, 0.55, 0.024, 0.0020, 0.78, 120),
    IssuerSpec("iss_cl_02", 4, 0.45, 0.028, 0.0025, 0.76, 130),
    IssuerSpec("iss_de_01", 5, 1.00, 0.026, 0.0010, 0.78, 110),
    IssuerSpec("iss_es_01", 6, 1.00, 0.028, 0.0012, 0.78, 115),
    IssuerSpec("iss_pt_01", 7, 1.00, 0.028, 0.0012, 0.78, 120),
)
DEFAULT_OUTAGE_ISSUER = 1  # iss_br_02, ~13% of all traffic
BIN_NETWORKS = (0, 0, 1, 1, 2, 3)  # every issuer: two visa, two mastercard, one amex, one discover BIN
BIN_PREFIXES = {
    0: ("4",),
    1: ("51", "52", "53", "54", "55", "22", "23", "25", "27"),
    2: ("34", "37"),
    3: ("6011", "65"),
}


@dataclass(frozen=True)
class PopulationConfig:
    seed: int = 42
    n_merchants: int = 3_000
    n_cardholders: int = 200_000
    n_rings: int = 6

    def __post_init__(self) -> None:
        if self.n_merchants < 50:
            raise ValueError("n_merchants must be at least 50 (every country needs merchants)")
        if self.n_cardholders < 1_000:
            raise ValueError("n_cardholders must be at least 1000")
        if self.n_cardholders >= 9_000_000:
            raise ValueError("n_cardholders must be below 9,000,000 (ids are 7 digits)")


@dataclass
class Population:
    """Columnar world. Every array is indexed by the entity's integer index."""

    config: PopulationConfig
    # issuers
    issuer_country: np.ndarray
    issuer_dnh: np.ndarray
    issuer_tech_fail: np.ndarray
    issuer_fraud_threshold: np.ndarray
    issuer_latency_ms: np.ndarray
    bin_issuer: np.ndarray  # per BIN
    bin_value: np.ndarray  # 6-digit BIN as int
    bin_network: np.ndarray
    # merchants (sorted by geo country; merchant_country_bounds[c] = (lo, hi))
    merchant_number: np.ndarray
    merchant_country: np.ndarray
    merchant_segment: np.ndarray
    merchant_tier: np.ndarray
    merchant_cum_weight: np.ndarray
    merchant_country_cum: np.ndarray  # per geo country (lo, hi) cumulative weight bounds
    merchant_amount_median: np.ndarray  # BRL
    merchant_entry_system: np.ndarray
    merchant_entry_secondary: np.ndarray
    merchant_3ds_policy: np.ndarray
    merchant_supports_nt: np.ndarray
    merchant_supports_passkey: np.ndarray
    merchant_supports_wallet: np.ndarray
    merchant_antifraud: np.ndarray
    merchant_retries: np.ndarray  # merchant retries soft declines automatically
    merchant_max_attempts: np.ndarray
    # cardholders (sorted by home country)
    ch_number: np.ndarray
    ch_country: np.ndarray
    ch_cum_weight: np.ndarray
    ch_country_cum: np.ndarray  # per country (lo, hi)
    ch_card_start: np.ndarray
    ch_card_count: np.ndarray
    ch_device_start: np.ndarray
    ch_device_count: np.ndarray
    ch_spend: np.ndarray
    ch_balance_mult: np.ndarray  # insufficient-funds propensity
    ch_passkey: np.ndarray
    ch_wallet: np.ndarray
    ch_ip24: np.ndarray  # first three octets packed (a<<16|b<<8|c)
    # cards
    card_token: np.ndarray
    card_holder: np.ndarray
    card_bin: np.ndarray  # index into bin arrays
    card_method: np.ndarray
    card_nt: np.ndarray
    card_expired: np.ndarray
    # devices
    device_fp: np.ndarray  # 48-bit fingerprint
    device_type: np.ndarray
    device_ios: np.ndarray
    device_trust: np.ndarray
    # fraud rings
    ring_country: np.ndarray
    ring_devices: list[np.ndarray] = field(default_factory=list)  # indices into ring_device_* arrays
    ring_cards: list[np.ndarray] = field(default_factory=list)
    ring_merchants: list[np.ndarray] = field(default_factory=list)
    ring_ips: list[np.ndarray] = field(default_factory=list)
    ring_device_fp: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    ring_device_type: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    ring_device_trust: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # card testing crew
    attack_bins: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # bin index per issuer
    attack_merchants: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    attack_accounts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # cardholder numbers
    attack_device_fp: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    attack_ip: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))

    @property
    def n_issuers(self) -> int:
        return len(self.issuer_country)

    def issuer_index(self, ref: str) -> int:
        """Issuer index from an issuer id (``iss_br_02``) or one of its BINs."""
        ref = ref.strip()
        for i, spec in enumerate(ISSUERS):
            if spec.id == ref.lower():
                return i
        if ref.isdigit():
            hits = np.flatnonzero(self.bin_value == int(ref[:6]))
            if hits.size:
                return int(self.bin_issuer[hits[0]])
        raise ValueError(
            f"unknown issuer {ref!r}; use an issuer id ({', '.join(s.id for s in ISSUERS)}) or one of their BINs"
        )

    def issuer_bins(self, issuer: int) -> list[str]:
        return [str(b) for b in self.bin_value[self.bin_issuer == issuer]]


def _sorted_cum(weights: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative weights of entities already sorted by group, and each group's (lo, hi) bounds."""
    cum = np.cumsum(weights)
    bounds = np.zeros((n_groups, 2))
    starts = np.searchsorted(groups, np.arange(n_groups), side="left")
    ends = np.searchsorted(groups, np.arange(n_groups), side="right")
    for g in range(n_groups):
        lo = cum[starts[g] - 1] if starts[g] > 0 else 0.0
        hi = cum[ends[g] - 1] if ends[g] > 0 else 0.0
        bounds[g] = (lo, hi)
    return cum, bounds


def sample_in_group(rng: np.random.Generator, cum: np.ndarray, bounds: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each requested group, an entity index drawn by weight among that group's entities."""
    lo = bounds[groups, 0]
    hi = bounds[groups, 1]
    target = lo + rng.random(groups.shape[0]) * (hi - lo)
    idx = np.searchsorted(cum, target, side="right")
    return np.minimum(idx, cum.shape[0] - 1)


def build_population(config: PopulationConfig | None = None) -> Population:
    config = config or PopulationConfig()
    rng = np.random.default_rng([config.seed, 0x504F50])  # population stream, independent of events
    n_countries = len(COUNTRIES)

    # --- issuers and BINs
    issuer_country = np.array([s.country for s in ISSUERS], np.int8)
    used_bins: set[int] = set()
    bin_issuer, bin_value, bin_network = [], [], []
    for i in range(len(ISSUERS)):
        for net in BIN_NETWORKS:
            while True:
                prefix = str(rng.choice(BIN_PREFIXES[net]))
                rest = "".join(str(d) for d in rng.integers(0, 10, 6 - len(prefix)))
                value = int(prefix + rest)
                if value not in used_bins:
                    used_bins.add(value)
                    break
            bin_issuer.append(i)
            bin_value.append(value)
            bin_network.append(net)
    bin_issuer_a = np.array(bin_issuer, np.int16)
    bin_value_a = np.array(bin_value, np.int64)
    bin_network_a = np.array(bin_network, np.int8)

    # --- merchants, sorted by country
    nm = config.n_merchants
    m_country = np.sort(rng.choice(GEO_COUNTRIES, nm, p=GEO_SHARE)).astype(np.int8)
    m_country[:GEO_COUNTRIES] = np.arange(GEO_COUNTRIES)  # every geo country has merchants
    m_country = np.sort(m_country)
    m_segment = rng.choice(len(SEGMENTS), nm, p=SEGMENT_MERCHANT_SHARE).astype(np.int8)
    m_weight = rng.lognormal(0.0, 1.3, nm)
    risky = np.isin(m_segment, [2, 3])  # Gaming, Digital
    travel = m_segment == 0
    u = rng.random(nm)
    m_tier = np.where(
        risky, np.digitize(u, [0.4, 0.8]), np.where(travel, np.digitize(u, [0.5, 0.85]), np.digitize(u, [0.7, 0.95]))
    ).astype(np.int8)
    m_amount = SEGMENT_MEDIAN_BRL[m_segment] * rng.lognormal(0.0, 0.3, nm)
    m_entry = rng.choice(len(ENTRY_SYSTEMS), nm, p=ENTRY_SYSTEM_SHARE).astype(np.int8)
    m_entry2 = rng.choice(len(ENTRY_SYSTEMS), nm, p=ENTRY_SYSTEM_SHARE).astype(np.int8)
    p_always = np.where(m_tier == 2, 0.35, 0.08)
    u = rng.random(nm)
    m_3ds = np.where(u < p_always, 2, np.where(u < p_always + 0.5, 1, 0)).astype(np.int8)
    m_nt = rng.random(nm) < 0.55
    m_passkey = rng.random(nm) < np.where(np.isin(m_segment, [3, 7]), 0.35, 0.18)
    m_wallet = rng.random(nm) < 0.45
    m_af = rng.random(nm) < np.choose(m_tier, [0.50, 0.70, 0.92])
    m_retries = rng.random(nm) < np.where(m_segment == 7, 0.95, 0.45)
    m_max_attempts = rng.choice([2, 3, 4], nm, p=[0.45, 0.4, 0.15]).astype(np.int8)
    m_cum, m_bounds = _sorted_cum(m_weight, m_country, GEO_COUNTRIES)
    m_number = 1 + rng.choice(999_998, nm, replace=False)

    # --- cardholders, sorted by home country
    nc = config.n_cardholders
    c_country = np.sort(rng.choice(n_countries, nc, p=HOME_SHARE)).astype(np.int8)
    c_country[:n_countries] = np.arange(n_countries)
    c_country = np.sort(c_country)
    c_weight = rng.lognormal(0.0, 1.0, nc)
    c_cum, c_bounds = _sorted_cum(c_weight, c_country, n_countries)
    c_number = 1 + rng.choice(8_999_998, nc, replace=False)
    c_cards = rng.choice([1, 2, 3], nc, p=[0.55, 0.30, 0.15]).astype(np.int8)
    c_card_start = np.concatenate([[0], np.cumsum(c_cards)[:-1]]).astype(np.int64)
    c_devs = rng.choice([1, 2, 3], nc, p=[0.60, 0.32, 0.08]).astype(np.int8)
    c_dev_start = np.concatenate([[0], np.cumsum(c_devs)[:-1]]).astype(np.int64)
    c_spend = rng.lognormal(0.0, 0.35, nc)
    c_balance = np.choose(rng.choice(3, nc, p=[0.25, 0.55, 0.20]), [2.6, 0.9, 0.25])
    c_passkey = rng.random(nc) < 0.14
    c_wallet = rng.random(nc) < 0.30
    first = np.array([rng.choice(IP_FIRST_OCTETS[c]) for c in range(n_countries)])[c_country]
    c_ip24 = (
        (first.astype(np.uint32) << 16)
        | (rng.integers(100, 255, nc).astype(np.uint32) << 8)
        | rng.integers(100, 255, nc).astype(np.uint32)
    )

    # --- cards: issuer from the holder's country
    n_cards = int(c_cards.sum())
    card_holder = np.repeat(np.arange(nc), c_cards)
    card_country = c_country[card_holder]
    issuer_by_country = [np.flatnonzero(issuer_country == c) for c in range(n_countries)]
    card_issuer = np.empty(n_cards, np.int16)
    for c in range(n_countries):
        mask = card_country == c
        iss = issuer_by_country[c]
        shares = np.array([ISSUERS[i].share for i in iss])
        card_issuer[mask] = rng.choice(iss, int(mask.sum()), p=shares / shares.sum())
    # the card's network follows the country's mix; then a BIN of that issuer on that network
    card_net = np.empty(n_cards, np.int8)
    for c in range(n_countries):
        mask = card_country == c
        network_shares = NETWORK_SHARE_BY_COUNTRY.get(c, NETWORK_SHARE_DEFAULT)
        card_net[mask] = rng.choice(4, int(mask.sum()), p=network_shares)
    bin_lookup = {
        (int(i), int(n)): np.flatnonzero((bin_issuer_a == i) & (bin_network_a == n))
        for i in range(len(ISSUERS))
        for n in range(4)
    }
    card_bin = np.empty(n_cards, np.int32)
    for (i, net), bins in bin_lookup.items():
        mask = (card_issuer == i) & (card_net == net)
        card_bin[mask] = rng.choice(bins, int(mask.sum()))
    card_method = np.where(card_net >= 2, 0, rng.random(n_cards) < DEBIT_SHARE[card_country]).astype(np.int8)
    card_nt = rng.random(n_cards) < np.where(card_net >= 2, 0.15, 0.40)
    card_expired = rng.random(n_cards) < 0.006
    card_token = 1 + rng.choice(49_999_998, n_cards, replace=False)

    # --- devices
    n_dev = int(c_devs.sum())
    device_fp = _unique_fp(rng, n_dev)
    device_type = rng.choice(len(DEVICE_TYPES), n_dev, p=DEVICE_TYPE_SHARE).astype(np.int8)
    device_ios = rng.random(n_dev) < 0.45
    device_trust = np.clip(rng.beta(8.0, 1.2, n_dev), 0.35, 0.999)

    # --- fraud rings: few devices and IPs, many compromised cards, a handful of target merchants
    ring_country = rng.choice([0, 0, 0, 0, 2, 3], config.n_rings).astype(np.int8)
    ring_devices, ring_cards, ring_merchants, ring_ips = [], [], [], []
    rdev_fp: list[int] = []
    rdev_type: list[int] = []
    rdev_trust: list[float] = []
    for r in range(config.n_rings):
        c = int(ring_country[r])
        k = int(rng.integers(4, 9))
        start = len(rdev_fp)
        rdev_fp.extend(_unique_fp(rng, k).tolist())
        rdev_type.extend(rng.choice([0, 1], k).tolist())
        rdev_trust.extend(rng.uniform(0.30, 0.70, k).tolist())
        ring_devices.append(np.arange(start, start + k))
        home_cards = np.flatnonzero(card_country == c)
        ring_cards.append(rng.choice(home_cards, int(rng.integers(80, 250)), replace=False))
        targets = np.flatnonzero((m_country == c) & np.isin(m_segment, [0, 1, 2, 3]))
        ring_merchants.append(rng.choice(targets, min(int(rng.integers(6, 16)), targets.size), replace=False))
        first_octet = int(rng.choice(IP_FIRST_OCTETS[c]))
        ring_ips.append(
            (
                (first_octet << 24)
                | (rng.integers(100, 255, int(rng.integers(3, 7))) << 16)
                | (rng.integers(100, 255) << 8)
                | rng.integers(100, 255)
            ).astype(np.uint32)
        )

    # --- card testing crew: one BIN per issuer to enumerate, a few low-friction merchants
    attack_bins = np.array([np.flatnonzero(bin_issuer_a == i)[0] for i in range(len(ISSUERS))], np.int64)
    soft_targets = np.flatnonzero((m_country == 0) & np.isin(m_segment, [2, 3]) & (m_3ds == 0))
    if soft_targets.size < 3:
        soft_targets = np.flatnonzero(m_country == 0)
    attack_merchants = rng.choice(soft_targets, min(4, soft_targets.size), replace=False)
    attack_accounts = 9_000_000 + rng.choice(999_999, 5, replace=False)
    attack_device_fp = _unique_fp(rng, 3)
    attack_ip = (
        (186 << 24) | (rng.integers(100, 255, 4) << 16) | (rng.integers(100, 255, 4) << 8) | rng.integers(100, 255, 4)
    ).astype(np.uint32)

    return Population(
        config=config,
        issuer_country=issuer_country,
        issuer_dnh=np.array([s.dnh for s in ISSUERS]),
        issuer_tech_fail=np.array([s.tech_fail for s in ISSUERS]),
        issuer_fraud_threshold=np.array([s.fraud_threshold for s in ISSUERS]),
        issuer_latency_ms=np.array([s.latency_ms for s in ISSUERS]),
        bin_issuer=bin_issuer_a,
        bin_value=bin_value_a,
        bin_network=bin_network_a,
        merchant_number=m_number,
        merchant_country=m_country,
        merchant_segment=m_segment,
        merchant_tier=m_tier,
        merchant_cum_weight=m_cum,
        merchant_country_cum=m_bounds,
        merchant_amount_median=m_amount,
        merchant_entry_system=m_entry,
        merchant_entry_secondary=m_entry2,
        merchant_3ds_policy=m_3ds,
        merchant_supports_nt=m_nt,
        merchant_supports_passkey=m_passkey,
        merchant_supports_wallet=m_wallet,
        merchant_antifraud=m_af,
        merchant_retries=m_retries,
        merchant_max_attempts=m_max_attempts,
        ch_number=c_number,
        ch_country=c_country,
        ch_cum_weight=c_cum,
        ch_country_cum=c_bounds,
        ch_card_start=c_card_start,
        ch_card_count=c_cards,
        ch_device_start=c_dev_start,
        ch_device_count=c_devs,
        ch_spend=c_spend,
        ch_balance_mult=c_balance,
        ch_passkey=c_passkey,
        ch_wallet=c_wallet,
        ch_ip24=c_ip24,
        card_token=card_token,
        card_holder=card_holder,
        card_bin=card_bin,
        card_method=card_method,
        card_nt=card_nt,
        card_expired=card_expired,
        device_fp=device_fp,
        device_type=device_type,
        device_ios=device_ios,
        device_trust=device_trust,
        ring_country=ring_country,
        ring_devices=ring_devices,
        ring_cards=ring_cards,
        ring_merchants=ring_merchants,
        ring_ips=ring_ips,
        ring_device_fp=np.array(rdev_fp, np.uint64),
        ring_device_type=np.array(rdev_type, np.int8),
        ring_device_trust=np.array(rdev_trust),
        attack_bins=attack_bins,
        attack_merchants=attack_merchants,
        attack_accounts=attack_accounts,
        attack_device_fp=attack_device_fp,
        attack_ip=attack_ip,
    )


def _unique_fp(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct 48-bit device fingerprints."""
    out = np.unique(rng.integers(1 << 40, 1 << 48, int(n * 1.01) + 16, dtype=np.int64))
    while out.size < n:
        out = np.unique(np.concatenate([out, rng.integers(1 << 40, 1 << 48, n, dtype=np.int64)]))
    return rng.permutation(out)[:n].astype(np.uint64)
