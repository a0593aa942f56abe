"""Model registry contract and model loading for the decision core.

Registry contract (what the training job writes and the decision core reads)
---------------------------------------------------------------------------
* Four binary scikit-learn classifiers over ``payments_core.model_features.MODEL_FEATURES`` (input:
  ``feature_matrix(df)``, float32, columns in that exact order):

  ===========  ==============================================  ==================================
  kind         registered model name                           label / meaning of P(1)
  ===========  ==============================================  ==================================
  approval     ``payment_analysis_approval``                   ``is_approved``
  risk         ``payment_analysis_risk``                       ``is_fraud``
  routing      ``payment_analysis_routing``                    ``is_approved`` given the route in
                                                               the ``payment_solution=*`` columns
  retry        ``payment_analysis_retry``                      ``is_approved`` of a retry (rows with
                                                               ``is_retry`` and a soft
                                                               ``previous_decline_code``)
  ===========  ==============================================  ==================================

  With Unity Catalog the names carry a ``{catalog}.{schema}.`` prefix (``registered_name``).
* Aliases: ``champion`` decides; ``challenger`` (optional) is scored and logged, never decides.
  Promotion = moving the alias; running services pick it up within their refresh interval
  (``DecisionEngine.refresh``) without restart.
* Logging: ``log_and_register(kind, estimator, threshold=..., metrics=..., X_sample=...)``. It calls
  ``mlflow.sklearn.log_model(..., serialization_format="skops", skops_trusted_types=...)`` with a
  signature, writes ``pa_model_meta.json`` (feature names, feature schema version, threshold,
  estimator class) next to the model, tags the model version (``pa.kind``, ``pa.threshold``,
  ``pa.feature_schema_version``, ``pa.features_sha256``) and sets the alias(es). Call it inside an
  active MLflow run (one is started if none is active).
* Safety: the core never unpickles. It loads the ``model.skops`` file with ``skops.io.load`` and
  ITS OWN allow-list ``TRUSTED_TYPES`` (not the list stored in the model), and refuses models whose
  feature hash differs from ``MODEL_FEATURES`` (``pa.features_sha256``).
* Threshold: the operating threshold chosen by training (``pa.threshold``). The policy uses the risk
  model's threshold as its decline threshold; others are informative.
* No model registered: a transparent heuristic (fixed logistic weights over the same features,
  ``HEURISTIC_WEIGHTS``) decides and ``model_versions`` says ``"heuristic"``.

Supported estimators for the fast path: see ``payments_core.fastpath``; prefer
``Pipeline([StandardScaler(), LogisticRegression()])`` or ``HistGradientBoostingClassifier``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

if TYPE_CHECKING:
    from mlflow import MlflowClient

from payments_core.fastpath import FastModel, LinearModel, RawEstimator, build_fast_model
from payments_core.model_features import FEATURE_INDEX, FEATURE_SCHEMA_VERSION, MODEL_FEATURES, N_FEATURES

log = logging.getLogger(__name__)

MODEL_KINDS: tuple[str, ...] = ("approval", "risk", "routing", "retry")
BASE_NAMES: dict[str, str] = {kind: f"payment_analysis_{kind}" for kind in MODEL_KINDS}
CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES: tuple[str, ...] = (CHAMPION, CHALLENGER)
META_ARTIFACT = "pa_model_meta.json"
HEURISTIC = "heuristic"
FEATURES_SHA256 = hashlib.sha256("\n".join(MODEL_FEATURES).encode()).hexdigest()

# Types skops may instantiate beyond its defaults (numpy, builtins, scikit-learn estimators).
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn.ensemble._gb.BinomialDeviance",
    "sklearn.dummy.DummyClassifier",
    "collections.OrderedDict",
    "numpy.dtype",
)


def registered_name(kind: str, catalog: str | None = None, schema: str | None = None) -> str:
    """Registered model name of ``kind``; ``catalog.schema.`` prefixed for Unity Catalog."""
    if kind not in BASE_NAMES:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    base = BASE_NAMES[kind]
    if catalog and schema:
        return f"{catalog}.{schema}.{base}"
    if catalog or schema:
        raise ValueError("catalog and schema go together")
    return base


# ------------------------------------------------------------------------------------------ logging
def log_and_register(
    kind: str,
    estimator: Any,
    *,
    threshold: float,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    X_sample: np.ndarray | None = None,
    catalog: str | None = None,
    schema: str | None = None,
    aliases: Iterable[str] = (CHAMPION,),
    description: str | None = None,
) -> str:
    """Log a fitted classifier to the active MLflow run, register it and point ``aliases`` at it.

    Uses the current MLflow tracking/registry URIs (``mlflow.set_tracking_uri``). Returns the new
    model version (string). Raises ``ValueError`` when the estimator does not fit the contract
    (not binary, wrong number of features, types outside ``TRUSTED_TYPES``).
    """
    # MLflow and skops take seconds to import; only training and model loading need them
    import mlflow  # noqa: PLC0415
    import skops.io  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    name = registered_name(kind, catalog, schema)
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and n_in != N_FEATURES:
        raise ValueError(f"{kind}: estimator has {n_in} features, the contract has {N_FEATURES}")
    if not hasattr(estimator, "predict_proba"):
        raise ValueError(f"{kind}: estimator has no predict_proba")
    fast = build_fast_model(estimator, N_FEATURES)
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ValueError(f"{kind}: estimator needs types the core does not trust: {refused}")
    meta = {
        "kind": kind,
        "feature_names": list(MODEL_FEATURES),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "features_sha256": FEATURES_SHA256,
        "threshold": float(threshold),
        "estimator": type(estimator).__name__,
        "fast_path": fast.kind,
    }
    if X_sample is None:
        X_sample = np.zeros((1, N_FEATURES), dtype=np.float32)
    X_sample = np.asarray(X_sample, dtype=np.float32)[:5]

    sample_df = pd.DataFrame(X_sample, columns=list(MODEL_FEATURES))
    signature = infer_signature(sample_df, np.asarray(estimator.predict_proba(X_sample))[:, 1])

    run = mlflow.active_run()
    started = run is None
    if run is None:
        run = mlflow.start_run(run_name=f"{kind}")
    try:
        if params:
            mlflow.log_params({f"{kind}.{k}": v for k, v in params.items()})
        if metrics:
            mlflow.log_metrics({f"{kind}.{k}": float(v) for k, v in metrics.items()})
        info = mlflow.sklearn.log_model(
            estimator,
            name=f"{kind}_model",
            serialization_format="skops",
            skops_trusted_types=sorted(untrusted) or None,
            signature=signature,
            registered_model_name=name,
            metadata=meta,
            pip_requirements=_pip_requirements(),
        )
        mlflow.log_dict(meta, f"{kind}_model_meta/{META_ARTIFACT}")
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        tags = {
            "pa.kind": kind,
            "pa.threshold": str(float(threshold)),
            "pa.feature_schema_version": str(FEATURE_SCHEMA_VERSION),
            "pa.features_sha256": FEATURES_SHA256,
            "pa.fast_path": fast.kind,
            "pa.run_id": run.info.run_id,
        }
        for k, v in tags.items():
            client.set_model_version_tag(name, version, k, v)
        if description:
            client.update_model_version(name, version, description=description)
        for alias in aliases:
            client.set_registered_model_alias(name, alias, version)
        return version
    finally:
        if started:
            mlflow.end_run()


def _pip_requirements() -> list[str]:
    # explicit, so MLflow does not load the model in a subprocess to infer them (slow)
    return [f"{pkg}=={metadata.version(pkg)}" for pkg in ("scikit-learn", "skops", "numpy", "scipy")]


# ------------------------------------------------------------------------------------------ scoring models
@dataclass
class ScoringModel:
    """One loaded model: identity, operating threshold and the fast scorer."""

    kind: str
    version: str  # registry version, or "heuristic"
    fast: FastModel
    threshold: float | None = None
    name: str | None = None
    alias: str | None = None

    @property
    def is_heuristic(self) -> bool:
        return self.version == HEURISTIC

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.fast.predict(X)


# Heuristic fallback: logistic weights per feature (transparent, documented, flagged "heuristic").
HEURISTIC_WEIGHTS: dict[str, tuple[float, dict[str, float]]] = {
    "risk": (
        -3.2,
        {
            "composite_risk_score": 4.0,
            "fraud_score": 2.0,
            "antifraud_result=fail": 1.5,
            "antifraud_result=review": 0.6,
            "three_ds_authenticated": -0.7,
            "is_cross_border": 0.3,
            "card_txn_count_600s": 0.25,
            "device_txn_count_3600s": 0.08,
            "is_night": 0.2,
        },
    ),
    "approval": (
        2.4,
        {
            "composite_risk_score": -3.0,
            "fraud_score": -1.0,
            "aml_risk_score": -0.5,
            "is_network_token": 0.35,
            "has_passkey": 0.25,
            "three_ds_authenticated": 0.3,
            "is_cross_border": -0.4,
            "is_retry": -0.3,
            "payment_solution=network_token": 0.45,
            "payment_solution=passkey": 0.4,
            "payment_solution=apple_pay": 0.3,
            "payment_solution=google_pay": 0.3,
            "payment_solution=3ds": 0.15,
            "previous_decline_code=EXPIRED_CARD": -2.5,
            "previous_decline_code=CVV_MISMATCH": -1.5,
            "previous_decline_code=FRAUD_SUSPECTED": -2.5,
            "previous_decline_code=3DS_AUTH_FAILED": -1.5,
            "amount_bucket=very_large": -0.6,
            "amount_bucket=large": -0.25,
        },
    ),
    "retry": (
        0.2,
        {
            "retry_count": -0.5,
            "composite_risk_score": -2.0,
            "previous_decline_code=ISSUER_UNAVAILABLE": 0.8,
            "previous_decline_code=INSUFFICIENT_FUNDS": -0.4,
            "previous_decline_code=LIMIT_EXCEEDED": -0.6,
            "payment_solution=network_token": 0.3,
        },
    ),
}
HEURISTIC_WEIGHTS["routing"] = HEURISTIC_WEIGHTS["approval"]


def heuristic_model(kind: str) -> ScoringModel:
    bias, weights = HEURISTIC_WEIGHTS[kind]
    w = np.zeros(N_FEATURES, dtype=np.float64)
    for fname, value in weights.items():
        w[FEATURE_INDEX[fname]] = value
    return ScoringModel(kind, HEURISTIC, LinearModel(w, np.zeros(N_FEATURES), bias), threshold=None)


@dataclass
class ModelBundle:
    """The champion (deciding) and challenger (logged only) model of each kind."""

    champions: dict[str, ScoringModel]
    challengers: dict[str, ScoringModel] = field(default_factory=dict)

    @classmethod
    def heuristic(cls) -> ModelBundle:
        return cls({kind: heuristic_model(kind) for kind in MODEL_KINDS})

    def versions(self) -> dict[str, str]:
        """``model_versions`` of a decision: champion version per kind (+ ``<kind>@challenger``)."""
        out = {kind: self.champions[kind].version for kind in MODEL_KINDS}
        for kind, model in sorted(self.challengers.items()):
            out[f"{kind}@{CHALLENGER}"] = model.version
        return out

    @property
    def all_heuristic(self) -> bool:
        return all(m.is_heuristic for m in self.champions.values())


class ModelLoadError(RuntimeError):
    pass


class ModelSource:
    """Resolves aliases in an MLflow registry and loads the models (skops, own allow-list)."""

    def __init__(
        self,
        tracking_uri: str | None,
        catalog: str | None = None,
        schema: str | None = None,
        registry_uri: str | None = None,
        cache_dir: str | Path | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.catalog, self.schema = catalog, schema
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._lock = threading.Lock()
        self._client: MlflowClient | None = None
        # "<kind>@<alias>" -> why the version the alias points to could not be loaded (class: message)
        self.errors: dict[str, str] = {}

    @classmethod
    def from_env(cls) -> ModelSource:
        return cls(
            os.environ.get("PA_MLFLOW_TRACKING_URI"),
            os.environ.get("PA_UC_CATALOG") or None,
            os.environ.get("PA_UC_SCHEMA") or None,
        )

    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient  # noqa: PLC0415 - seconds to import; only with a registry

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        return self._client

    def alias_versions(self) -> dict[tuple[str, str], str | None]:
        """(kind, alias) -> version or None. Cheap: registry lookups only, no artifacts."""
        out: dict[tuple[str, str], str | None] = {}
        if not self.tracking_uri:
            return {(k, a): None for k in MODEL_KINDS for a in ALIASES}
        with self._lock:
            client = self.client()
            for kind in MODEL_KINDS:
                name = registered_name(kind, self.catalog, self.schema)
                for alias in ALIASES:
                    try:
                        out[(kind, alias)] = str(client.get_model_version_by_alias(name, alias).version)
                    except Exception:  # missing model/alias (RestException), or registry empty
                        out[(kind, alias)] = None
        return out

    def load(self, kind: str, version: str, alias: str | None = None) -> ScoringModel:
        # MLflow and skops take seconds to import; only model loading needs them
        import skops.io  # noqa: PLC0415
        from mlflow.artifacts import download_artifacts  # noqa: PLC0415

        name = registered_name(kind, self.catalog, self.schema)
        with self._lock:
            client = self.client()
            mv = client.get_model_version(name, version)
            tags = dict(mv.tags or {})
            if tags.get("pa.features_sha256") != FEATURES_SHA256:
                raise ModelLoadError(
                    f"{name} v{version}: feature list differs from this core's MODEL_FEATURES "
                    f"(pa.features_sha256={tags.get('pa.features_sha256')!r})"
                )
            local = Path(
                download_artifacts(
                    artifact_uri=self._artifact_uri(client, name, version),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.registry_uri,
                    dst_path=str(self._dst(kind, version)) if self.cache_dir else None,
                )
            )
        mlmodel = yaml.safe_load((local / "MLmodel").read_text())
        flavor = mlmodel.get("flavors", {}).get("sklearn")
        if not flavor or flavor.get("serialization_format") != "skops":
            raise ModelLoadError(f"{name} v{version}: not an sklearn model saved with skops (refused)")
        estimator = skops.io.load(local / flavor["pickled_model"], trusted=list(TRUSTED_TYPES))
        fast = build_fast_model(estimator, N_FEATURES)
        if isinstance(fast, RawEstimator):
            log.warning("%s v%s: %s has no fast path; using predict_proba", name, version, type(estimator).__name__)
        threshold = float(tags["pa.threshold"]) if "pa.threshold" in tags else None
        return ScoringModel(kind, str(version), fast, threshold=threshold, name=name, alias=alias)

    def _artifact_uri(self, client: MlflowClient, name: str, version: str) -> str:
        """Where the model version's files are, resolved through THIS source's registry.

        MLflow resolves a ``models:/`` URI of an open-source registry through its process-wide
        registry URI (``mlflow.get_registry_uri()``), not the ``registry_uri`` given to
        ``download_artifacts``: in a process that never called ``mlflow.set_registry_uri`` (the
        scoring API, the backtest) it opens ``sqlite:///mlflow.db`` in the working directory (creating
        it) and fails with "Registered Model ... not found". So the download URI of the version
        (``file:``, ``mlflow-artifacts:``, ``s3:``...) is asked from our own client instead. Unity
        Catalog and Databricks registries resolve ``models:/`` with the registry URI they are given,
        and need their own repositories (credentials per request): those keep the ``models:/`` URI."""
        if str(self.registry_uri or "").startswith("databricks"):
            return f"models:/{name}/{version}"
        return client.get_model_version_download_uri(name, version)

    def _dst(self, kind: str, version: str) -> Path:
        assert self.cache_dir is not None
        path = self.cache_dir / kind / str(version)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def load_bundle(
        self, versions: dict[tuple[str, str], str | None] | None = None, previous: ModelBundle | None = None
    ) -> ModelBundle:
        """Load champions and challengers; reuses models of ``previous`` whose version did not change.
        A model that fails to load falls back to the previous one (or the heuristic) and is logged."""
        versions = self.alias_versions() if versions is None else versions
        champions: dict[str, ScoringModel] = {}
        challengers: dict[str, ScoringModel] = {}
        for kind in MODEL_KINDS:
            for alias, target in ((CHAMPION, champions), (CHALLENGER, challengers)):
                version = versions.get((kind, alias))
                prev = (
                    (previous.champions if alias == CHAMPION else previous.challengers).get(kind) if previous else None
                )
                slot = f"{kind}@{alias}"
                if version is None:
                    self.errors.pop(slot, None)
                    if alias == CHAMPION:
                        log.warning("no %s model registered as %s: the heuristic fallback decides", kind, CHAMPION)
                        target[kind] = heuristic_model(kind)
                    continue
                if prev is not None and prev.version == version:
                    target[kind] = prev
                    continue
                try:
                    target[kind] = self.load(kind, version, alias)
                    self.errors.pop(slot, None)
                except Exception as exc:  # keep deciding with what we had
                    self.errors[slot] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
                    if prev is not None:
                        log.error("could not load %s v%s, v%s keeps deciding: %s", slot, version, prev.version, exc)
                        target[kind] = prev
                    elif alias == CHAMPION:
                        log.error("could not load %s v%s, the heuristic fallback decides: %s", slot, version, exc)
                        target[kind] = heuristic_model(kind)
                    else:
                        log.error("could not load %s v%s: %s", slot, version, exc)
        return ModelBundle(champions, challengers)


def model_meta_json(model: ScoringModel) -> str:
    return json.dumps(
        {"kind": model.kind, "version": model.version, "threshold": model.threshold, "fast_path": model.fast.kind}
    )
