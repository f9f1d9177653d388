"""Dataset audit: counts, formats, resolutions, colours, duplicates and confounds.

A CNN learns whatever separates the classes. When every Tokyo file is a PNG and every
Pittsburgh file a JPEG (true of the published NetVLAD collections), or the two cities come at
different resolutions, the network can score well while looking at compression artefacts, not
at streets. The audit measures such properties and raises a *flag* (a dict with a sentence in
``message``) when one nearly determines the class.
"""

from __future__ import annotations

import hashlib
import operator
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from geocam_gui.core.data import dedupe, images
from geocam_gui.core.errors import ImageError

#: A property "nearly determines" the class when predicting the class from it alone is right
#: this often, and clearly better than always guessing the largest class.
CONFOUND_ACCURACY = 0.95
CONFOUND_MARGIN = 0.10
_THUMB = 32


_EXT_FORMAT = {"jpg": "JPEG", "jpeg": "JPEG", "jpe": "JPEG", "jfif": "JPEG", "tif": "TIFF", "tiff": "TIFF",
               "pgm": "PPM", "pnm": "PPM", "ppm": "PPM"}


def _ext(path: str) -> str:
    name = path[path.rfind("/") + 1:]
    dot = name.rfind(".")
    return name[dot + 1:].lower() if dot > 0 else "?"


_get_label = operator.attrgetter("label")
_get_path = operator.attrgetter("path")
_get_split = operator.attrgetter("split")
_label_group_split = operator.attrgetter("label", "group", "split")
_rpartition_dot = operator.methodcaller("rpartition", ".")
_get_ext = operator.itemgetter(2)


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _inspect_one(path: str) -> tuple[str, tuple | None, str | None]:
    try:
        fmt, w, h = images.probe(path)
        thumb = images.load_resized(path, _THUMB)
        mean = thumb.reshape(-1, 3).mean(axis=0)
        return path, (fmt, w, h, [round(float(v), 2) for v in mean], dedupe.phash(thumb)), None
    except ImageError as exc:
        return path, None, exc.reason


def inspect_files(found: list, verify: str, *, seed: int = 0, per_class: int = 200,
                  progress: Callable[[int, int], None] | None = None) -> tuple[dict, list[tuple[str, str]]]:
    """Decode ``verify`` = "all" files, a seeded "sample" of ``per_class`` per class, or "none".

    Returns ``({path: (format, width, height, mean_rgb, phash)}, [(path, reason), ...])``; the
    perceptual hash (:mod:`~geocam_gui.core.data.dedupe`) comes from the same 32 px thumbnail.
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


_HEAD = 16 << 10


def _hash_file(path: str, limit: int | None = None) -> tuple[str, str | None]:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            if limit is not None:
                h.update(fh.read(limit))
            else:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    except OSError:
        return path, None
    return path, h.hexdigest()


def _refine(groups: list[list], limit: int | None) -> list[list]:
    """Split each candidate group by the hash of its files' first ``limit`` bytes (None: all)."""
    todo = [f for g in groups for f in g]
    if not todo:
        return []
    by_path = {f.path: f for f in todo}
    digests: dict[str, str | None] = {}
    with ThreadPoolExecutor(_workers()) as pool:
        for path, digest in pool.map(lambda p: _hash_file(p, limit), list(by_path), chunksize=32):
            digests[path] = digest
    out = []
    for g in groups:
        buckets: dict[str, list] = defaultdict(list)
        for f in g:
            if digests.get(f.path) is not None:
                buckets[digests[f.path]].append(f)
        out.extend(b for b in buckets.values() if len(b) > 1)
    return out


def find_duplicates(found: list) -> list[list]:
    """Groups of files with identical content.

    Files are compared by size first (no reading), then by a hash of their first 16 KiB, and
    only files still alike are hashed whole: a collection of unique photos is mostly read for a
    few KiB per file of equal size, never in full.
    """
    by_size: dict[int, list] = defaultdict(list)
    for f in found:
        by_size[f.size].append(f)
    groups = [g for g in by_size.values() if len(g) > 1]
    small = [g for g in groups if g[0].size <= _HEAD]
    large = _refine([g for g in groups if g[0].size > _HEAD], _HEAD)
    return sorted((sorted(g, key=lambda f: f.path) for g in _refine(small + large, None)), key=lambda g: g[0].path)


def _predictability(table: Counter) -> tuple[float, float]:
    """Accuracy of guessing the class from a property's value, and of always guessing the
    largest class; ``table`` counts ``(value, label)`` pairs."""
    total = sum(table.values())
    if not total:
        return 0.0, 1.0
    best_per_value: dict[str, int] = {}
    per_label: Counter = Counter()
    for (value, label), n in table.items():
        best_per_value[value] = max(best_per_value.get(value, 0), n)
        per_label[label] += n
    return sum(best_per_value.values()) / total, max(per_label.values()) / total


def _share_sentence(table: Counter, classes: list[str], what: str) -> str:
    parts = []
    for c in classes:
        vals = Counter({v: n for (v, label), n in table.items() if label == c})
        if not vals:
            continue
        top, n = vals.most_common(1)[0]
        total = sum(vals.values())
        share = "every" if n == total else f"{100 * n / total:.0f}% of"
        verb = "is" if share == "every" else "are"
        noun = "file" if share == "every" else "files"
        parts.append(f"{share} {c} {noun} {verb} {what + ' ' if what else ''}{top}")
    return "; ".join(parts)


def _confound_flag(kind: str, table: Counter, classes: list[str], what: str, advice: str) -> dict | None:
    acc, base = _predictability(table)
    if len({v for v, _ in table}) < 2 or acc < CONFOUND_ACCURACY or acc - base < CONFOUND_MARGIN:
        return None
    sentence = (f"{_share_sentence(table, classes, what)}: the {kind} alone tells the classes apart "
                f"({100 * acc:.0f}% right, against {100 * base:.0f}% by always guessing the largest class), "
                f"so a CNN can learn it instead of the streets. {advice}")
    return {"kind": f"{kind}_confound", "severity": "warning", "property": kind,
            "accuracy": round(acc, 4), "baseline": round(base, 4), "checked_files": sum(table.values()),
            "message": sentence[0].upper() + sentence[1:]}


def _few_subfolders_flags(group_splits: dict, classes: list[str]) -> list[dict]:
    """Class folders with a few subfolders (2 .. MIN_SUBFOLDER_GROUPS - 1) are grouped by file:
    say so, since a subfolder often holds views (or crops) of one place that should stay together."""
    from geocam_gui.core.data.layouts import MIN_SUBFOLDER_GROUPS

    out = []
    for c in classes:
        groups = [g for label, g in group_splits if label == c]
        if not groups or not all("/" in g for g in groups):
            continue
        subfolders = {g.split("/", 1)[0] for g in groups}
        if 2 <= len(subfolders) < MIN_SUBFOLDER_GROUPS and len(groups) > len(subfolders):
            out.append({"kind": "few_subfolders", "severity": "info", "property": "group", "class": c,
                        "subfolders": len(subfolders), "groups": len(groups),
                        "message": f"{c} has {len(subfolders)} subfolders, fewer than the {MIN_SUBFOLDER_GROUPS} "
                                   f"needed to split by subfolder, so it was grouped by file ({len(groups)} groups, "
                                   "near-duplicate photos joined). If a subfolder holds views or heavy crops of one "
                                   "place, they can still sit in different splits: use at least "
                                   f"{MIN_SUBFOLDER_GROUPS} subfolders per class, or a manifest with a group column."})
    return out


def build_audit(found: list, classes: list[str], inspected: dict, bad: list[tuple[str, str]], *,
                detected: list | None = None, settings: dict | None = None, balance: dict | None = None,
                check_duplicates: bool = True, progress: Callable[[int, int], None] | None = None,
                near_duplicates: dict | None = None) -> dict:
    """The audit of split records ``found`` as a JSON-ready dict (see module docstring).

    ``inspected`` maps paths to ``(format, width, height, mean_rgb)`` for the files that were
    decoded (see :func:`inspect_files`); ``check_duplicates`` False skips reading file contents.
    ``near_duplicates``: the summary of the perceptual-hash grouping (``index_dataset`` fills in
    ``across_splits`` after splitting), or None when it did not run.
    """
    # Counting over every file (250k for the paper's set-up) runs in C: map/attrgetter/zip feed
    # Counter directly; the per-class numbers come from these few tables.
    labels = list(map(_get_label, found))
    raw_ext = Counter(zip(map(_get_ext, map(_rpartition_dot, map(_get_path, found))), labels))
    ext_table: Counter = Counter()  # (extension, label)
    for (ext, label), n in raw_ext.items():
        ext_table[(ext.lower() if "/" not in ext else "?", label)] += n
    split_table = Counter(zip(map(_get_split, found), labels))  # (split, label)
    size_sum: Counter = Counter()
    size_known: Counter = Counter()
    if any(f.size >= 0 for f in found[:1000]):  # sizes are -1 when the index did not stat files
        for f in found:
            if f.size >= 0:
                size_sum[f.label] += f.size
                size_known[f.label] += 1
    triples = set(map(_label_group_split, found))
    group_splits: dict[tuple[str, str], set] = defaultdict(set)
    for label, group, split in triples:
        group_splits[(label, group)].add(split)
    checked: dict[str, list] = defaultdict(list)
    if inspected:
        for f in found:
            r = inspected.get(f.path)
            if r is not None:
                checked[f.label].append(r)
    fmt_table: Counter = Counter()
    res_table: Counter = Counter()
    for (ext, label), n in ext_table.items():
        fmt_table[(_EXT_FORMAT.get(ext, ext.upper()), label)] += n
    if inspected:  # decoded files: their real format replaces the guess from the extension
        fmt_table = Counter()
        for label, rows in checked.items():
            for r in rows:
                fmt_table[(r[0], label)] += 1
                res_table[(f"{r[1]}x{r[2]}", label)] += 1
    groups_per_label = Counter(label for label, _ in group_splits)

    per_class: dict[str, dict] = {}
    for c in classes:
        rows = checked.get(c, [])
        count = sum(n for (_, label), n in split_table.items() if label == c)
        exts = Counter({e: n for (e, label), n in ext_table.items() if label == c})
        formats = Counter(r[0] for r in rows)
        res = Counter(f"{r[1]}x{r[2]}" for r in rows)
        means = np.array([r[3] for r in rows], dtype=np.float64) if rows else np.zeros((0, 3))
        per_class[c] = {
            "count": count,
            "groups": groups_per_label[c],
            "splits": {s: split_table[(s, c)] for s in ("train", "val", "test")},
            "extensions": dict(exts.most_common()),
            "formats": dict(formats.most_common()),
            "resolutions": dict(res.most_common(8)),
            "distinct_resolutions": len(res),
            "median_size": [int(np.median([r[1] for r in rows])), int(np.median([r[2] for r in rows]))] if rows else None,
            "mean_rgb": [round(float(v), 1) for v in means.mean(axis=0)] if len(means) else None,
            "bytes_mean": int(size_sum[c] / size_known[c]) if size_known[c] else None,
            "checked_files": len(rows),
        }

    flags: list[dict] = []
    flag = _confound_flag("format", fmt_table, classes, "a",
                          "Re-encode every image to one format and quality before training.")
    if flag:
        flags.append(flag)
    flag = _confound_flag("resolution", res_table, classes, "",
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

    if detected and all(d.get("layout") == "folders" for d in detected):
        flags.extend(_few_subfolders_flags(group_splits, classes))

    straddling = [f"{label}/{g}" for (label, g), s in group_splits.items() if len(s) > 1]
    if straddling:
        flags.append({"kind": "group_leak", "severity": "warning", "property": "group", "count": len(straddling),
                      "examples": sorted(straddling)[:10],
                      "message": f"{len(straddling)} group(s) have images in more than one split (as the manifest "
                                 "gave them): near-identical views leak between training and test."})

    dup_groups = find_duplicates(found) if check_duplicates else []
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
    near = dict(near_duplicates or {"checked": False})
    if near.get("across_splits"):
        flags.append({"kind": "near_duplicate_leak", "severity": "warning", "property": "perceptual hash",
                      "count": near["across_splits"],
                      "message": f"{near['across_splits']} set(s) of near-identical images (perceptual hash within "
                                 f"{near['threshold']} of 64 bits) have files in more than one split, as the "
                                 "manifest placed them: test accuracy is inflated by images seen in training."})
    if near.get("across_classes"):
        flags.append({"kind": "near_duplicate_label_conflict", "severity": "warning", "property": "perceptual hash",
                      "count": near["across_classes"],
                      "message": f"{near['across_classes']} pair(s) of near-identical images carry different class labels."})
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
            "checked": check_duplicates,
            "groups": len(dup_groups),
            "files": sum(len(g) for g in dup_groups),
            "across_splits": len(cross_split),
            "across_classes": len(cross_class),
            "examples": [[f.path for f in g] for g in dup_groups[:20]],
        },
        "near_duplicates": near,
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
    near = a.get("near_duplicates") or {}
    if near.get("checked"):
        lines.append(f"Near-duplicates (perceptual hash within {near.get('threshold')} of 64 bits): "
                     f"{near.get('files', 0)} files in {near.get('sets', 0)} sets; {near.get('groups_merged', 0)} "
                     "groups merged so that each set stays in one split.")
    elif near:
        lines.append("Near-duplicates not checked: " + near.get("reason", "not every file was decoded") + ".")
    for flag in a.get("flags", []):
        lines.append(f"{flag['severity'].upper()}: {flag['message']}")
    for path, reason in index.bad_files[:10]:
        lines.append(f"  skipped {path}: {reason}")
    if len(index.bad_files) > 10:
        lines.append(f"  ... and {len(index.bad_files) - 10} more skipped files (see audit.json)")
    return lines
