"""Point each model serving endpoint at its model's ``champion`` version (the train job's last task).

    python -m bundle.tasks.serve_champions --catalog C --schema S --endpoint approval=NAME [--endpoint ...]

The bundle creates the endpoints (``resources/<kind>.model_serving_endpoint.yml``) without a served
entity: a bundle names a model version, not an alias, and before the first training there is no
version to name. After each training this task reads the alias ``champion`` of every Unity Catalog
model (``payments_core.models.registered_name``) and updates the endpoints whose served version
differs; a model without a champion yet is reported and left alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service.serving import Route, ServedEntityInput, TrafficConfig

from payments_core.models import CHAMPION, MODEL_KINDS, registered_name

log = logging.getLogger("bundle.serve_champions")


@dataclass(frozen=True)
class EndpointUpdate:
    endpoint: str
    kind: str
    model: str  # catalog.schema.payment_analysis_<kind>
    version: str


def plan(
    endpoints: dict[str, str],
    champions: dict[str, str | None],
    served: dict[str, tuple[str, str] | None],
    models: dict[str, str],
) -> list[EndpointUpdate]:
    """The endpoints to update: kind -> endpoint, kind -> champion version (None: none yet),
    endpoint -> (model, version) it serves (None: nothing yet), kind -> model name."""
    out = []
    for kind, endpoint in sorted(endpoints.items()):
        version = champions.get(kind)
        if version is None:
            continue
        if served.get(endpoint) != (models[kind], version):
            out.append(EndpointUpdate(endpoint, kind, models[kind], version))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bundle.tasks.serve_champions", description=__doc__)
    p.add_argument("--catalog", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument(
        "--endpoint", action="append", required=True, metavar="KIND=NAME", help=f"kind: {', '.join(MODEL_KINDS)}"
    )
    p.add_argument("--workload-size", default="Small", help="Small, Medium or Large")
    return p


def parse_endpoints(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        kind, sep, name = value.partition("=")
        if not sep or kind not in MODEL_KINDS or not name:
            raise SystemExit(f"--endpoint {value!r}: expected KIND=NAME with KIND one of {', '.join(MODEL_KINDS)}")
        out[kind] = name
    return out


def run(
    w: WorkspaceClient, catalog: str, schema: str, endpoints: dict[str, str], workload_size: str
) -> list[EndpointUpdate]:
    models = {kind: registered_name(kind, catalog, schema) for kind in endpoints}
    champions: dict[str, str | None] = {}
    for kind, model in models.items():
        try:
            champions[kind] = str(w.model_versions.get_by_alias(model, CHAMPION).version)
        except NotFound:
            log.warning("%s has no %s yet: endpoint %s left as it is", model, CHAMPION, endpoints[kind])
            champions[kind] = None
    served: dict[str, tuple[str, str] | None] = {}
    for endpoint in endpoints.values():
        config = w.serving_endpoints.get(endpoint).config
        entities = (config.served_entities or []) if config else []
        served[endpoint] = (entities[0].entity_name or "", entities[0].entity_version or "") if entities else None
    updates = plan(endpoints, champions, served, models)
    for u in updates:
        log.info("%s: serving %s version %s", u.endpoint, u.model, u.version)
        w.serving_endpoints.update_config(
            name=u.endpoint,
            served_entities=[
                ServedEntityInput(
                    name=u.kind,
                    entity_name=u.model,
                    entity_version=u.version,
                    workload_size=workload_size,
                    scale_to_zero_enabled=True,
                )
            ],
            traffic_config=TrafficConfig(routes=[Route(served_entity_name=u.kind, traffic_percentage=100)]),
        )
    return updates


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    updates = run(WorkspaceClient(), args.catalog, args.schema, parse_endpoints(args.endpoint), args.workload_size)
    log.info("%d endpoint(s) updated", len(updates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
