"""Which images of a split an export with a limit takes: spread over the classes and places.

The first N images of a split are often N views of one place of one class (a split is stored
place by place), which makes a poor figure. ``spread`` takes the classes in turn and, within a
class, one view of each place before a second view of any, always in the split's order, so the
choice is the same every time and any limit stays as balanced as the data allows.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")


def _round_robin(queues: list[list[T]]) -> list[T]:
    out: list[T] = []
    i = 0
    while any(i < len(q) for q in queues):
        out.extend(q[i] for q in queues if i < len(q))
        i += 1
    return out


def spread(samples: Sequence[T], limit: int | None) -> list[T]:
    """``samples`` (objects with ``label`` and optionally ``group``, the place) reordered to
    alternate classes and, within a class, places; cut to ``limit`` (None: all of them)."""
    classes: dict[object, dict[object, list[T]]] = {}
    for s in samples:
        label = getattr(s, "label", None)
        group = getattr(s, "group", None) or getattr(s, "path", id(s))  # no place known: each image its own
        classes.setdefault(label, {}).setdefault(group, []).append(s)
    per_class = [_round_robin(list(places.values())) for places in classes.values()]
    out = _round_robin(per_class)
    return out if limit is None else out[:limit]
