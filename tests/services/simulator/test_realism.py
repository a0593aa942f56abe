"""Distribution checks on generated samples: the numbers a payments analyst would look at."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.simulator.generator import TransactionGenerator
from services.simulator.population import ISSUERS
from tests.services.simulator.conftest import sample

SPEC_GEO = {"BR": 0.72, "US": 0.10, "MX": 0.08, "AR": 0.06, "CL": 0.04}


def _issuer_bins(gen: TransactionGenerator, issuer_id: str) -> list[str]:
    return gen.population.issuer_bins(gen.population.issuer_index(issuer_id))


def _p(series: pd.Series, q: float) -> float:
    return float(np.percentile(series, q))


def test_baseline_approval_rate_is_where_real_ecommerce_sits(week):
    rate = week["is_approved"].mean()
    assert 0.85 <= rate <= 0.92, rate
    # and it stays there hour by hour (no alert firing on a normal day)
    hourly = week.set_index("event_timestamp")["is_approved"].resample("1h").agg(["mean", "size"])
    busy = hourly[hourly["size"] >= 1_000]
    assert busy["mean"].min() > 0.80


def test_geography_is_brazil_first_as_in_the_spec(week):
    shares = week["geo_country"].value_counts(normalize=True)
    for country, share in SPEC_GEO.items():
        assert abs(shares[country] - share) < 0.015, (country, shares[country])
    currency = week.groupby("geo_country")["currency"].agg(lambda s: s.mode()[0])
    assert currency["BR"] == "BRL" and currency["CL"] == "CLP" and currency["US"] == "USD"
    xborder = (week["issuer_country"] != week["geo_country"]).mean()
    assert 0.03 < xborder < 0.12


def test_amounts_are_log_normal_with_a_heavy_tail(week):
    brl = week.loc[week["currency"] == "BRL", "amount_minor"] / 100
    median = brl.median()
    assert 40 <= median <= 75, median
    assert _p(brl, 99) / median > 8
    assert (week["amount_minor"] == week["amount_minor"].round()).all()
    # log-amounts are roughly symmetric (log-normal), not the raw amounts
    log = np.log(brl)
    assert abs(log.skew()) < 0.6 < brl.skew()


def test_outcomes_are_caused_by_risk_tokens_passkeys_and_cross_border(week):
    risky = week["fraud_score"] > 0.6
    assert week.loc[risky, "is_approved"].mean() < week.loc[~risky, "is_approved"].mean() - 0.15
    dnh = week["decline_reason"] == "DO_NOT_HONOR"
    standard = week["payment_solution"] == "standard"
    token = week["is_network_token"] & ~week["payment_solution"].isin(["apple_pay", "google_pay"])
    assert dnh[token].mean() < dnh[standard].mean()
    assert dnh[week["has_passkey"]].mean() < dnh[standard].mean()
    xb = week["issuer_country"] != week["geo_country"]
    assert week.loc[xb, "is_approved"].mean() < week.loc[~xb, "is_approved"].mean() - 0.03
    debit = week["payment_method_type"] == "debit"
    nsf = week["decline_reason"] == "INSUFFICIENT_FUNDS"
    assert nsf[debit].mean() > 2 * nsf[~debit].mean()
    # 3DS funnel is a funnel
    assert (week["three_ds_routed"] <= week["uses_3ds"]).all()
    assert (week["three_ds_friction"] <= week["three_ds_routed"]).all()
    assert (week["three_ds_authenticated"] <= week["three_ds_routed"]).all()
    failed_3ds = week["decline_reason"] == "3DS_AUTH_FAILED"
    assert (week.loc[failed_3ds, "three_ds_friction"] & ~week.loc[failed_3ds, "three_ds_authenticated"]).all()


def test_latency_has_a_realistic_body_and_tail_per_route(week):
    ms = week.loc[week["decline_reason"] != "ISSUER_UNAVAILABLE", "processing_time_ms"]
    p50, p95, p99 = _p(ms, 50), _p(ms, 95), _p(ms, 99)
    assert 150 <= p50 <= 450
    assert p99 / p50 > 3 and p95 / p50 > 1.8
    by_solution = week.groupby("payment_solution")["processing_time_ms"].median()
    assert by_solution["3ds"] > by_solution["standard"] > by_solution["network_token"] * 0.8
    unavailable = week.loc[week["decline_reason"] == "ISSUER_UNAVAILABLE", "processing_time_ms"]
    assert unavailable.max() >= 5_000  # timeouts


def test_volume_follows_time_of_day_and_day_of_week(week):
    local = week["event_timestamp"].dt.tz_convert("America/Sao_Paulo")
    per_hour = local.dt.hour.value_counts()
    assert per_hour[20] > 5 * per_hour[4]
    per_day = local.dt.date.value_counts().sort_index().iloc[1:-1]  # full local days only
    assert len(per_day) >= 3
    assert per_day.max() / per_day.min() < 1.3  # weekdays differ, but mildly


def test_fraud_has_a_story_models_can_learn(week):
    fraud = week[week["is_fraud"]]
    assert 0.001 < len(fraud) / len(week) < 0.01
    assert fraud["fraud_score"].mean() > 3 * week.loc[~week["is_fraud"], "fraud_score"].mean()
    assert fraud["device_trust_score"].mean() < week.loc[~week["is_fraud"], "device_trust_score"].mean() - 0.2
    # rings: devices shared across many cards; legit devices are personal
    cards_per_device = week.groupby("device_fingerprint")["card_token_id"].nunique()
    assert cards_per_device.max() >= 10
    legit = week[~week["is_fraud"]].groupby("device_fingerprint")["card_token_id"].nunique()
    assert legit.max() <= 3


def test_issuer_outage_collapses_one_issuers_approvals():
    gen, df = sample("issuer_outage", n=100_000, issuer="iss_br_01")
    _, base = sample("normal", n=100_000)
    bins = _issuer_bins(gen, "iss_br_01")
    hit = df["card_bin"].isin(bins)
    assert df.loc[hit, "is_approved"].mean() < 0.35
    assert base.loc[base["card_bin"].isin(bins), "is_approved"].mean() > 0.85
    assert df.loc[~hit & ~df["is_retry"], "is_approved"].mean() > 0.85  # the others are fine
    assert df["is_approved"].mean() < base["is_approved"].mean() - 0.08
    assert (df["decline_reason"] == "ISSUER_UNAVAILABLE").mean() > 10 * (
        base["decline_reason"] == "ISSUER_UNAVAILABLE"
    ).mean()
    assert df["is_retry"].mean() > 2 * base["is_retry"].mean()  # retries pile up


def test_default_issuer_outage_targets_a_large_brazilian_issuer():
    gen, df = sample("issuer_outage", n=50_000)
    assert gen.scenario_issuer == "iss_br_02" and ISSUERS[1].id == "iss_br_02"
    hit = df["card_bin"].isin(_issuer_bins(gen, "iss_br_02"))
    assert 0.08 < hit.mean() < 0.20
    assert df.loc[hit, "is_approved"].mean() < 0.35


def test_fraud_ring_scenario_raises_fraud_with_shared_devices():
    _, df = sample("fraud_ring", n=100_000)
    _, base = sample("normal", n=100_000)
    assert df["is_fraud"].mean() > 5 * base["is_fraud"].mean()
    fraud = df[df["is_fraud"]]
    cards_per_device = fraud.groupby("device_fingerprint")["card_token_id"].nunique()
    assert cards_per_device.sort_values().iloc[-5:].min() >= 30
    shared = cards_per_device[cards_per_device >= 10].index
    ring = fraud[fraud["device_fingerprint"].isin(shared)]
    assert len(ring) > 0.7 * len(fraud)
    assert ring["ip_address"].nunique() < 60  # a few IPs
    assert ring["merchant_id"].nunique() < 100  # a handful of target merchants per ring


def test_bin_attack_shows_small_amount_card_testing_on_one_bin():
    _, df = sample("bin_attack", n=100_000)
    _, base = sample("normal", n=100_000)
    small = (df["amount_minor"] <= 500) & (df["currency"] == "BRL")
    base_small = (base["amount_minor"] <= 500) & (base["currency"] == "BRL")
    assert small.mean() > 0.12 and small.mean() > 3 * base_small.mean()
    assert df.loc[small, "card_bin"].value_counts(normalize=True).iloc[0] > 0.6
    assert base.loc[base_small, "card_bin"].value_counts(normalize=True).iloc[0] < 0.1
    top_bin = df.loc[small, "card_bin"].value_counts().index[0]
    testing = df[small & df["is_fraud"] & (df["card_bin"] == top_bin)]
    assert testing["card_token_id"].nunique() > 0.9 * len(testing)  # a new card every attempt
    # from a handful of accounts and devices
    assert testing["cardholder_id"].value_counts().iloc[:5].sum() > 0.99 * len(testing)
    assert testing["device_fingerprint"].value_counts().iloc[:3].sum() > 0.99 * len(testing)
    assert df.loc[small & df["is_fraud"], "is_approved"].mean() < 0.5
    assert (df["decline_reason"] == "CVV_MISMATCH").mean() > 5 * (base["decline_reason"] == "CVV_MISMATCH").mean()
    assert df["is_approved"].mean() < base["is_approved"].mean() - 0.05


def test_latency_spike_moves_the_percentiles():
    _, df = sample("latency_spike", n=50_000)
    _, base = sample("normal", n=50_000)
    assert _p(df["processing_time_ms"], 50) > 2.5 * _p(base["processing_time_ms"], 50)
    assert _p(df["processing_time_ms"], 99) > 2.5 * _p(base["processing_time_ms"], 99)


@pytest.mark.parametrize("scenario", ["issuer_outage", "fraud_ring", "bin_attack", "latency_spike"])
def test_switching_back_to_normal_restores_the_baseline(scenario):
    gen, _ = sample(scenario, n=50_000)
    gen.set_scenario("normal")
    df = pd.concat([gen.batch(50_000).to_pandas() for _ in range(2)]).iloc[20_000:]
    assert df.loc[~df["is_retry"], "is_approved"].mean() > 0.85
    assert _p(df["processing_time_ms"], 50) < 450
