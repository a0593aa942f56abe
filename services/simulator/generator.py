"""Vectorised, seeded transaction generator (numpy): a batch of N events at a time.

Outcomes are caused, not drawn independently. Each event walks the same chain a real authorisation
does, and the first failing stage sets the decline (reason and raw ISO 8583 code from
:mod:`payments_core.taxonomy`):

1. merchant antifraud rejects (``FRAUD_SUSPECTED``)
2. the issuer does not answer (``ISSUER_UNAVAILABLE``; per-issuer rate, ``issuer_outage`` scenario)
3. expired card, CVV mismatch (card data)
4. 3DS challenge failed (``3DS_AUTH_FAILED``)
5. issuer fraud screen (``FRAUD_SUSPECTED``; fraud score vs issuer threshold; 3DS/passkey/token lower it)
6. funds (``INSUFFICIENT_FUNDS`` more for debit, low-balance holders, large tickets, month end;
   ``LIMIT_EXCEEDED`` for credit)
7. issuer policy (``DO_NOT_HONOR``; per-issuer base, cross-border, merchant risk tier, risk scores;
   network tokens, passkeys and 3DS authentication help)

Soft declines are retried by merchants that retry (after the taxonomy's delay) and by customers
(after ~40 s); the cause of the decline persists with a probability that falls with the delay, so
some retries succeed. Hard declines are never retried. Fraud (hidden ``is_fraud``) comes from
stolen cards on new devices, from fraud rings reusing devices/IPs across many cards at a few
merchants, and from card testing of one BIN with small amounts. Volume follows time-of-day and
day-of-week (simulated clock); night hours carry more fraud; month ends more insufficient funds.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from payments_core.contract.money import CURRENCY_EXPONENT
from payments_core.taxonomy import DECLINES
from services.simulator import population as P
from services.simulator.codes import REASONS, US_PER_DAY, US_PER_H, US_PER_S
from services.simulator.encode import ARROW_SCHEMA, EventBatch
from services.simulator.scenarios import Effects, effects_for

# ------------------------------------------------------- decline codes (see codes.py: code = index)
R = {name: i for i, name in enumerate(REASONS) if name}
SOFT_CODES = np.array([i for i, name in enumerate(REASONS) if name and DECLINES[name].soft])
RETRY_AFTER_S = np.array([0.0] + [float(d.retry_after_seconds or 0) for d in DECLINES.values()])
GEO_EXPONENT = np.array([CURRENCY_EXPONENT[c] for c in P.CURRENCY_OF_COUNTRY])
KIND_LEGIT, KIND_STOLEN, KIND_RING, KIND_TESTING = 0, 1, 2, 3

# seasonality, local time of the dominant market (BR, UTC-3)
HOUR_PROFILE = np.array(
    [
        0.35,
        0.22,
        0.15,
        0.11,
        0.10,
        0.13,
        0.25,
        0.45,
        0.70,
        0.90,
        1.05,
        1.15,
        1.25,
        1.20,
        1.15,
        1.10,
        1.10,
        1.15,
        1.25,
        1.40,
        1.50,
        1.40,
        1.05,
        0.65,
    ]
)
HOUR_PROFILE = HOUR_PROFILE / HOUR_PROFILE.mean()
DOW_PROFILE = np.array([0.97, 0.95, 0.98, 1.00, 1.10, 1.08, 0.92])  # Monday..Sunday
DOW_PROFILE = DOW_PROFILE / DOW_PROFILE.mean()
XBORDER_HOME_SHARE = np.array([0.15, 0.35, 0.10, 0.12, 0.08, 0.07, 0.07, 0.06])
NET_BASE_MS = np.array([110.0, 120.0, 190.0, 210.0])
SOLUTION_OVERHEAD_MS = np.array([0.0, 0.0, 15.0, 35.0, 25.0, 25.0])
FIRST_OCTET_ANY = np.array(sorted({o for octets in P.IP_FIRST_OCTETS for o in octets}), np.uint32)
SUBSCRIPTION_PRICES_BRL = np.array([9.90, 19.90, 29.90, 39.90, 55.90, 89.90])

# columns of a batch that describe the request (what a retry copies) and latent state
REQUEST_COLUMNS = (
    "ts",
    "merchant",
    "segment",
    "geo",
    "holder_num",
    "token_num",
    "bin_idx",
    "issuer",
    "network",
    "method",
    "issuer_country",
    "amount_minor",
    "amount_brl",
    "entry_system",
    "flow",
    "entry_mode",
    "solution",
    "device_type",
    "device_fp",
    "ip",
    "uses_3ds",
    "routed",
    "friction",
    "authenticated",
    "af_used",
    "af_result",
    "nt",
    "passkey",
    "recurring",
    "attempt",
    "prev_reason",
    "fraud_score",
    "aml",
    "trust",
    # latent (never published)
    "kind",
    "xborder",
    "balance",
    "expired",
    "tier",
    "prev_ts",
)


@dataclass
class GeneratorConfig:
    """Settings of one generator. Same config (and same sequence of calls) -> same events."""

    seed: int = 42
    start: datetime | None = None  # simulated clock from here; None = wall clock (real time)
    events_per_second: float = 200.0  # mean arrival rate of the simulated world (simulated clock)
    scenario: str = "normal"
    issuer: str | None = None  # scenario target (issuer id or BIN)
    n_merchants: int = 3_000
    n_cardholders: int = 200_000
    max_pending_retries: int = 300_000

    def __post_init__(self) -> None:
        if self.events_per_second <= 0:
            raise ValueError("events_per_second must be positive")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        if self.max_pending_retries < 0:
            raise ValueError("max_pending_retries must be >= 0")


@dataclass
class Stats:
    events: int = 0
    approved: int = 0
    retries: int = 0
    fraud: int = 0
    retries_dropped: int = 0  # scheduled retries dropped because the pending queue was full

    @property
    def approval_rate(self) -> float:
        return self.approved / self.events if self.events else 0.0


class RetryQueue:
    """Pending retries: chunks of columns sorted by due time, merged when they get numerous."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._chunks: list[tuple[int, int, dict[str, np.ndarray]]] = []  # heap of (first_due, seq, cols)
        self._seq = 0
        self.size = 0

    def push(self, cols: dict[str, np.ndarray]) -> int:
        """Add retries (``cols['due']`` is required); returns how many were dropped for capacity."""
        n = cols["due"].shape[0]
        room = max(0, self.capacity - self.size)
        dropped = max(0, n - room)
        if n - dropped <= 0:
            return dropped
        order = np.argsort(cols["due"], kind="stable")[: n - dropped]
        chunk = {k: v[order] for k, v in cols.items()}
        heapq.heappush(self._chunks, (int(chunk["due"][0]), self._seq, chunk))
        self._seq += 1
        self.size += n - dropped
        if len(self._chunks) > 256:
            self._compact()
        return dropped

    def pop_due(self, horizon_us: int) -> dict[str, np.ndarray] | None:
        """All retries due at or before ``horizon_us`` (sorted by due), removed from the queue."""
        taken: list[dict[str, np.ndarray]] = []
        while self._chunks and self._chunks[0][0] <= horizon_us:
            _, _, chunk = heapq.heappop(self._chunks)
            cut = int(np.searchsorted(chunk["due"], horizon_us, side="right"))
            taken.append({k: v[:cut] for k, v in chunk.items()})
            if cut < chunk["due"].shape[0]:
                rest = {k: v[cut:] for k, v in chunk.items()}
                heapq.heappush(self._chunks, (int(rest["due"][0]), self._seq, rest))
                self._seq += 1
        if not taken:
            return None
        out = _concat(taken) if len(taken) > 1 else taken[0]
        self.size -= out["due"].shape[0]
        if len(taken) > 1:
            order = np.argsort(out["due"], kind="stable")
            out = {k: v[order] for k, v in out.items()}
        return out

    def _compact(self) -> None:
        merged = _concat([c for _, _, c in self._chunks])
        order = np.argsort(merged["due"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
        self._chunks = [(int(merged["due"][0]), self._seq, merged)]
        self._seq += 1


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(cols: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in cols.items()}


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Bijective 64-bit mix: distinct inputs give distinct ids."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass
class _Flat:
    """Ragged per-ring lists flattened for vectorised picks."""

    values: np.ndarray
    start: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, parts: list[np.ndarray]) -> _Flat:
        counts = np.array([len(p) for p in parts], np.int64)
        return cls(np.concatenate(parts), np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)

    def pick(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.values[self.start[group] + (u * self.count[group]).astype(np.int64)]


@dataclass
class _Scenario:
    effects: Effects = field(default_factory=Effects)
    issuer_ref: str | None = None


class TransactionGenerator:
    """Deterministic source of contract ``TransactionEvent`` batches. See the package docstring."""

    def __init__(self, config: GeneratorConfig | None = None, population: P.Population | None = None):
        self.config = config or GeneratorConfig()
        cfg = self.config
        self.population = population or P.build_population(
            P.PopulationConfig(seed=cfg.seed, n_merchants=cfg.n_merchants, n_cardholders=cfg.n_cardholders)
        )
        pop = self.population
        self.rng = np.random.default_rng([cfg.seed, 0x45564E54])
        self.stats = Stats()
        self._retries = RetryQueue(cfg.max_pending_retries)
        self._counter = 0
        # ids are a bijection of a counter; a real-time run also mixes in its start so restarts of a
        # live simulator never repeat transaction ids
        salt = cfg.seed if cfg.start is not None else cfg.seed ^ time.time_ns()
        self._id_salt = np.uint64(int(splitmix64(np.array([salt & (2**64 - 1)], np.uint64))[0]))
        if cfg.start is not None:
            self._now_us = int(cfg.start.timestamp() * US_PER_S)
        else:
            self._now_us = int(time.time() * US_PER_S) - US_PER_S
        self._ring_cards = _Flat.of(pop.ring_cards)
        self._ring_devices = _Flat.of(pop.ring_devices)
        self._ring_merchants = _Flat.of(pop.ring_merchants)
        self._ring_ips = _Flat.of(pop.ring_ips)
        self._scenario = _Scenario()
        self.set_scenario(cfg.scenario, cfg.issuer)

    # ------------------------------------------------------------------------ public API
    @property
    def scenario(self) -> str:
        return self._scenario.effects.name

    @property
    def scenario_issuer(self) -> str | None:
        return self._scenario.issuer_ref

    @property
    def simulated(self) -> bool:
        return self.config.start is not None

    @property
    def clock(self) -> datetime:
        """Timestamp of the latest generated event (simulated or wall clock)."""
        return datetime.fromtimestamp(self._now_us / US_PER_S, UTC)

    @property
    def pending_retries(self) -> int:
        return self._retries.size

    def set_scenario(self, name: str, issuer: str | None = None) -> None:
        """Switch scenario (takes effect from the next batch). Raises ValueError on bad input."""
        index = self.population.issuer_index(issuer) if issuer else None
        effects = effects_for(name, index, P.DEFAULT_OUTAGE_ISSUER)
        ref = P.ISSUERS[index].id if index is not None else None
        if name == "issuer_outage" and ref is None:
            ref = P.ISSUERS[P.DEFAULT_OUTAGE_ISSUER].id
        self._scenario = _Scenario(effects, ref)

    def batch(self, n: int, now: float | None = None):
        """The next ``n`` events in time order (an :class:`~services.simulator.encode.EventBatch`).

        Simulated clock: time advances by the modelled arrival process. Wall clock: the events are
        spread between the previous batch and ``now`` (default ``time.time()``).
        """
        if n <= 0:
            raise ValueError("n must be positive")
        cols = self._next(int(n), now)
        return EventBatch(cols, self.population)

    def iter_batches(self, total: int, batch_size: int = 50_000):
        """Batches until ``total`` events have been produced."""
        if total < 0 or batch_size <= 0:
            raise ValueError("total must be >= 0 and batch_size > 0")
        left = total
        while left > 0:
            size = min(batch_size, left)
            yield self.batch(size)
            left -= size

    def table(self, n: int, batch_size: int = 50_000):
        """The next ``n`` events as one pyarrow Table (contract columns)."""
        tables = [b.to_arrow() for b in self.iter_batches(n, batch_size)]
        return pa.concat_tables(tables) if tables else ARROW_SCHEMA.empty_table()

    # ------------------------------------------------------------------------ internals
    def _fresh_times(self, n: int, now: float | None) -> np.ndarray:
        if not self.simulated:
            end = int((time.time() if now is None else now) * US_PER_S)
            start = min(self._now_us, end)
            t = np.sort(self.rng.integers(start + 1, max(end, start + 1) + 1, n))
            return t.astype(np.int64)
        rate = self.config.events_per_second
        targets = np.cumsum(self.rng.exponential(1.0, n))
        t0 = self._now_us / US_PER_S
        h0 = np.floor(t0 / 3600.0) * 3600.0
        k = max(2, int(targets[-1] / (rate * 3600.0 * 0.15)) + 2)
        while True:
            starts = h0 + 3600.0 * np.arange(k)
            local = starts + 3600.0 * P.UTC_OFFSET_H[0]
            hour = ((local // 3600) % 24).astype(np.int64)
            dow = ((local // 86400 + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
            lam = rate * HOUR_PROFILE[hour] * DOW_PROFILE[dow]
            seg_start = starts.copy()
            seg_start[0] = t0
            seg_len = starts + 3600.0 - seg_start
            cap = np.cumsum(lam * seg_len)
            if cap[-1] >= targets[-1]:
                break
            k *= 2
        seg = np.searchsorted(cap, targets, side="left")
        before = np.concatenate([[0.0], cap[:-1]])[seg]
        offset_s = seg_start[seg] - t0 + (targets - before) / lam[seg]
        return self._now_us + np.maximum(1, (offset_s * US_PER_S).astype(np.int64))

    def _next(self, n: int, now: float | None) -> dict[str, np.ndarray]:
        """n events: fresh arrivals merged with due retries, decided slice by slice in time order so
        that retries scheduled in a slice can happen in the next one (a simulated batch may span
        hours). Fresh arrivals beyond the n-th event are discarded (Poisson arrivals are memoryless)."""
        fresh_t = self._fresh_times(n, now)
        slice_us = self._slice_us()
        parts: list[dict[str, np.ndarray]] = []
        emitted = fi = 0
        while emitted < n:
            t_end = int(fresh_t[-1]) if fi >= n else min(int(fresh_t[fi]) + slice_us, int(fresh_t[-1]))
            fj = int(np.searchsorted(fresh_t, t_end, side="right")) if fi < n else n
            cols = self._slice(fresh_t[fi:fj], t_end, n - emitted)
            fi = fj
            if cols is None:
                continue
            parts.append(cols)
            emitted += cols["ts"].shape[0]
            self._now_us = int(cols["ts"][-1])
        cols = parts[0] if len(parts) == 1 else _concat(parts)
        ids = splitmix64(np.arange(self._counter, self._counter + n, dtype=np.uint64) ^ self._id_salt)
        self._counter += n
        cols["txn_id"] = ids
        self._now_us = int(cols["ts"][-1])
        st = self.stats
        st.events += n
        st.approved += int(cols["approved"].sum())
        st.retries += int((cols["attempt"] > 1).sum())
        st.fraud += int((cols["kind"] > 0).sum())
        return cols

    def _slice_us(self) -> int:
        if not self.simulated:
            return 1 << 62  # real time: a batch spans a fraction of a second, retries wait >= 2 s
        per_event_s = 1.0 / self.config.events_per_second
        return int(max(60.0, 128 * per_event_s) * US_PER_S)

    def _slice(self, fresh_t: np.ndarray, t_end: int, limit: int) -> dict[str, np.ndarray] | None:
        """Decide the events of one time slice (at most ``limit``) and schedule their retries."""
        due = self._retries.pop_due(t_end)
        n_fresh = min(fresh_t.shape[0], limit)
        retry_cols = None
        if due is not None:
            # a retry that fell due inside an earlier slice happens now (time never goes backwards)
            due["due"] = np.maximum(due["due"], self._now_us + 1)
            k_due = due["due"].shape[0]
            nf = fresh_t.shape[0]
            merged = np.concatenate([fresh_t, due["due"]])
            order = np.argsort(merged, kind="stable")[:limit]
            used_retry = np.sort(order[order >= nf] - nf)
            n_fresh = int((order < nf).sum())
            unused = np.setdiff1d(np.arange(k_due), used_retry, assume_unique=True)
            if unused.size:
                self._retries.push(_take(due, unused))
            if used_retry.size:
                retry_cols = self._retry_rows(_take(due, used_retry))
        parts = []
        if n_fresh:
            parts.append(self._fresh(fresh_t[:n_fresh]))
        if retry_cols is not None:
            parts.append(retry_cols)
        if not parts:
            return None
        cols = parts[0] if len(parts) == 1 else _concat(parts)
        if len(parts) > 1:
            cols = _take(cols, np.argsort(cols["ts"], kind="stable"))
        self._decide(cols)
        self._schedule_retries(cols)
        return cols

    def _fresh(self, ts: np.ndarray) -> dict[str, np.ndarray]:
        rng, pop, eff = self.rng, self.population, self._scenario.effects
        n = ts.shape[0]
        u = rng.random((24, n))
        # --- who: kind of traffic
        kind = np.zeros(n, np.int8)
        kind[u[0] < eff.attack_share + eff.ring_share] = KIND_RING
        kind[u[0] < eff.attack_share] = KIND_TESTING
        # --- where: geo, merchant, cardholder (cross-border brings foreign cardholders)
        geo = np.searchsorted(np.cumsum(P.GEO_SHARE), u[1] * P.GEO_SHARE.sum(), side="right").astype(np.int8)
        geo = np.minimum(geo, P.GEO_COUNTRIES - 1)
        merchant = P.sample_in_group(rng, pop.merchant_cum_weight, pop.merchant_country_cum, geo)
        segment = pop.merchant_segment[merchant]
        xborder = u[2] < P.SEGMENT_XBORDER_P[segment]
        foreign = np.searchsorted(np.cumsum(XBORDER_HOME_SHARE), u[3], side="right").astype(np.int8)
        foreign = np.minimum(foreign, len(P.COUNTRIES) - 1)
        foreign = np.where(foreign == geo, np.where(geo == 0, 1, 0), foreign).astype(np.int8)
        home = np.where(xborder, foreign, geo)
        holder = P.sample_in_group(rng, pop.ch_cum_weight, pop.ch_country_cum, home)
        card = pop.ch_card_start[holder] + (u[4] ** 2 * pop.ch_card_count[holder]).astype(np.int64)
        device = pop.ch_device_start[holder] + (u[5] * pop.ch_device_count[holder]).astype(np.int64)
        device_fp = pop.device_fp[device]
        device_type = pop.device_type[device]
        ios = pop.device_ios[device]
        trust = pop.device_trust[device] + rng.normal(0.0, 0.02, n)
        ip = (pop.ch_ip24[holder] << np.uint32(8)) | (100 + (u[6] * 155).astype(np.uint32))
        # a legit customer on a new phone / computer
        new_dev = u[7] < 0.08
        # --- stolen card fraud: more at night, cross-border, risky segments
        local_hour = ((ts // US_PER_H) + P.UTC_OFFSET_H[geo]) % 24
        night = local_hour < 6
        p_stolen = 0.0012 * P.SEGMENT_FRAUD_MULT[segment] * np.where(night, 2.5, 1.0) * np.where(xborder, 3.0, 1.0)
        stolen = (kind == KIND_LEGIT) & (u[8] < p_stolen)
        kind[stolen] = KIND_STOLEN
        swap = new_dev | stolen
        n_swap = int(swap.sum())
        if n_swap:
            device_fp[swap] = rng.integers(1 << 40, 1 << 48, n_swap, dtype=np.int64).astype(np.uint64)
            device_type[swap] = rng.choice(4, n_swap, p=P.DEVICE_TYPE_SHARE)
            trust[swap] = np.where(stolen[swap], rng.uniform(0.10, 0.70, n_swap), rng.uniform(0.20, 0.80, n_swap))
        if stolen.any():
            k = int(stolen.sum())
            first = FIRST_OCTET_ANY[rng.integers(0, FIRST_OCTET_ANY.size, k)]
            o = rng.integers(100, 255, (3, k)).astype(np.uint32)
            ip[stolen] = (first << 24) | (o[0] << 16) | (o[1] << 8) | o[2]
        # --- fraud rings: shared devices / IPs / compromised cards at their target merchants
        ring = kind == KIND_RING
        if ring.any():
            k = int(ring.sum())
            r = rng.integers(0, len(pop.ring_cards), k)
            rc = self._ring_cards.pick(r, rng.random(k))
            merchant[ring] = self._ring_merchants.pick(r, rng.random(k))
            card[ring] = rc
            holder[ring] = pop.card_holder[rc]
            rd = self._ring_devices.pick(r, rng.random(k))
            device_fp[ring] = pop.ring_device_fp[rd]
            device_type[ring] = pop.ring_device_type[rd]
            trust[ring] = pop.ring_device_trust[rd] + rng.normal(0, 0.03, k)
            ip[ring] = self._ring_ips.pick(r, rng.random(k))
            ios[ring] = False
        # --- card testing: one BIN, few accounts/devices, unseen cards
        testing = kind == KIND_TESTING
        segment = pop.merchant_segment[merchant]
        geo = np.where(ring | testing, pop.merchant_country[merchant], geo).astype(np.int8)
        holder_num = pop.ch_number[holder]
        token_num = pop.card_token[card]
        bin_idx = pop.card_bin[card].astype(np.int64)
        method = pop.card_method[card]
        expired = pop.card_expired[card]
        card_nt = pop.card_nt[card].copy()
        balance = pop.ch_balance_mult[holder]
        spend = pop.ch_spend[holder]
        if testing.any():
            k = int(testing.sum())
            target = eff.attack_issuer if eff.attack_issuer >= 0 else 0
            m = pop.attack_merchants[rng.integers(0, pop.attack_merchants.size, k)]
            merchant[testing] = m
            geo[testing] = pop.merchant_country[m]
            segment[testing] = pop.merchant_segment[m]
            holder_num[testing] = pop.attack_accounts[rng.integers(0, pop.attack_accounts.size, k)]
            token_num[testing] = 50_000_000 + rng.integers(0, 49_999_999, k)
            bin_idx[testing] = pop.attack_bins[target]
            method[testing] = 0
            expired[testing] = rng.random(k) < 0.15
            card_nt[testing] = False
            device_fp[testing] = pop.attack_device_fp[rng.integers(0, pop.attack_device_fp.size, k)]
            device_type[testing] = 0
            trust[testing] = rng.uniform(0.05, 0.25, k)
            ip[testing] = pop.attack_ip[rng.integers(0, pop.attack_ip.size, k)]
            ios[testing] = False
            balance[testing] = 1.0
        issuer = pop.bin_issuer[bin_idx]
        network = pop.bin_network[bin_idx]
        issuer_country = pop.issuer_country[issuer]
        xborder = issuer_country != geo
        tier = pop.merchant_tier[merchant]
        # --- amount (BRL-equivalent latent, local currency minor units on the wire)
        amount_brl = (
            pop.merchant_amount_median[merchant] * spend * np.exp(P.SEGMENT_SIGMA[segment] * rng.standard_normal(n))
        )
        recurring = ((segment == 7) & (u[9] < 0.8)) | (np.isin(segment, [3, 4]) & (u[9] < 0.05))
        sub = recurring & (segment == 7)
        amount_brl = np.where(sub, SUBSCRIPTION_PRICES_BRL[(u[10] * 6).astype(np.int64)], amount_brl)
        amount_brl = np.where(stolen, amount_brl * 2.2, amount_brl)
        amount_brl = np.where(ring, 250.0 * np.exp(0.6 * rng.standard_normal(n)), amount_brl)
        amount_brl = np.where(testing, 1.0 + 4.0 * u[10], amount_brl)
        recurring &= ~(ring | testing | stolen)
        exp10 = 10.0 ** GEO_EXPONENT[geo]
        major = amount_brl * P.FX_FROM_BRL[geo]
        charm = np.isin(segment, [1, 4, 5]) & (u[11] < 0.4) & (GEO_EXPONENT[geo] == 2) & ~testing
        minor = np.where(charm, np.floor(major) * 100 + 90, np.round(major * exp10))
        minor = np.where(GEO_EXPONENT[geo] == 0, np.maximum(10, np.round(minor / 10) * 10), minor)
        amount_minor = np.clip(minor, 100, 10**10).astype(np.int64)
        # --- channel: entry system, flow, entry mode
        es = np.where(u[12] < 0.85, pop.merchant_entry_system[merchant], pop.merchant_entry_secondary[merchant])
        flow = np.select(
            [recurring, es == 1, es == 2, es == 0], [2, np.where(u[13] < 0.8, 3, 4), 1, np.where(u[13] < 0.6, 0, 4)], 4
        ).astype(np.int8)
        entry_mode = np.select([recurring, device_type == 2, (segment == 0) & (u[14] < 0.08)], [1, 2, 3], 0)
        # --- scores
        fraudish = kind > KIND_LEGIT
        trust = np.clip(trust, 0.0, 1.0)
        # most good customers score low; a few (new, unusual basket) score like fraud: false positives
        fs_legit = (
            np.where(u[19] < 0.03, rng.beta(2.0, 4.5, n), rng.beta(1.3, 14.0, n)) + 0.12 * (1 - trust) + 0.04 * xborder
        )
        # a third of fraud looks clean to the upstream model (the signal is elsewhere: devices, velocity)
        fs_fraud = np.where(u[20] < 0.35, rng.beta(1.5, 8.0, n), 0.9 * rng.beta(3.2, 2.4, n)) + 0.1 * (1 - trust)
        fraud_score = np.clip(np.where(fraudish, fs_fraud, fs_legit), 0.0, 1.0)
        aml = np.clip(
            rng.beta(1.1, 25.0, n) + 0.08 * xborder + 0.05 * (amount_brl > 2000) + 0.05 * (tier == 2) + 0.04 * fraudish,
            0.0,
            1.0,
        )
        # --- payment solution and the 3DS funnel
        mobile = (device_type == 1) | (device_type == 2)
        wallet = (
            ~recurring
            & mobile
            & pop.merchant_supports_wallet[merchant]
            & pop.ch_wallet[holder]
            & (u[15] < 0.7)
            & (kind == KIND_LEGIT)
        )
        passkey = (
            ~wallet
            & ~recurring
            & pop.ch_passkey[holder]
            & pop.merchant_supports_passkey[merchant]
            & (kind == KIND_LEGIT)
        )
        nt = (card_nt & pop.merchant_supports_nt[merchant] & ~fraudish) | wallet
        policy = pop.merchant_3ds_policy[merchant]
        eligible = ~recurring & ~wallet & ~passkey
        uses_3ds = eligible & ((policy == 2) | ((policy == 1) & ((fraud_score > 0.35) | (amount_brl > 800) | xborder)))
        routed, friction, authenticated = self._three_ds(uses_3ds, fraud_score, xborder, fraudish, u[16], u[17], u[18])
        solution = np.select([wallet & ios, wallet, passkey, uses_3ds, nt], [4, 5, 3, 1, 2], 0).astype(np.int8)
        af_used = pop.merchant_antifraud[merchant]
        af_score = fraud_score + 0.05 * rng.standard_normal(n)
        af_result = np.where(af_used, np.select([af_score >= 0.80, af_score >= 0.55], [3, 2], 1), 0).astype(np.int8)
        return {
            "ts": ts,
            "merchant": merchant.astype(np.int64),
            "segment": segment.astype(np.int8),
            "geo": geo,
            "holder_num": holder_num.astype(np.int64),
            "token_num": token_num.astype(np.int64),
            "bin_idx": bin_idx,
            "issuer": issuer.astype(np.int16),
            "network": network.astype(np.int8),
            "method": method.astype(np.int8),
            "issuer_country": issuer_country.astype(np.int8),
            "amount_minor": amount_minor,
            "amount_brl": amount_brl,
            "entry_system": es.astype(np.int8),
            "flow": flow,
            "entry_mode": entry_mode.astype(np.int8),
            "solution": solution,
            "device_type": device_type.astype(np.int8),
            "device_fp": device_fp.astype(np.uint64),
            "ip": ip.astype(np.uint32),
            "uses_3ds": uses_3ds,
            "routed": routed,
            "friction": friction,
            "authenticated": authenticated,
            "af_used": af_used,
            "af_result": af_result,
            "nt": nt,
            "passkey": passkey,
            "recurring": recurring,
            "attempt": np.ones(n, np.int8),
            "prev_reason": np.zeros(n, np.int8),
            "fraud_score": np.round(fraud_score, 4),
            "aml": np.round(aml, 4),
            "trust": np.round(trust, 4),
            "kind": kind,
            "xborder": xborder,
            "balance": balance.astype(np.float64),
            "expired": expired.astype(bool),
            "tier": tier.astype(np.int8),
            "prev_ts": ts.copy(),
        }

    @staticmethod
    def _three_ds(uses, fraud_score, xborder, fraudish, u1, u2, u3):
        routed = uses & (u1 < 0.97)
        p_friction = np.clip(0.12 + 0.7 * fraud_score + 0.1 * xborder, 0.0, 0.95)
        friction = routed & (u2 < p_friction)
        p_auth = np.where(fraudish, 0.25, 0.88)
        authenticated = routed & (~friction | (u3 < p_auth))
        return routed, friction, authenticated

    def _retry_rows(self, due: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Turn due retries into request rows (the outcome is decided with the rest of the batch)."""
        rows = {k: due[k] for k in REQUEST_COLUMNS}
        rows["ts"] = due["due"]
        rows["prev_ts"] = due["ts"]
        rows["attempt"] = (due["attempt"] + 1).astype(np.int8)
        rows["prev_reason"] = due["reason"].astype(np.int8)
        n = rows["ts"].shape[0]
        fs = np.clip(due["fraud_score"] + self.rng.normal(0.0, 0.02, n), 0.0, 1.0)
        rows["fraud_score"] = np.round(fs, 4)
        # smart retry: a merchant retrying a do-not-honor steps up to 3DS when it can
        upgrade = due["upgrade_3ds"]
        if upgrade.any():
            u = self.rng.random((3, n))
            r, f, a = self._three_ds(np.ones(n, bool), fs, due["xborder"], due["kind"] > 0, u[0], u[1], u[2])
            rows["uses_3ds"] = np.where(upgrade, True, due["uses_3ds"])
            rows["routed"] = np.where(upgrade, r, due["routed"])
            rows["friction"] = np.where(upgrade, f, due["friction"])
            rows["authenticated"] = np.where(upgrade, a, due["authenticated"])
            rows["solution"] = np.where(upgrade, 1, due["solution"]).astype(np.int8)
        return rows

    def _decide(self, c: dict[str, np.ndarray]) -> None:
        """The authorisation chain: sets approved, reason, processing_ms (see module docstring)."""
        rng, pop, eff = self.rng, self.population, self._scenario.effects
        n = c["ts"].shape[0]
        u = rng.random((12, n))
        issuer = c["issuer"]
        kind = c["kind"]
        fraudish = kind > KIND_LEGIT
        fs = c["fraud_score"]
        authed = c["authenticated"] | c["passkey"]
        # 1 antifraud
        af_fail = c["af_result"] == 3
        # 2 issuer availability
        p_unavail = pop.issuer_tech_fail[issuer].copy()
        if eff.outage_issuer >= 0:
            p_unavail = np.where(issuer == eff.outage_issuer, eff.outage_unavailable_p, p_unavail)
        lat_hit = np.zeros(n, bool)
        if eff.latency_multiplier != 1.0:
            lat_hit = np.ones(n, bool) if eff.latency_issuer < 0 else issuer == eff.latency_issuer
            p_unavail = np.where(lat_hit, p_unavail + eff.latency_timeout_p, p_unavail)
        unavailable = u[0] < p_unavail
        # 3 card data
        expired = c["expired"]
        cvv_checked = ~c["recurring"] & ~c["nt"]
        p_cvv = np.select([kind == KIND_TESTING, kind == KIND_STOLEN], [0.35, 0.08], 0.003)
        cvv = cvv_checked & (u[1] < p_cvv)
        # 4 3DS
        tds_fail = c["routed"] & c["friction"] & ~c["authenticated"]
        # 5 issuer fraud screen
        thr = pop.issuer_fraud_threshold[issuer]
        p_fd = 0.6 / (1.0 + np.exp(-12.0 * (fs - thr))) + 0.002 * (1.0 + 4.0 * fs) * np.choose(
            c["tier"], [0.7, 1.0, 1.6]
        ) * np.where(c["xborder"], 2.0, 1.0)
        p_fd = np.where(fraudish, np.maximum(p_fd, np.where(kind == KIND_TESTING, 0.2, 0.3)), p_fd)
        p_fd = p_fd * np.where(authed, 0.35, 1.0) * np.where(c["nt"], 0.6, 1.0)
        fraud_decl = u[2] < p_fd
        # 6 funds
        amount_factor = np.clip((c["amount_brl"] / 54.0) ** 0.35, 0.3, 3.0)
        local_day = (c["ts"] + P.UTC_OFFSET_H[c["geo"]] * US_PER_H) // US_PER_DAY
        dom = (local_day.astype("datetime64[D]") - local_day.astype("datetime64[D]").astype("datetime64[M]")).astype(
            np.int64
        ) + 1
        month = np.select([dom >= 25, dom <= 5], [1.5, 0.7], 1.0)
        debit = c["method"] == 1
        p_nsf = np.where(debit, 0.05, 0.012) * amount_factor * c["balance"] * month
        p_nsf = np.where(fraudish, 0.05, p_nsf)
        nsf = u[3] < p_nsf
        p_limit = np.where(debit, 0.0, 0.008 * amount_factor**1.5)
        p_limit = np.where(kind == KIND_RING, 0.10, p_limit)
        limit = u[4] < p_limit
        # 7 issuer policy
        p_dnh = (
            pop.issuer_dnh[issuer]
            * np.where(c["xborder"], 2.2, 1.0)
            * np.where(c["nt"], 0.55, 1.0)
            * np.where(c["passkey"], 0.6, 1.0)
            * np.where(c["authenticated"], 0.7, 1.0)
            * np.choose(c["tier"], [0.8, 1.1, 1.8])
            * (1.0 + 2.0 * fs + 1.5 * c["aml"])
        )
        p_dnh = np.where(fraudish, np.maximum(p_dnh * 2.0, np.where(kind == KIND_TESTING, 0.25, 0.0)), p_dnh)
        dnh = u[5] < p_dnh
        reason = np.select(
            [af_fail, unavailable, expired, cvv, tds_fail, fraud_decl, nsf, limit, dnh],
            [
                R["FRAUD_SUSPECTED"],
                R["ISSUER_UNAVAILABLE"],
                R["EXPIRED_CARD"],
                R["CVV_MISMATCH"],
                R["3DS_AUTH_FAILED"],
                R["FRAUD_SUSPECTED"],
                R["INSUFFICIENT_FUNDS"],
                R["LIMIT_EXCEEDED"],
                R["DO_NOT_HONOR"],
            ],
            0,
        ).astype(np.int8)
        # retries: the original cause persists with a probability that fades with the delay
        prev = c["prev_reason"]
        is_retry = prev > 0
        if is_retry.any():
            delay_s = (c["ts"] - c["prev_ts"]) / US_PER_S
            p_persist = np.select(
                [prev == R["INSUFFICIENT_FUNDS"], prev == R["LIMIT_EXCEEDED"], prev == R["DO_NOT_HONOR"]],
                [
                    0.35 + 0.6 * np.exp(-delay_s / 43_200.0),
                    0.30 + 0.65 * np.exp(-delay_s / 86_400.0),
                    np.where(delay_s < 300, 0.7, np.where(c["solution"] == 1, 0.3, 0.5)),
                ],
                0.0,
            )
            persist = is_retry & (u[6] < p_persist) & ~unavailable
            reason = np.where(persist, prev, reason).astype(np.int8)
        approved = reason == 0
        # latency: per route (network + issuer + solution + 3DS + cross-border + antifraud), log-normal
        # body with a Pareto tail; timeouts when the issuer does not answer
        median = (
            NET_BASE_MS[c["network"]]
            + pop.issuer_latency_ms[issuer]
            + SOLUTION_OVERHEAD_MS[c["solution"]]
            + 160.0 * c["routed"]
            + 700.0 * c["friction"]
            + 60.0 * c["xborder"]
            + 40.0 * c["af_used"]
        )
        tail_p = np.full(n, 0.012)
        if eff.latency_multiplier != 1.0:
            median = np.where(lat_hit, median * eff.latency_multiplier, median)
            tail_p = np.where(lat_hit, eff.latency_tail_p, tail_p)
        ms = median * np.exp(0.3 * rng.standard_normal(n))
        tail = u[7] < tail_p
        ms = np.where(tail, ms * (1.0 + rng.pareto(1.5, n)), ms)
        unavail = reason == R["ISSUER_UNAVAILABLE"]
        timeout = np.clip(rng.normal(10_000.0, 1_500.0, n), 5_000.0, 20_000.0)
        ms = np.where(unavail, np.where(u[8] < 0.55, timeout, 30.0 + 60.0 * u[9]), ms)
        ms = np.where(af_fail & (reason == R["FRAUD_SUSPECTED"]), 40.0 + 60.0 * u[10] + 40.0, ms)
        c["approved"] = approved
        c["reason"] = reason
        c["processing_ms"] = np.clip(ms, 1.0, 60_000.0).astype(np.int64)

    def _schedule_retries(self, c: dict[str, np.ndarray]) -> None:
        pop, rng = self.population, self.rng
        reason = c["reason"]
        soft = np.isin(reason, SOFT_CODES)
        if not soft.any():
            return
        idx = np.flatnonzero(
            soft & (c["kind"] != KIND_TESTING) & (c["attempt"] < pop.merchant_max_attempts[c["merchant"]])
        )
        if idx.size == 0:
            return
        k = idx.size
        u = rng.random((3, k))
        merchant = c["merchant"][idx]
        r = reason[idx]
        by_merchant = pop.merchant_retries[merchant] & (u[0] < 0.85) & (c["kind"][idx] != KIND_RING)
        by_customer = ~by_merchant & ~c["recurring"][idx] & (u[1] < np.where(c["kind"][idx] == KIND_RING, 0.5, 0.3))
        go = by_merchant | by_customer
        if not go.any():
            return
        delay_s = np.where(
            by_merchant,
            RETRY_AFTER_S[r] * np.exp(0.35 * rng.standard_normal(k)),
            40.0 * np.exp(0.6 * rng.standard_normal(k)),
        )
        delay_s = np.maximum(delay_s, 2.0)
        # merchants schedule slow retries in business hours, not in the local small hours
        due_local_h = ((c["ts"][idx] + delay_s * US_PER_S) // US_PER_H + P.UTC_OFFSET_H[c["geo"][idx]]) % 24
        night = by_merchant & (delay_s >= 3_600) & (due_local_h < 6)
        delay_s = np.where(night, delay_s + (7 - due_local_h) * 3_600.0 + 21_600.0 * u[2], delay_s)
        upgrade = (
            by_merchant
            & (r == R["DO_NOT_HONOR"])
            & (pop.merchant_3ds_policy[merchant] > 0)
            & ~c["recurring"][idx]
            & ~c["uses_3ds"][idx]
            & (u[2] < 0.6)
        )
        sel = idx[go]
        pending = {key: c[key][sel] for key in REQUEST_COLUMNS}
        pending["reason"] = reason[sel]
        pending["due"] = c["ts"][sel] + (delay_s[go] * US_PER_S).astype(np.int64)
        pending["upgrade_3ds"] = upgrade[go]
        self.stats.retries_dropped += self._retries.push(pending)
