"""Classification metrics from a confusion matrix: accuracy, per-class precision and recall.

The confusion matrix is accumulated on the training device as integer counts (rows = true
class, columns = predicted class), so evaluation needs one host sync per split, and counts from
several DDP processes can simply be summed.
"""

from __future__ import annotations

import torch


def confusion_update(confusion: torch.Tensor, target: torch.Tensor, pred: torch.Tensor) -> None:
    """Add the (target, pred) pairs of one batch to ``confusion`` (K x K int64, in place)."""
    k = confusion.shape[0]
    flat = target.to(torch.int64) * k + pred.to(torch.int64)
    confusion += torch.bincount(flat, minlength=k * k).view(k, k).to(confusion.device)


def summarize(confusion, classes: list[str], *, loss_sum: float | None = None) -> dict:
    """Accuracy, per-class precision/recall/support, the confusion matrix and ``n``.

    A class never predicted has precision ``None`` (undefined), a class absent from the split
    has recall ``None``; they are not counted as zero.
    """
    cm = torch.as_tensor(confusion, dtype=torch.int64).cpu()
    n = int(cm.sum())
    correct = int(cm.diag().sum())
    per_class = {}
    for i, name in enumerate(classes):
        tp = int(cm[i, i])
        predicted = int(cm[:, i].sum())
        actual = int(cm[i, :].sum())
        per_class[name] = {
            "precision": tp / predicted if predicted else None,
            "recall": tp / actual if actual else None,
            "support": actual,
        }
    out = {
        "accuracy": correct / n if n else None,
        "n": n,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "classes": list(classes),
    }
    if loss_sum is not None:
        out["loss"] = loss_sum / n if n else None
    return out
