"""Dataset audit: counts, formats, resolutions, colours, duplicates and confounds.

A CNN learns whatever separates the classes. When every Tokyo file is a PNG and every
Pittsburgh file a JPEG (true of the published NetVLAD collections), or the two cities come at
different resolutions, the network can score well while looking at compression artefacts, not
at streets. The audit measures such properties and raises a *flag* (a dict with a sentence in
``message``) when one nearly determines the class.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from geocam_gui.core import images
from geocam_gui.core.errors import ImageError

#: A property "nearly determines" the class when predicting the class from it alone is right
#: this often, and clearly better than always guessing the largest class.
CONFOUND_ACCURACY = 0.95
CONFOUND_MARGIN = 0.10
_THUMB = 32


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _inspect_one(path: str) -> tuple[str, tuple | None, str | None]:
    try:
        fmt, w, h = images.probe(path)
        mean = images.load_resized(path, _THUMB).reshape(-1, 3).mean(axis=0)
        return path, (fmt, w, h, [round(float(v), 2) for v in mean]), None
    except ImageError as exc:
        return path, None, exc.reason


def inspect_files(found: list, verify: str, *, seed: int = 0, per_class: int = 200,
                  progress: Callable[[int, int], None] | None = None) -> tuple[dict, list[tuple[str, str]]]:
    """Decode ``verify`` = "all" files, a seeded "sample" of ``per_class`` per class, or "none".

    Returns ``({path: (format, width, height, mean_rgb)}, [(path, reason), ...])``.
    """
    if verify == "none":
        return {}, []
    if verify == "all":
        chosen = [f.path for f in found]
    else:
        by_class: dict[str, list[str]] = defaultdict(list)
        for f in found:
            by_class[f.label].append(f.path)
        rng = random.Random(f"{seed}/audit")
        chosen = []
        for label in sorted(by_class):
            paths = by_class[label]
            chosen.extend(paths if len(paths) <= per_class else sorted(rng.sample(paths, per_class)))
    info: dict = {}
    bad: list[tuple[str, str]] = []
    with ThreadPoolExecutor(_workers()) as pool:
        for i, (path, res, reason) in enumerate(pool.map(_inspect_one, chosen, chunksize=8)):
            if res is None:
                bad.append((path, reason or "cannot decode"))
            else:
                info[path] = res
            if progress and (i % 64 == 0 or i + 1 == len(chosen)):
                progress(i + 1, len(chosen))
    return info, bad


def _hash_file(path: str) -> tuple[str, str | None]:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return path, None
    return path, h.hexdigest()


def find_duplicates(found: list) -> list[list]:
    """Groups of files with identical content (same size first, then the same BLAKE2 hash)."""
    by_size: dict[int, list] = defaultdict(list)
    for f in found:
        by_size[f.size].append(f)
    candidates = [f for fs in by_size.values() if len(fs) > 1 for f in fs]
    if not candidates:
        return []
    by_path = {f.path: f for f in candidates}
    by_hash: dict[str, list] = defaultdict(list)
    with ThreadPoolExecutor(_workers()) as pool:
        for path, digest in pool.map(_hash_file, [f.path for f in candidates], chunksize=32):
            if digest is not None:
                by_hash[digest].append(by_path[path])
    return [sorted(fs, key=lambda f: f.path) for fs in by_hash.values() if len(fs) > 1]


def _predictability(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """Accuracy of guessing the class from the property's value, and of the majority guess."""
    if not pairs:
        return 0.0, 1.0
    by_value: dict[str, Counter] = defaultdict(Counter)
    for value, label in pairs:
        by_value[value][label] += 1
    right = sum(c.most_common(1)[0][1] for c in by_value.values())
    baseline = Counter(label for _, label in pairs).most_common(1)[0][1]
    return right / len(pairs), baseline / len(pairs)


def _share_sentence(pairs: list[tuple[str, str]], classes: list[str], what: str) -> str:
    parts = []
    for c in classes:
        vals = Counter(v for v, label in pairs if label == c)
        if not vals:
            continue
        top, n = vals.most_common(1)[0]
        total = sum(vals.values())
        share = "every" if n == total else f"{100 * n / total:.0f}% of"
        verb = "is" if share == "every" else "are"
        noun = "file" if share == "every" else "files"
        parts.append(f"{share} {c} {noun} {verb} {what + ' ' if what else ''}{top}")
    return "; ".join(parts)


def _confound_flag(kind: str, pairs: list[tuple[str, str]], classes: list[str], what: str, advice: str) -> dict | None:
    acc, base = _predictability(pairs)
    if len(set(v for v, _ in pairs)) < 2 or acc < CONFOUND_ACCURACY or acc - base < CONFOUND_MARGIN:
        return None
    sentence = (f"{_share_sentence(pairs, classes, what)}: the {kind} alone tells the classes apart "
                f"({100 * acc:.0f}% right, against {100 * base:.0f}% by always guessing the largest class), "
                f"so a CNN can learn it instead of the streets. {advice}")
    return {"kind": f"{kind}_confound", "severity": "warning", "property": kind,
            "accuracy": round(acc, 4), "baseline": round(base, 4), "checked_files": len(pairs),
            "message": sentence[0].upper() + sentence[1:]}


def build_audit(found: list, classes: list[str], inspected: dict, bad: list[tuple[str, str]], *,
                detected: list | None = None, settings: dict | None = None, balance: dict | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """The audit of split records ``found`` as a JSON-ready dict (see module docstring)."""
    per_class: dict[str, dict] = {}
    for c in classes:
        members = [f for f in found if f.label == c]
        exts = Counter(os.path.splitext(f.path)[1].lower().lstrip(".") or "?" for f in members)
        checked = [inspected[f.path] for f in members if f.path in inspected]
        formats = Counter(r[0] for r in checked)
        res = Counter(f"{r[1]}x{r[2]}" for r in checked)
        means = np.array([r[3] for r in checked], dtype=np.float64) if checked else np.zeros((0, 3))
        per_class[c] = {
            "count": len(members),
            "groups": len({f.group for f in members}),
            "splits": {s: sum(f.split == s for f in members) for s in ("train", "val", "test")},
            "extensions": dict(exts.most_common()),
            "formats": dict(formats.most_common()),
            "resolutions": dict(res.most_common(8)),
            "distinct_resolutions": len(res),
            "median_size": [int(np.median([r[1] for r in checked])), int(np.median([r[2] for r in checked]))] if checked else None,
            "mean_rgb": [round(float(v), 1) for v in means.mean(axis=0)] if len(means) else None,
            "bytes_mean": int(np.mean([f.size for f in members])) if members else 0,
            "checked_files": len(checked),
        }

    flags: list[dict] = []
    fmt_pairs = [(inspected[f.path][0] if f.path in inspected else os.path.splitext(f.path)[1].lower().lstrip(".")
                  .replace("jpeg", "jpg"), f.label) for f in found]
    fmt_pairs = [(("JPEG" if v in ("jpg", "jpe", "jfif") else v.upper()), label) for v, label in fmt_pairs]
    flag = _confound_flag("format", fmt_pairs, classes, "a",
                          "Re-encode every image to one format and quality before training.")
    if flag:
        flags.append(flag)
    res_pairs = [(f"{inspected[f.path][1]}x{inspected[f.path][2]}", f.label) for f in found if f.path in inspected]
    flag = _confound_flag("resolution", res_pairs, classes, "",
                          "Resize every image to one resolution (and aspect) before training.")
    if flag:
        flags.append(flag)
    means = {c: per_class[c]["mean_rgb"] for c in classes if per_class[c]["mean_rgb"]}
    if len(means) >= 2:
        bright = {c: sum(m) / 3 for c, m in means.items()}
        lo, hi = min(bright, key=bright.get), max(bright, key=bright.get)
        if bright[hi] - bright[lo] >= 25:
            flags.append({"kind": "colour_difference", "severity": "info", "property": "mean colour",
                          "difference": round(bright[hi] - bright[lo], 1),
                          "message": f"{hi} images are on average {bright[hi] - bright[lo]:.0f} grey levels brighter "
                                     f"than {lo} images; check the model does not classify by overall brightness."})

    counts = [per_class[c]["splits"]["train"] for c in classes]
    if (balance or {}).get("mode", "none") == "none" and min(counts) > 0 and max(counts) > 1.5 * min(counts):
        flags.append({"kind": "imbalance", "severity": "info", "property": "class counts",
                      "message": f"The training split is unbalanced ({', '.join(f'{c}: {n}' for c, n in zip(classes, counts))}); "
                                 "use --balance undersample or weighted as the paper does."})

    leaks = defaultdict(set)
    for f in found:
        leaks[(f.label, f.group)].add(f.split)
    straddling = [f"{label}/{g}" for (label, g), s in leaks.items() if len(s) > 1]
    if straddling:
        flags.append({"kind": "group_leak", "severity": "warning", "property": "group", "count": len(straddling),
                      "examples": sorted(straddling)[:10],
                      "message": f"{len(straddling)} group(s) have images in more than one split (as the manifest "
                                 "gave them): near-identical views leak between training and test."})

    dup_groups = find_duplicates(found)
    cross_split = [g for g in dup_groups if len({f.split for f in g}) > 1]
    cross_class = [g for g in dup_groups if len({f.label for f in g}) > 1]
    if cross_split:
        flags.append({"kind": "duplicate_leak", "severity": "warning", "property": "content",
                      "count": len(cross_split),
                      "message": f"{len(cross_split)} identical file(s) appear in more than one split: "
                                 "test accuracy is inflated by images seen in training."})
    if cross_class:
        flags.append({"kind": "duplicate_label_conflict", "severity": "warning", "property": "content",
                      "count": len(cross_class),
                      "message": f"{len(cross_class)} identical file(s) carry different class labels."})
    if bad:
        reasons = Counter(r for _, r in bad)
        flags.append({"kind": "bad_files", "severity": "info", "property": "decoding", "count": len(bad),
                      "message": f"{len(bad)} file(s) were skipped: "
                                 + ", ".join(f"{n} {r}" for r, n in reasons.most_common(4)) + "."})

    return {
        "detected": detected or [],
        "settings": settings or {},
        "balance": balance or {"mode": "none"},
        "per_class": per_class,
        "duplicates": {
            "groups": len(dup_groups),
            "files": sum(len(g) for g in dup_groups),
            "across_splits": len(cross_split),
            "across_classes": len(cross_class),
            "examples": [[f.path for f in g] for g in dup_groups[:20]],
        },
        "bad_reasons": dict(Counter(r for _, r in bad).most_common()),
        "flags": flags,
    }


def summary_lines(index) -> list[str]:
    """Human lines for ``geocam index`` and the GUI: detection, counts, flags, bad files."""
    a = index.audit
    lines = [d["description"] for d in a.get("detected", [])]
    counts = index.counts()
    lines.append(f"{len(index.samples)} images, {len(index.classes)} classes: " + ", ".join(index.classes))
    for s in ("train", "val", "test"):
        lines.append(f"  {s:5s} " + "  ".join(f"{c}: {counts[s].get(c, 0)}" for c in index.classes))
    for c, pc in a.get("per_class", {}).items():
        fmts = ", ".join(f"{k} {v}" for k, v in (pc.get("formats") or pc.get("extensions") or {}).items())
        res = ", ".join(list(pc.get("resolutions", {}))[:3])
        lines.append(f"  {c}: {pc['groups']} groups; formats {fmts or '?'}; sizes {res or '?'}; "
                     f"mean RGB {pc.get('mean_rgb')}")
    dup = a.get("duplicates", {})
    if dup.get("groups"):
        lines.append(f"{dup['groups']} sets of identical files ({dup['across_splits']} across splits).")
    for flag in a.get("flags", []):
        lines.append(f"{flag['severity'].upper()}: {flag['message']}")
    for path, reason in index.bad_files[:10]:
        lines.append(f"  skipped {path}: {reason}")
    if len(index.bad_files) > 10:
        lines.append(f"  ... and {len(index.bad_files) - 10} more skipped files (see audit.json)")
    return lines
