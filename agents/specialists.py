"""The five specialists: each reads the gold layer through the query tools, finds what is worth changing
by fixed, documented criteria, and writes a recommendation carrying the queries it ran, the figures it
used and the expected lift (a backtest of the proposed rule where the backtest can measure it, else an
estimate from the same figures with its formula).

* smart routing: per card network, a route (payment solution a merchant can choose: standard, network
  token, 3DS) approving clearly more than another, with the volume to trust it;
* smart retry: per soft decline reason, retries after the taxonomy's advised wait against earlier ones;
* decline analyst: the reasons losing the most value, where they concentrate, what to do about them;
* risk assessor: risk-tier x segment cells where fraud is approved, and a review rule for them;
* performance recommender: the gold layer's ranked recommendations and the segments under the average.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from agents.backtest import Backtester
from agents.model import (
    ConfigProposal,
    Lift,
    Recommendation,
    RuleProposal,
    cents,
    decimal,
    pct_text,
    pp_text,
    usd_text,
)
from agents.query import QueryRecord, literal, plain
from agents.tools import (
    DECLINE_REASONS,
    NETWORKS,
    RISK_TIERS,
    SEGMENTS,
    Toolbox,
    check_arguments,
    enum,
    integer,
    number,
    object_schema,
)
from payments_core.taxonomy import DECLINES

# Routes the merchant (or its processor) chooses; wallets and passkeys depend on the customer's device.
ROUTABLE = ("standard", "network_token", "3ds")
# Traffic taken off a route: never off 3DS (strong authentication is kept).
MOVABLE = ("standard", "network_token")
FRAUD_TOLERANCE = Decimal("0.005")  # a target route may not have a fraud rate higher than this above the source


@dataclass
class Analysis:
    """What a specialist works with: the run's tools and backtests."""

    toolbox: Toolbox
    backtester: Backtester
    notes: list[str] = field(default_factory=list)

    def query(self, name: str, **arguments: Any) -> tuple[list[dict[str, Any]], QueryRecord]:
        return self.toolbox.query(name, **arguments)


class Specialist:
    name: str = ""
    title: str = ""
    description: str = ""
    keywords: tuple[str, ...] = ()
    properties: ClassVar[dict[str, dict[str, Any]]] = {}

    @property
    def schema(self) -> dict[str, Any]:
        return object_schema(self.properties)

    @property
    def tool_name(self) -> str:
        return f"analyze_{self.name}"

    @property
    def filters(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.properties.items() if "enum" in v)

    def run(self, analysis: Analysis, arguments: dict[str, Any] | None = None) -> list[Recommendation]:
        """Checked arguments (defaults filled; ToolRefused otherwise), then the analysis, best first."""
        checked = check_arguments(self.tool_name, self.schema, dict(arguments or {}))
        recommendations = self.analyze(analysis, checked)
        return sorted(recommendations, key=lambda r: (-r.rank_value, r.scope))

    def analyze(self, analysis: Analysis, args: dict[str, Any]) -> list[Recommendation]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
            "parameters": self.schema,
        }


def rate(value: Any) -> Decimal:
    return decimal(value if value is not None else 0)


def avg_ticket(value_usd: Decimal, count: int) -> Decimal:
    return cents(value_usd / count) if count else Decimal("0.00")


# ------------------------------------------------------------------------------------------ routing
class SmartRouting(Specialist):
    name = "smart_routing"
    title = "Smart routing"
    description = (
        "Per card network, moves traffic from a route (standard or network token) to the route of the same "
        "network approving clearly more, with enough volume on both and no higher fraud."
    )
    keywords = ("route", "routing", "reroute", "network", "solution", "token", "acquirer", "processor", "latency")
    properties: ClassVar[dict[str, dict[str, Any]]] = {
        "card_network": enum(NETWORKS, "only this card network"),
        "min_transactions": integer("transactions each route needs to be compared", 1, 10_000_000, 50),
        "min_lift_pp": number("approval-rate lift (percentage points) worth a rule", 0, 100, 0.5),
    }

    def analyze(self, analysis: Analysis, args: dict[str, Any]) -> list[Recommendation]:
        rows, record = analysis.query(
            "routing_performance", card_network=args.get("card_network"), min_transactions=args["min_transactions"]
        )
        by_network: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["payment_solution"] in ROUTABLE and r["approval_rate"] is not None:
                by_network.setdefault(r["card_network"], []).append(r)
        out = []
        min_lift = decimal(args["min_lift_pp"]) / 100
        for network, routes in sorted(by_network.items()):
            best = max(routes, key=lambda r: (r["approval_rate"], r["transactions"], r["payment_solution"]))
            for source in routes:
                if source is best or source["payment_solution"] not in MOVABLE:
                    continue
                lift = rate(best["approval_rate"]) - rate(source["approval_rate"])
                if lift < min_lift or lift <= 0:
                    continue
                if rate(best["fraud_rate"]) > rate(source["fraud_rate"]) + FRAUD_TOLERANCE:
                    analysis.notes.append(
                        f"{network}: {best['payment_solution']} approves more than {source['payment_solution']} "
                        "but with a higher fraud rate; not recommended"
                    )
                    continue
                out.append(self._recommend(network, source, best, lift, record))
        return out

    def _recommend(self, network: str, source: dict, best: dict, lift: Decimal, record: QueryRecord) -> Recommendation:
        src, dst = source["payment_solution"], best["payment_solution"]
        extra = (Decimal(source["transactions"]) * lift).quantize(Decimal("0.1"))
        ticket = avg_ticket(decimal(source["approved_value_usd"]), source["approved"])
        value = cents(extra * ticket)
        figures = {
            "card_network": network,
            "source_route": {k: plain(source[k]) for k in source},
            "target_route": {k: plain(best[k]) for k in best},
            "approval_rate_lift": float(lift),
            "source_avg_approved_ticket_usd": ticket,
        }
        lift_obj = Lift(
            "gold_estimate",
            "estimated",
            f"about {extra} more approvals ({usd_text(value)}) on the {src} volume, if it approved as {dst} does",
            figures={"extra_approvals": extra, "value_usd": value, "approval_rate_lift": float(lift)},
            formula="source transactions x (target approval rate - source approval rate) x source average approved "
            "ticket; routing is not replayed by the backtest (a route changes advice, not the outcome)",
            value_usd=value,
        )
        text = (
            f"Route {network} {src} traffic to {dst}: {dst} approves {pct_text(best['approval_rate'], 2)} of "
            f"{best['transactions']:,} {network} transactions against {pct_text(source['approval_rate'], 2)} of "
            f"{source['transactions']:,} on {src} ({pp_text(lift)}); p95 latency {best['p95_latency_ms']} ms vs "
            f"{source['p95_latency_ms']} ms."
        )
        action = RuleProposal(
            name=f"Route {network} {src} traffic to {dst}",
            type="routing",
            condition=f"card_network = {literal(network)} AND payment_solution = {literal(src)}",
            action=f"route:{dst}",
            priority=105,
            description=f"smart routing agent: {pct_text(best['approval_rate'], 2)} vs "
            f"{pct_text(source['approval_rate'], 2)} approval",
        )
        return Recommendation(
            self.name, "routing", f"{network}/{src}", action.name, text, figures, [record], action, lift_obj
        )


# ------------------------------------------------------------------------------------------ retry
class SmartRetry(Specialist):
    name = "smart_retry"
    title = "Smart retry"
    description = (
        "Per soft decline reason, compares retries made after the decline taxonomy's advised wait with earlier "
        "ones; proposes a retry rule where waiting pays, and a shorter wait where it does not."
    )
    keywords = ("retry", "retries", "retried", "reattempt", "recover", "recovery", "dunning", "wait")
    properties: ClassVar[dict[str, dict[str, Any]]] = {
        "decline_reason": enum(DECLINE_REASONS, "only this previous decline reason"),
        "min_retries": integer("retries each group (advised, earlier) needs", 1, 1_000_000, 10),
    }

    def analyze(self, analysis: Analysis, args: dict[str, Any]) -> list[Recommendation]:
        rows, record = analysis.query("retry_performance", decline_reason=args.get("decline_reason"))
        out = []
        for r in rows:
            taxonomy = DECLINES.get(r["decline_reason"])
            if taxonomy is None or not taxonomy.soft:
                analysis.notes.append(
                    f"{r['decline_reason']}: a hard decline, never recovered by a retry ({r['retries']} retried); "
                    "no retry rule"
                )
                continue
            if r["lift_over_baseline"] is None:
                analysis.notes.append(
                    f"{r['decline_reason']}: no retries on both sides of the advised wait to compare; no recommendation"
                )
                continue
            if r["advised_retries"] < args["min_retries"] or r["early_retries"] < args["min_retries"]:
                analysis.notes.append(
                    f"{r['decline_reason']}: {r['advised_retries']} advised and {r['early_retries']} earlier retries, "
                    f"fewer than {args['min_retries']} in a group; no recommendation"
                )
                continue
            out.append(self._recommend(r, taxonomy, record))
        return out

    def _recommend(self, r: dict[str, Any], taxonomy: Any, record: QueryRecord) -> Recommendation:
        reason, lift = r["decline_reason"], decimal(r["lift_over_baseline"])
        ticket = avg_ticket(decimal(r["recovered_value_usd"]), r["recovered"])
        figures = {k: plain(v) for k, v in r.items()}
        figures["avg_recovered_ticket_usd"] = ticket
        figures["advised_wait_seconds"] = taxonomy.retry_after_seconds
        if lift > 0:
            moved = r["early_retries"]
            extra = (Decimal(moved) * lift).quantize(Decimal("0.1"))
            action: RuleProposal | ConfigProposal = RuleProposal(
                name=f"Retry {reason} after {taxonomy.retry_after_seconds} s",
                type="retry",
                condition=f"previous_decline_code = {literal(reason)} AND retry_count < {taxonomy.max_attempts}",
                action=f"retry:{taxonomy.retry_after_seconds}",
                priority=125,
                description=f"smart retry agent: {pct_text(r['advised_success_rate'])} success after the advised wait "
                f"vs {pct_text(r['baseline_success_rate'])} earlier",
            )
            text = (
                f"Retry {reason} declines after the advised {taxonomy.retry_after_seconds} s: "
                f"{pct_text(r['advised_success_rate'])} of {r['advised_retries']} such retries succeeded against "
                f"{pct_text(r['baseline_success_rate'])} of {r['early_retries']} earlier ones ({pp_text(lift)})."
            )
            formula = "earlier retries x lift over baseline x average recovered ticket"
        else:
            moved = r["advised_retries"]
            extra = (Decimal(moved) * -lift).quantize(Decimal("0.1"))
            action = ConfigProposal(
                key=f"decline_taxonomy.{reason}.retry_after_seconds",
                current=taxonomy.retry_after_seconds,
                proposed=f"less than {taxonomy.retry_after_seconds}",
                note="earlier retries of this reason succeed more often than retries after the advised wait",
            )
            text = (
                f"Shorten the advised wait before retrying {reason} (now {taxonomy.retry_after_seconds} s): earlier "
                f"retries succeeded {pct_text(r['baseline_success_rate'])} of {r['early_retries']} times against "
                f"{pct_text(r['advised_success_rate'])} of {r['advised_retries']} after the wait."
            )
            formula = "advised retries x (earlier success rate - advised success rate) x average recovered ticket"
        value = cents(extra * ticket)
        lift_obj = Lift(
            "gold_estimate",
            "estimated",
            f"about {extra} more recovered payments ({usd_text(value)}) over the same history",
            figures={"extra_recoveries": extra, "value_usd": value, "success_rate_lift": float(abs(lift))},
            formula=formula + "; the backtest replays first decisions, not retry timing",
            value_usd=value,
        )
        title = action.name if isinstance(action, RuleProposal) else f"Shorter retry wait for {reason}"
        return Recommendation(self.name, "retry", reason, title, text, figures, [record], action, lift_obj)


# ------------------------------------------------------------------------------------------ declines
class DeclineAnalyst(Specialist):
    name = "decline_analyst"
    title = "Decline analyst"
    description = (
        "The decline reasons losing the most value, where they concentrate (segment x route), and the taxonomy's "
        "action for each: a 3DS step-up rule for issuer-policy declines, a handling change for the others."
    )
    keywords = ("decline", "declines", "declined", "reason", "reasons", "code", "codes", "issuer", "soft", "hard")
    properties: ClassVar[dict[str, dict[str, Any]]] = {
        "decline_reason": enum(DECLINE_REASONS, "only this decline reason"),
        "merchant_segment": enum(SEGMENTS, "where it concentrates within this merchant segment"),
        "limit": integer("the reasons with the most declined value", 1, 8, 3),
    }

    def analyze(self, analysis: Analysis, args: dict[str, Any]) -> list[Recommendation]:
        reasons, reasons_record = analysis.query(
            "decline_reasons", decline_reason=args.get("decline_reason"), limit=args["limit"]
        )
        out = []
        for r in reasons:
            if not r["declines"]:
                continue
            spots, spots_record = analysis.query(
                "decline_hotspots",
                decline_reason=r["decline_reason"],
                merchant_segment=args.get("merchant_segment"),
                limit=3,
            )
            out.append(self._recommend(analysis, r, spots, [reasons_record, spots_record]))
        return out

    def _recommend(
        self, analysis: Analysis, r: dict[str, Any], spots: list[dict[str, Any]], records: list[QueryRecord]
    ) -> Recommendation:
        reason = r["decline_reason"]
        figures = {k: plain(v) for k, v in r.items()}
        figures["hotspots"] = [{k: plain(v) for k, v in s.items()} for s in spots]
        top = spots[0] if spots else None
        where = (
            f"; most in {top['merchant_segment']} via {top['payment_solution']} ({top['declines']} declines, "
            f"{usd_text(decimal(top['declined_value_usd']))})"
            if top
            else ""
        )
        declined = decimal(r["declined_value_usd"])
        recoverable = decimal(r["estimated_recoverable_value_usd"] or 0)
        base = (
            f"{reason} ({'soft' if r['is_soft_decline'] else 'hard'}, code {r['decline_code']}): {r['declines']:,} "
            f"declines, {pct_text(r['share_of_declines'])} of all, {usd_text(declined)} declined{where}."
        )
        gold = Lift(
            "gold_estimate",
            "estimated",
            f"{usd_text(recoverable)} estimated recoverable",
            figures={"value_usd": recoverable},
            formula="declined value x retry success rate of the reason (v_reason_code_insights)",
            value_usd=recoverable,
        )
        if r["is_soft_decline"] and "3ds" in (r["recommended_action"] or ""):
            proposal = RuleProposal(
                name=f"Step up {reason} retries with 3DS",
                type="authentication",
                condition=f"is_retry AND previous_decline_code = {literal(reason)} AND NOT three_ds_authenticated",
                action="challenge_3ds",
                priority=75,
                description=f"decline analyst agent: taxonomy action {r['recommended_action']}",
            )
            lift = analysis.backtester.lift(proposal, proposal.rule_id(_rec_id(self.name, reason, proposal)))
            if lift.status != "estimated":
                lift = Lift(
                    lift.method,
                    lift.status,
                    f"{lift.summary}; gold estimate: {gold.summary}",
                    figures=gold.figures,
                    formula=gold.formula,
                    value_usd=recoverable,
                )
            text = base + f" Retry them with a 3DS challenge ({r['recommended_action']})."
            return Recommendation(
                self.name, "decline_handling", reason, proposal.name, text, figures, records, proposal, lift
            )
        action = ConfigProposal(
            key=f"decline_handling.{reason}",
            current=None,
            proposed=r["recommended_action"],
            note=f"the decline taxonomy's action for {reason}",
        )
        if r["is_soft_decline"]:
            text = base + f" Handle them as the taxonomy advises: {r['recommended_action']}."
            lift = gold
        else:
            text = base + f" Not recoverable by retry: {r['recommended_action'].replace('_', ' ')}."
            lift = Lift(
                "none",
                "not_applicable",
                f"hard declines are not recovered by retry; {usd_text(declined)} declined is the value at stake",
                figures={"declined_value_usd": declined},
            )
        return Recommendation(
            self.name, "decline_handling", reason, f"Handle {reason} declines", text, figures, records, action, lift
        )


def _rec_id(agent: str, scope: str, action: RuleProposal | ConfigProposal) -> str:
    """The id the recommendation will have (the rule id derives from it)."""
    probe = Recommendation(agent, "", scope, "", "", {}, [], action, Lift("none", "not_applicable", ""))
    return probe.id


# ------------------------------------------------------------------------------------------ risk
class RiskAssessor(Specialist):
    name = "risk_assessor"
    title = "Risk assessor"
    description = (
        "Risk-tier x merchant-segment cells where fraud gets approved at a rate worth acting on; proposes a "
        "review rule for each and measures it with a backtest against the live rule set."
    )
    keywords = ("risk", "fraud", "fraudulent", "chargeback", "chargebacks", "aml", "suspicious", "review", "tier")
    properties: ClassVar[dict[str, dict[str, Any]]] = {
        "risk_tier": enum(RISK_TIERS, "only this risk tier"),
        "merchant_segment": enum(SEGMENTS, "only this merchant segment"),
        "min_transactions": integer("transactions a cell needs", 1, 10_000_000, 10),
        "min_fraud_rate": number("fraud share of a cell's transactions worth a rule", 0, 1, 0.05),
        "limit": integer("cells with the most fraud value approved", 1, 10, 3),
    }

    def analyze(self, analysis: Analysis, args: dict[str, Any]) -> list[Recommendation]:
        rows, record = analysis.query(
            "risk_signals",
            risk_tier=args.get("risk_tier"),
            merchant_segment=args.get("merchant_segment"),
            min_transactions=args["min_transactions"],
        )
        cells = [
            r
            for r in rows
            if r["fraud_approved"] >= 1
            and Decimal(r["fraud_transactions"]) / Decimal(r["transactions"]) >= decimal(args["min_fraud_rate"])
        ]
        cells.sort(key=lambda r: (-decimal(r["fraud_approved_value_usd"]), r["risk_tier"], r["merchant_segment"]))
        return [self._recommend(analysis, r, record) for r in cells[: args["limit"]]]

    def _recommend(self, analysis: Analysis, r: dict[str, Any], record: QueryRecord) -> Recommendation:
        tier, segment = r["risk_tier"], r["merchant_segment"]
        fraud_rate = Decimal(r["fraud_transactions"]) / Decimal(r["transactions"])
        figures = {k: plain(v) for k, v in r.items()}
        figures["fraud_rate"] = float(round(fraud_rate, 4))
        at_stake = decimal(r["fraud_approved_value_usd"])
        proposal = RuleProposal(
            name=f"Review {tier}-risk {segment} payments",
            type="risk",
            condition=f"risk_tier = {literal(tier)} AND merchant_segment = {literal(segment)}",
            action="review",
            priority=55,
            description=f"risk assessor agent: {r['fraud_approved']} fraudulent payments approved "
            f"({usd_text(at_stake)}) in this cell",
        )
        scope = f"{tier}/{segment}"
        lift = analysis.backtester.lift(proposal, proposal.rule_id(_rec_id(self.name, scope, proposal)))
        if lift.status != "estimated":
            lift.summary += f"; fraud approved in the cell: {usd_text(at_stake)} (the most a rule could stop)"
            lift.figures = {"fraud_approved_value_usd": at_stake}
        text = (
            f"Send {tier}-risk {segment} payments to review: {r['fraud_transactions']} of {r['transactions']:,} were "
            f"fraud ({pct_text(fraud_rate)}) and {r['fraud_approved']} of them were approved, "
            f"{usd_text(at_stake)}; the cell approves {pct_text(r['approval_rate'])}."
        )
        return Recommendation(self.name, "risk", scope, proposal.name, text, figures, [record], proposal, lift)


# ------------------------------------------------------------------------------------------ performance
class PerformanceRecommender(Specialist):
    name = "performance_recommender"
    title = "Performance recommender"
    description = (
        "The gold layer's routing opportunities per merchant segment and card network with their estimated "
        "impact, and the merchant segments approving below the overall rate."
    )
    keywords = (
        "performance",
        "approval",
        "kpi",
        "kpis",
        "improve",
        "improvement",
        "impact",
        "revenue",
        "overall",
        "recommend",
        "recommendations",
        "segment",
        "segments",
        "trend",
    )
    properties: ClassVar[dict[str, dict[str, Any]]] = {
        "merchant_segment": enum(SEGMENTS, "only this merchant segment"),
        "limit": integer("gold routing recommendations with the most estimated impact", 1, 20, 5),
        "min_gap_pp": number("points under the overall approval rate that flag a segment", 0, 100, 1.0),
    }

    def analyze(self, analysis: Analysis, args: dict[str, Any]) -> list[Recommendation]:
        out = []
        # routing per segment and network (retry timing and decline recovery are the other specialists')
        gold, gold_record = analysis.query("gold_recommendations", category="routing", limit=args["limit"])
        segment = args.get("merchant_segment")
        for g in gold:
            if segment and not str(g["scope"]).startswith(f"{segment}/"):
                continue
            out.append(self._from_gold(g, gold_record))
        segments, seg_record = analysis.query("segment_performance")
        total = sum(s["transactions"] for s in segments)
        approved = sum(s["approved"] for s in segments)
        if total:
            overall = Decimal(approved) / Decimal(total)
            gap = decimal(args["min_gap_pp"]) / 100
            for s in segments:
                if segment and s["merchant_segment"] != segment:
                    continue
                if s["approval_rate"] is not None and rate(s["approval_rate"]) < overall - gap:
                    out.append(self._segment(s, overall, seg_record))
        return out

    def _from_gold(self, g: dict[str, Any], record: QueryRecord) -> Recommendation:
        impact = decimal(g["estimated_impact_usd"] or 0)
        figures = {k: plain(v) for k, v in g.items()}
        action = ConfigProposal(
            key=f"{g['category']}.{g['scope']}",
            current=plain(g["current_value"]),
            proposed=plain(g["expected_value"]),
            note=f"{g['metric']}: from the gold recommendation ranked {g['priority']}",
        )
        lift = Lift(
            "gold_estimate",
            "estimated",
            f"{usd_text(impact)} estimated impact over {g['evidence_transactions']:,} transactions",
            figures={"value_usd": impact, "metric": g["metric"]},
            formula="v_recommendations.estimated_impact_usd (value in scope x (expected - current))",
            value_usd=impact,
        )
        text = f"{g['recommendation']} (gold priority {g['priority']}, {g['evidence_transactions']:,} transactions)."
        title = str(g["recommendation"]).split(":", 1)[0]
        scope = f"{g['category']}:{g['scope']}"
        return Recommendation(self.name, "performance", scope, title, text, figures, [record], action, lift)

    def _segment(self, s: dict[str, Any], overall: Decimal, record: QueryRecord) -> Recommendation:
        seg = s["merchant_segment"]
        gap = overall - rate(s["approval_rate"])
        missing = (Decimal(s["transactions"]) * gap).quantize(Decimal("0.1"))
        value = cents(missing * decimal(s["avg_ticket_usd"]))
        figures = {k: plain(v) for k, v in s.items()}
        figures["overall_approval_rate"] = float(round(overall, 4))
        action = ConfigProposal(
            key=f"merchant_segment.{seg}",
            current=plain(s["approval_rate"]),
            proposed=float(round(overall, 4)),
            note=f"work on its top decline reason {s['top_decline_reason']} (ask the decline analyst)",
        )
        lift = Lift(
            "gold_estimate",
            "estimated",
            f"about {missing} approvals ({usd_text(value)}) if {seg} approved at the overall rate",
            figures={"missing_approvals": missing, "value_usd": value},
            formula="segment transactions x (overall approval rate - segment approval rate) x average ticket",
            value_usd=value,
        )
        text = (
            f"{seg} approves {pct_text(s['approval_rate'], 2)} of {s['transactions']:,} payments against "
            f"{pct_text(overall, 2)} overall ({pp_text(-gap)}); its top decline reason is {s['top_decline_reason']}."
        )
        return Recommendation(
            self.name, "performance", seg, f"Raise {seg} approvals", text, figures, [record], action, lift
        )


SPECIALISTS: tuple[Specialist, ...] = (
    SmartRouting(),
    SmartRetry(),
    DeclineAnalyst(),
    RiskAssessor(),
    PerformanceRecommender(),
)
BY_NAME: dict[str, Specialist] = {s.name: s for s in SPECIALISTS}
