"""Is a model better than chance? An exact binomial test of its test accuracy.

A model that answers one class for everything scores the *majority-class rate* (50 % on a
balanced test split) and still produces heat maps; nothing in them says it learned nothing.
Wherever an explanation is shown or exported, GeoCAM therefore states whether the test accuracy
is significantly above that rate:

* null hypothesis: each test image is right with probability ``p0`` = the share of the most
  frequent class in the tested split (the accuracy of always answering that class);
* test: exact one-sided binomial test, ``p = P(X >= correct | n, p0)``; above chance when
  ``p < ALPHA`` (0.05);
* interval: the exact (Clopper-Pearson) two-sided 95 % interval of the accuracy.

The images of one split are treated as independent trials; views of one place are not quite
independent, so a borderline result deserves a larger test split rather than trust. Pure numpy
(log binomial coefficients by cumulative sums, a log-sum-exp tail, bisection for the interval);
the test suite checks it against ``scipy.stats.binomtest``.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 0.05
CONFIDENCE = 0.95


def _log_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = i) for i = 0..n, X ~ Binomial(n, p), with 0 < p < 1."""
    i = np.arange(1, n + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - i + 1) - np.log(i))))
    k = np.arange(n + 1, dtype=np.float64)
    return log_comb + k * math.log(p) + (n - k) * math.log1p(-p)


def _log_sum(values: np.ndarray) -> float:
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


def upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return min(1.0, math.exp(_log_sum(_log_pmf(n, p)[k:])))


def lower_tail(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return 1.0 - upper_tail(k + 1, n, p) if k < n else 1.0


def _bisect(f, target: float, increasing: bool) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact two-sided interval of a proportion with ``k`` successes in ``n`` trials."""
    if n <= 0:
        raise ValueError("the interval needs at least one trial")
    if not 0 <= k <= n:
        raise ValueError(f"successes must lie in 0..{n}, got {k}")
    half = (1 - confidence) / 2
    # lower: the p at which seeing k or more is just as unlikely as ``half`` (rises with p)
    lower = 0.0 if k == 0 else _bisect(lambda p: upper_tail(k, n, p), half, increasing=True)
    # upper: the p at which seeing k or fewer is ``half`` (falls with p)
    upper = 1.0 if k == n else _bisect(lambda p: lower_tail(k, n, p), half, increasing=False)
    return lower, upper


def chance_test(correct: int, n: int, majority_rate: float, *, majority_class: str | None = None,
                alpha: float = ALPHA) -> dict:
    """The test of ``correct`` right answers out of ``n`` against ``majority_rate`` (JSON-ready).

    Keys: ``accuracy``, ``n``, ``correct``, ``majority_rate``, ``majority_class``, ``p_value``
    (one-sided), ``ci95`` ([low, high]), ``above_chance`` (bool), ``test`` and ``message``
    (one sentence for people).
    """
    if n <= 0:
        raise ValueError("the test needs at least one image")
    if not 0 <= correct <= n:
        raise ValueError(f"correct answers must lie in 0..{n}, got {correct}")
    if not 0.0 < majority_rate <= 1.0:
        raise ValueError(f"the majority-class rate must lie in (0, 1], got {majority_rate}")
    p_value = upper_tail(correct, n, majority_rate)
    low, high = clopper_pearson(correct, n)
    above = p_value < alpha
    acc = correct / n
    who = f"always answering {majority_class!r}" if majority_class else "always answering the largest class"
    where = (f"test accuracy {100 * acc:.1f} % (95 % CI {100 * low:.1f}-{100 * high:.1f} %, n = {n})")
    if above:
        message = (f"Above chance: {where} is significantly higher than the {100 * majority_rate:.1f} % of {who} "
                   f"(one-sided exact binomial test, p = {p_value:.2g}).")
    else:
        message = (f"At chance: {where} is not significantly higher than the {100 * majority_rate:.1f} % of {who} "
                   f"(one-sided exact binomial test, p = {p_value:.2g}); its heat maps may show nothing it learned.")
    return {"accuracy": acc, "n": n, "correct": correct, "majority_rate": majority_rate,
            "majority_class": majority_class, "p_value": p_value, "ci95": [low, high], "alpha": alpha,
            "above_chance": above, "test": "exact one-sided binomial vs majority-class rate; Clopper-Pearson CI",
            "message": message}


def chance_from_metrics(metrics: dict | None) -> dict | None:
    """:func:`chance_test` of a metrics dict holding a ``confusion`` matrix (rows = true class)
    and optionally ``classes``; None when there is no usable matrix (nothing to judge)."""
    if not isinstance(metrics, dict):
        return None
    cm = metrics.get("confusion")
    try:
        arr = np.asarray(cm, dtype=np.int64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 2 or (arr < 0).any():
        return None
    n = int(arr.sum())
    if n <= 0:
        return None
    support = arr.sum(axis=1)
    top = int(support.argmax())
    classes = metrics.get("classes")
    name = str(classes[top]) if isinstance(classes, (list, tuple)) and len(classes) == arr.shape[0] else None
    return chance_test(int(np.trace(arr)), n, float(support[top]) / n, majority_class=name)


def chance_of_checkpoint(meta: dict | None) -> dict | None:
    """:func:`chance_from_metrics` of a checkpoint's stored test metrics (None when absent)."""
    metrics = ((meta or {}).get("metrics") or {}).get("test") if isinstance(meta, dict) else None
    if isinstance(metrics, dict) and "classes" not in metrics and isinstance(meta.get("classes"), list):
        metrics = {**metrics, "classes": meta["classes"]}
    verdict = chance_from_metrics(metrics)
    val = ((meta.get("metrics") or {}).get("val") or {}).get("accuracy") if verdict else None
    if isinstance(val, (int, float)) and 0 <= val <= 1 and val - verdict["accuracy"] >= 0.10:
        # A gap this wide is what a cue shared by training and validation, but not by test, leaves.
        verdict["val_accuracy"] = float(val)
        verdict["message"] += (f" Its validation accuracy was {100 * val:.1f} %: it learned a cue that the "
                               "validation images share with the training images and the test images do not "
                               "(in the demo data set: the sky, biased in training and validation, balanced "
                               "in test).")
    return verdict


def chance_of_file(path: str) -> dict | None:
    """:func:`chance_of_checkpoint` of the checkpoint at ``path`` (None when it has no test
    metrics or cannot be read)."""
    from geocam_gui.core.checkpoints import read_meta
    from geocam_gui.core.errors import GeoCamError

    try:
        return chance_of_checkpoint(read_meta(path))
    except (GeoCamError, OSError, ValueError):
        return None


def short_line(result: dict | None) -> str:
    """A caption-sized line: ``"above chance (p = 0.001)"`` or ``"AT CHANCE (p = 0.4)"``."""
    if not result:
        return "chance: not tested (no test metrics)"
    if result["above_chance"]:
        return f"above chance (p = {result['p_value']:.2g})"
    return f"AT CHANCE vs {100 * result['majority_rate']:.0f} % (p = {result['p_value']:.2g})"
