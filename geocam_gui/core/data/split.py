"""Splitting an index by group (a place never straddles two splits) and balancing its classes."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from geocam_gui.core.errors import BadArgument, DataError
from geocam_gui.core.data.layouts import Found

SPLITS = ("train", "val", "test")



def parse_split(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"6:2:2"`` (or ``(6, 2, 2)``) -> ratios; raises BadArgument when not three sane numbers."""
    if isinstance(text, str):
        parts = text.replace("/", ":").replace(",", ":").split(":")
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise BadArgument(f"--split must look like 6:2:2 (train:val:test), not {text!r}.") from None
    else:
        values = tuple(float(v) for v in text)
    if len(values) != 3 or any(v < 0 or v != v for v in values) or values[0] <= 0:
        raise BadArgument(f"The split needs three non-negative numbers with a positive training part, not {text!r}.")
    return values  # type: ignore[return-value]


def grouped_split(found: list[Found], ratios: Sequence[float], seed: int) -> None:
    """Set ``split`` on every record whose split is None: stratified by class, grouped.

    Within a class, groups are shuffled (seeded by ``seed`` and the class name), placed largest
    first, each into the split furthest below its target image count; every split with a
    positive ratio gets at least one group. Counts end within one group of the ratios.
    """
    total = float(sum(ratios))
    active = [i for i, r in enumerate(ratios) if r > 0]
    by_class: dict[str, dict[str, list[Found]]] = defaultdict(lambda: defaultdict(list))
    for f in found:
        if f.split is None:
            by_class[f.label][f.group].append(f)
    for label in sorted(by_class):
        groups = by_class[label]
        n_images = sum(len(m) for m in groups.values())
        if len(groups) < len(active):
            raise DataError(
                f"Class {label!r} has {len(groups)} group(s) ({n_images} images); a "
                f"{':'.join(f'{r:g}' for r in ratios)} split needs at least {len(active)} groups "
                f"(a group is a panorama, place, photo or set of near-duplicate photos and never straddles two splits)."
            )
        rng = random.Random(f"{seed}/{label}")
        names = sorted(groups)
        rng.shuffle(names)
        names.sort(key=lambda g: -len(groups[g]))  # stable: ties stay shuffled
        targets = [n_images * r / total for r in ratios]
        counts = [0, 0, 0]
        placed: list[list[str]] = [[], [], []]
        for g in names:
            best = max(active, key=lambda i: (targets[i] - counts[i], -i))
            counts[best] += len(groups[g])
            placed[best].append(g)
        for i in active:  # every active split needs a group
            if not placed[i]:
                donor = max((j for j in active if len(placed[j]) > 1), key=lambda j: counts[j] - targets[j])
                g = min(placed[donor], key=lambda name: len(groups[name]))
                placed[donor].remove(g)
                counts[donor] -= len(groups[g])
                placed[i].append(g)
                counts[i] += len(groups[g])
        for i, names_i in enumerate(placed):
            for g in names_i:
                for f in groups[g]:
                    f.split = SPLITS[i]


def balance(found: list[Found], mode: str, seed: int) -> dict:
    """Undersample the training split to the smallest class, or store sampler weights."""
    train = [f for f in found if f.split == "train"]
    per = Counter(f.label for f in train)
    info: dict = {"mode": mode, "train_counts_before": dict(sorted(per.items()))}
    if mode == "none" or not per:
        return info
    if mode == "weighted":
        k = len(per)
        n = len(train)
        for f in train:
            f.extra["weight"] = n / (k * per[f.label])
        info["weights"] = {c: n / (k * per[c]) for c in sorted(per)}
        return info
    smallest = min(per.values())
    rng = random.Random(f"{seed}/undersample")
    drop: set[int] = set()
    for label in sorted(per):
        members = [id(f) for f in train if f.label == label]
        if len(members) > smallest:
            drop.update(rng.sample(members, len(members) - smallest))
    info["dropped"] = {c: per[c] - smallest for c in sorted(per)}
    found[:] = [f for f in found if id(f) not in drop]
    return info
