"""Fast, deterministic scoring of scikit-learn binary classifiers without the pyfunc wrapper.

A ``FastModel`` turns a fitted estimator into plain numpy arrays once, at load time:

* linear: ``LogisticRegression`` (optionally after ``StandardScaler`` steps in a ``Pipeline``) ->
  one weight vector, a centre and an intercept;
* trees: ``DecisionTreeClassifier``, ``RandomForestClassifier``, ``ExtraTreesClassifier``,
  ``GradientBoostingClassifier`` (binary, log-loss) and ``HistGradientBoostingClassifier``
  (numeric features) -> packed node arrays walked level by level for all trees at once;
* anything else: the raw estimator's ``predict_proba`` (slower, no factors).

``predict(X)`` takes a float32 matrix ``(n, n_features)`` and returns the positive-class
probability ``(n,)`` and per-feature contributions ``(n, n_features)`` (linear terms, or Saabas path
contributions for trees). The same code serves one row (``X[None, :]``) and a batch, so the scoring
API, the stream processor and the backtest get bit-identical numbers; the logistic function uses
``math.exp`` element by element for the same reason (numpy's SIMD ``exp`` may differ by an ulp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def sigmoid_one(v: float) -> float:
    """The logistic function of one logit, without overflow for large negative logits."""
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.fromiter((sigmoid_one(v) for v in z.tolist()), dtype=np.float64, count=len(z))


class FastModel:
    kind: str = "generic"
    supports_factors: bool = False

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError


@dataclass
class LinearModel(FastModel):
    """logit = sum((x - centre) * weights) + intercept."""

    weights: np.ndarray  # float64 (F,)
    centre: np.ndarray  # float64 (F,)
    intercept: float
    kind: str = "linear"
    supports_factors: bool = True

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        contrib = (X.astype(np.float64) - self.centre) * self.weights
        logit = contrib.sum(axis=1) + self.intercept
        return sigmoid(logit), contrib


class TreeEnsemble(FastModel):
    """Trees packed into (T, M) arrays; ``mode`` "mean" (forests: mean leaf probability) or
    "logit" (boosting: base + sum of leaf values, then the logistic function)."""

    kind = "trees"
    supports_factors = True

    def __init__(
        self,
        trees: list[dict[str, np.ndarray]],
        mode: str,
        base: float,
        n_features: int,
        pre_steps: list[tuple[np.ndarray | None, np.ndarray | None]] | None = None,
    ):
        T = len(trees)
        M = max(len(t["left"]) for t in trees)
        self.left = np.zeros((T, M), dtype=np.intp)
        self.right = np.zeros((T, M), dtype=np.intp)
        self.feature = np.zeros((T, M), dtype=np.intp)
        self.threshold = np.zeros((T, M), dtype=np.float64)
        self.value = np.zeros((T, M), dtype=np.float64)
        self.is_leaf = np.ones((T, M), dtype=bool)
        depth = 0
        for t, tree in enumerate(trees):
            m = len(tree["left"])
            leaf = tree["is_leaf"]
            idx = np.arange(m)
            self.left[t, :m] = np.where(leaf, idx, tree["left"])
            self.right[t, :m] = np.where(leaf, idx, tree["right"])
            self.feature[t, :m] = np.where(leaf, 0, tree["feature"])
            self.threshold[t, :m] = tree["threshold"]
            self.value[t, :m] = tree["value"]
            self.is_leaf[t, :m] = leaf
            depth = max(depth, _tree_depth(tree["left"], tree["right"], leaf))
        self.depth = depth
        self.mode = mode
        self.base = float(base)
        self.n_trees = T
        self.n_features = n_features
        # StandardScaler steps before the trees, applied as scikit-learn does on float32 input
        # (float32 arithmetic) so splits match exactly
        self.pre_steps = pre_steps or []
        self._tidx = np.arange(T)[None, :]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for mean, scale in self.pre_steps:
            if mean is not None:
                X = X - mean
            if scale is not None:
                X = X / scale
        X = X.astype(np.float64)
        n = X.shape[0]
        tidx = self._tidx
        node = np.zeros((n, self.n_trees), dtype=np.intp)
        contrib = np.zeros((n, self.n_features), dtype=np.float64)
        rows = np.repeat(np.arange(n), self.n_trees)
        for _ in range(self.depth):
            feat = self.feature[tidx, node]
            xv = np.take_along_axis(X, feat, axis=1)
            nxt = np.where(xv <= self.threshold[tidx, node], self.left[tidx, node], self.right[tidx, node])
            delta = self.value[tidx, nxt] - self.value[tidx, node]
            np.add.at(contrib, (rows, feat.ravel()), delta.ravel())
            node = nxt
        leaf_values = self.value[tidx, node]
        total = leaf_values.sum(axis=1)
        if self.mode == "mean":
            return total / self.n_trees, contrib / self.n_trees
        return sigmoid(total + self.base), contrib


def _tree_depth(left: np.ndarray, right: np.ndarray, leaf: np.ndarray) -> int:
    depth, frontier = 0, [0]
    while frontier:
        nxt = []
        for i in frontier:
            if not leaf[i]:
                nxt += [int(left[i]), int(right[i])]
        if nxt:
            depth += 1
        frontier = nxt
    return depth


class RawEstimator(FastModel):
    """Fallback: the estimator's own ``predict_proba`` (no model factors)."""

    kind = "raw"

    def __init__(self, estimator: Any, positive_index: int):
        self.estimator = estimator
        self.positive_index = positive_index

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, None]:
        import sklearn  # noqa: PLC0415 - scikit-learn (seconds to import) loads only with a trained model

        with sklearn.config_context(assume_finite=True):
            proba = self.estimator.predict_proba(X)[:, self.positive_index]
        return np.asarray(proba, dtype=np.float64), None


# --------------------------------------------------------------------------------------- builders
def _positive_index(est: Any) -> int:
    classes = list(getattr(est, "classes_", [0, 1]))
    if len(classes) != 2:
        raise ValueError(f"binary classifier expected, classes={classes}")
    return 1


def _sk_tree(tree: Any, classifier: bool) -> dict[str, np.ndarray]:
    t = tree.tree_
    leaf = t.children_left == -1
    if classifier:
        v = t.value[:, 0, :]
        v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300)
        value = v[:, 1]
    else:
        value = t.value[:, 0, 0]
    return {
        "left": t.children_left,
        "right": t.children_right,
        "feature": t.feature,
        "threshold": t.threshold,
        "value": value,
        "is_leaf": leaf,
    }


def build_fast_model(estimator: Any, n_features: int) -> FastModel:
    """The fastest exact scorer for ``estimator`` (see module docstring)."""
    # scikit-learn (seconds to import) loads only once a trained model is: the engine without models,
    # the control plane and the simulator never pay for it
    from sklearn.ensemble import (  # noqa: PLC0415
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415
    from sklearn.tree import DecisionTreeClassifier  # noqa: PLC0415

    final = estimator
    centre = np.zeros(n_features)
    scale = np.ones(n_features)
    steps: list[tuple[np.ndarray | None, np.ndarray | None]] = []
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps[:-1]:
            if step in (None, "passthrough"):
                continue
            if not isinstance(step, StandardScaler):
                return RawEstimator(estimator, _positive_index(estimator))
            mean = step.mean_ if step.with_mean and step.mean_ is not None else np.zeros(n_features)
            sc = step.scale_ if step.with_std and step.scale_ is not None else np.ones(n_features)
            steps.append(
                (
                    step.mean_.astype(np.float32) if step.with_mean else None,
                    step.scale_.astype(np.float32) if step.with_std else None,
                )
            )
            # compose: (((x - c) / s) - m) / sc == (x - (c + m*s)) / (s*sc)
            centre = centre + mean * scale
            scale = scale * sc
        final = estimator.steps[-1][1]
    try:
        _positive_index(final)
    except ValueError:
        return RawEstimator(estimator, 1)
    pre = (steps,)

    if isinstance(final, LogisticRegression) and final.coef_.shape[0] == 1:
        w = final.coef_[0].astype(np.float64) / scale
        return LinearModel(weights=w, centre=centre.astype(np.float64), intercept=float(final.intercept_[0]))
    if isinstance(final, DecisionTreeClassifier):
        return TreeEnsemble([_sk_tree(final, True)], "mean", 0.0, n_features, *pre)
    if isinstance(final, RandomForestClassifier | ExtraTreesClassifier):
        return TreeEnsemble([_sk_tree(t, True) for t in final.estimators_], "mean", 0.0, n_features, *pre)
    if (
        isinstance(final, GradientBoostingClassifier)
        and final.estimators_.shape[1] == 1
        and getattr(final, "init", None) in (None, "zero")
        and final.loss == "log_loss"
    ):
        # scikit-learn exposes the fitted initial estimate and trees only under private names
        init = final._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))  # noqa: SLF001
        base = float(np.ravel(init)[0])
        trees = []
        for reg in final.estimators_[:, 0]:
            t = _sk_tree(reg, False)
            t["value"] = t["value"] * final.learning_rate
            trees.append(t)
        return TreeEnsemble(trees, "logit", base, n_features, *pre)
    if isinstance(final, HistGradientBoostingClassifier) and final.n_trees_per_iteration_ == 1:
        trees = []
        for (pred,) in final._predictors:  # noqa: SLF001 - the fitted trees (no public accessor)
            nodes = pred.nodes
            if nodes["is_categorical"].any():
                return RawEstimator(estimator, 1)
            leaf = nodes["is_leaf"].astype(bool)
            # leaves carry shrunk values, inner nodes raw ones: shrink those too, so that path
            # contributions (child - parent) are on one scale
            value = np.where(leaf, nodes["value"], nodes["value"] * final.learning_rate).astype(np.float64)
            trees.append(
                {
                    "left": nodes["left"].astype(np.intp),
                    "right": nodes["right"].astype(np.intp),
                    "feature": nodes["feature_idx"].astype(np.intp),
                    "threshold": nodes["num_threshold"].astype(np.float64),
                    "value": value,
                    "is_leaf": leaf,
                }
            )
        base = float(np.ravel(final._baseline_prediction)[0])  # noqa: SLF001 - no public accessor
        return TreeEnsemble(trees, "logit", base, n_features, *pre)
    return RawEstimator(estimator, 1)
