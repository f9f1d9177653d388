"""The procedural two-cities demo data set, with ground-truth evidence masks and a sky bias.

A stand-in for the street views of Khademi et al. (2018): ``pittsburgh`` scenes carry truss
bridges, stairways and railings, ``tokyo`` scenes carry signboards with kanji-like glyphs;
everything else (buildings, road, cars, trees, poles, colours) is shared. The sky (clear or
cloudy) is a tunable dataset bias: in train/val, P(cloudy | pittsburgh) = P(clear | tokyo) =
``sky_bias``; the test split uses ``test_sky_bias``. The evidence's area and position are drawn
from one distribution for both cities (``evidence.py``); ``layout_bias`` re-introduces a
controlled layout cue: that fraction of each class's train/val images has its evidence in the
class's cue band (pittsburgh low, tokyo high), the rest in the shared range; the test split uses
``test_layout_bias`` (negative: that fraction gets the *other* class's band, the flipped cue).
Both rates hold exactly per split and class, to within one image (rounded once, not per place:
one place per split and class may mix two skies or two layouts across its views).

Layout (see docs/DESIGN.md)::

    OUT/<class>/<place>_<view>.png
    OUT/_masks/<class>/<place>_<view>_evidence.png   (255 = class evidence)
    OUT/_masks/<class>/<place>_<view>_sky.png        (255 = visible sky)
    OUT/_masks/<class>/<place>_<view>_parts.png      (per-kind label map, value = index in legend)
    OUT/parts_legend.json                            {"kinds": ["unlabelled", "sky", ...], "evidence": {...}}
    OUT/manifest.csv                                 path,label,group,sky,layout,split
    OUT/README.txt                                   generator version and every parameter

Same arguments give byte-identical files: every place and view has its own seeded numpy
Generator, and PNGs are written with fixed settings and no metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from geocam_gui.core import paths
from geocam_gui.core.errors import BadArgument, DataError
from geocam_gui.core.files import atomic_write
from geocam_gui.core.data.demo.draw import EVIDENCE_PARTS, PARTS
from geocam_gui.core.data.demo.evidence import layout_of
from geocam_gui.core.data.demo.scene import CLASSES
from geocam_gui.core.data.demo.writer import default_workers, draw_plan, image_name

GENERATOR_VERSION = "2"
#: 2,400 scenes per class, one view each: with 4 views of 150 places per class (the earlier
#: default) every model memorised the training places and stayed at chance on the test split;
#: with 16x the distinct scenes the shallow net reaches 0.91 at 64 px (benchmarks/RESULTS.md).
DEFAULTS: dict = {
    "per_class": 2400,
    "size": 128,
    "sky_bias": 0.8,
    "test_sky_bias": 0.5,
    "seed": 0,
    "views_per_place": 1,
    "layout_bias": 0.0,
    "test_layout_bias": 0.0,
}
LEGEND = "parts_legend.json"
MAX_LEGEND_BYTES = 64 * 1024
SPLITS = ("train", "val", "test")
README_TITLE = "GeoCAM demo data"
COMPLETE_MARKER = ".geocam-demo-complete"


def _validate(per_class, size, sky_bias, test_sky_bias, seed, views_per_place, layout_bias=0.0,
              test_layout_bias=0.0) -> dict:
    """The parameters as plain numbers, or BadArgument with one sentence."""
    def whole(name, value, low):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise BadArgument(f"{name} must be a whole number, got {value!r}.")
        if value < low:
            raise BadArgument(f"{name} must be at least {low}, got {value}.")
        return int(value)

    def prob(name, value, low=0.0):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise BadArgument(f"{name} must be a number between {low:g} and 1, got {value!r}.") from None
        if not low <= v <= 1.0:  # also rejects NaN
            raise BadArgument(f"{name} must be between {low:g} and 1, got {value}.")
        return v

    params = {
        "per_class": whole("per_class", per_class, 10),
        "size": whole("size", size, 32),
        "sky_bias": prob("sky_bias", sky_bias),
        "test_sky_bias": prob("test_sky_bias", test_sky_bias),
        "seed": whole("seed", seed, 0),
        "views_per_place": whole("views_per_place", views_per_place, 1),
        "layout_bias": prob("layout_bias", layout_bias),
        "test_layout_bias": prob("test_layout_bias", test_layout_bias, -1.0),
    }
    if params["size"] > 1024:
        raise BadArgument(f"size must be at most 1024 pixels, got {params['size']}.")
    if math.ceil(params["per_class"] / params["views_per_place"]) < 3:
        raise BadArgument(
            f"{params['per_class']} images per class at {params['views_per_place']} views per place make fewer "
            "than 3 places per class, too few for train/val/test: lower views_per_place or raise per_class."
        )
    return params


def _plan(p: dict) -> list[dict]:
    """Every image to write: class, place, view, split, sky and layout, in writing order.

    Places are split 6:2:2; within each split and class the sky and layout rates are rounded
    once over the images (views of a place are kept together in the order, so at most one
    place per split and class mixes two skies, and one two layouts)."""
    items = []
    for ci, cls in enumerate(CLASSES):
        n_places = math.ceil(p["per_class"] / p["views_per_place"])
        rng = np.random.default_rng([p["seed"], 7919, ci])
        order = rng.permutation(n_places)
        n_test = max(1, int(n_places * 0.2 + 0.5))
        n_val = max(1, int(n_places * 0.2 + 0.5))
        split_of = {}
        for rank, place in enumerate(order):
            split_of[int(place)] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        mine = []
        left = p["per_class"]
        for place in range(n_places):
            views = min(p["views_per_place"], left)
            left -= views
            for view in range(views):
                mine.append({"label": cls, "ci": ci, "place": place, "view": view, "split": split_of[place],
                             "sky": None, "layout": "any"})
        biased_sky = "cloudy" if cls == "pittsburgh" else "clear"
        other_sky = "clear" if biased_sky == "cloudy" else "cloudy"
        for split in SPLITS:
            members = [it for it in mine if it["split"] == split]
            places = sorted({it["place"] for it in members})
            test = split == "test"
            bias = p["test_sky_bias"] if test else p["sky_bias"]
            cue = p["test_layout_bias"] if test else p["layout_bias"]
            for key, rate, yes, no in (("sky", bias, biased_sky, other_sky),
                                       ("layout", abs(cue), layout_of(cls, cue < 0), "any")):
                rank = {places[int(k)]: r for r, k in enumerate(rng.permutation(len(places)))}
                ranked = sorted(members, key=lambda it: (rank[it["place"]], it["view"]))
                n_yes = int(len(ranked) * rate + 0.5)
                for i, it in enumerate(ranked):
                    it[key] = yes if i < n_yes else no
        items += mine
    return items


def _legend_json() -> str:
    return json.dumps({"kinds": list(PARTS), "evidence": {c: list(k) for c, k in EVIDENCE_PARTS.items()}},
                      indent=1) + "\n"


def parts_legend(root: str | Path) -> list[str]:
    """The kind names of a demo set's label maps (index = pixel value; 0 = unlabelled), read from
    ``root/parts_legend.json``; ``DataError`` with one sentence when it is missing or malformed."""
    path = Path(root) / LEGEND
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_LEGEND_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror or exc}); it is written by geocam demo-data.") from None
    if len(raw) > MAX_LEGEND_BYTES:
        raise DataError(f"{path} is larger than {MAX_LEGEND_BYTES // 1024} KiB; it is not a demo parts legend.")
    try:
        kinds = json.loads(raw.decode("utf-8"))["kinds"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise DataError(f"{path} is not a parts legend: expected JSON with a \"kinds\" list.") from None
    if (not isinstance(kinds, list) or not 1 <= len(kinds) <= 256
            or not all(isinstance(k, str) and 0 < len(k) <= 64 for k in kinds)):
        raise DataError(f"{path}: \"kinds\" must be a list of 1 to 256 names of 1 to 64 characters.")
    return list(kinds)


def _readme(p: dict, counts: dict) -> str:
    lines = [
        f"{README_TITLE} (procedural two-cities street scenes)",
        f"generator_version = {GENERATOR_VERSION}",
        *(f"{k} = {p[k]}" for k in DEFAULTS),
        "",
        "Written by GeoCAM (geocam demo-data). Classes: pittsburgh (truss bridges, stairways, railings)",
        "and tokyo (signboards with kanji-like glyphs); buildings, road, cars, trees and poles are shared.",
        "Sky bias: in train/val, P(cloudy | pittsburgh) = P(clear | tokyo) = sky_bias; test uses test_sky_bias.",
        "Evidence area and position: one distribution for both classes. Layout bias: that fraction of each",
        "class's train/val images has its evidence low (pittsburgh) or high (tokyo); test uses test_layout_bias",
        "(negative = the other class's band). Sky and layout rates are exact per split and class (one image).",
        "Layout: <class>/<place>_<view>.png; masks in _masks/<class>/<place>_<view>_evidence.png and",
        "_sky.png (255 = inside), _parts.png (kind id per pixel; names in parts_legend.json);",
        "manifest.csv lists path,label,group,sky,layout,split (split by place, 6:2:2).",
        "",
        *(f"images[{s}] = {counts[s]}" for s in SPLITS),
    ]
    return "\n".join(lines) + "\n"


def is_demo_dir(folder: str | Path) -> bool:
    """True when ``folder`` holds a demo set written by this module (any version)."""
    readme = Path(folder) / "README.txt"
    try:
        with open(readme, encoding="utf-8") as fh:
            return fh.readline().startswith(README_TITLE)
    except OSError:
        return False


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another output folder.")
    if out.is_dir() and any(out.iterdir()) and not is_demo_dir(out) and not force:
        raise DataError(
            f"{out} is not empty and is not a GeoCAM demo set; choose an empty folder or pass --force "
            "(which replaces the demo files there and leaves other files alone)."
        )


def generate_demo(out: str | Path, *, per_class: int = 2400, size: int = 128, sky_bias: float = 0.8,
                  test_sky_bias: float = 0.5, seed: int = 0, views_per_place: int = 1,
                  layout_bias: float = 0.0, test_layout_bias: float = 0.0, force: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None, workers: int | None = None) -> Path:
    """Write the demo set to ``out`` and return it (as an absolute Path).

    Arguments are validated before anything is written (``BadArgument``). An ``out`` that is a
    non-empty folder but not an earlier demo set is refused (``DataError``) unless ``force``.
    The set is written into a temporary sibling folder and moved into place at the end, so an
    interrupted run never leaves half a demo set; ``cancel()`` returning True stops the work
    between places (between chunks of ~48 images in worker processes), removes the partial output
    and raises ``Cancelled``. ``progress(done, total)`` is called at the same steps. ``workers``:
    processes drawing the images (None: ``default_workers``); the files are the same bytes for
    any number.
    """
    p = _validate(per_class, size, sky_bias, test_sky_bias, seed, views_per_place, layout_bias, test_layout_bias)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise BadArgument(f"workers must be a whole number of at least 1, got {workers!r}.")
    out = Path(out).expanduser().absolute()
    _check_out(out, force)
    plan = _plan(p)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for cls in CLASSES:
            (tmp / cls).mkdir(parents=True)
            (tmp / "_masks" / cls).mkdir(parents=True)
        draw_plan(tmp, p, plan, default_workers(len(plan)) if workers is None else workers, progress, cancel)
        rows = ["path,label,group,sky,layout,split"]
        counts = dict.fromkeys(SPLITS, 0)
        for item in plan:
            name, cls = image_name(item), item["label"]
            rows.append(f"{cls}/{name}.png,{cls},{cls}_p{item['place']:04d},{item['sky']},{item['layout']},"
                        f"{item['split']}")
            counts[item["split"]] += 1
        atomic_write(tmp / "manifest.csv", "\n".join(rows) + "\n", fsync=False)
        atomic_write(tmp / "README.txt", _readme(p, counts), fsync=False)
        atomic_write(tmp / LEGEND, _legend_json(), fsync=False)
        atomic_write(tmp / COMPLETE_MARKER, _params_key(p) + "\n", fsync=False)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _remove_dead_temps(out: Path) -> None:
    """Remove the half-drawn folders (``.NAME.tmp-PID``) that generators killed before they could
    clean up left beside ``out``; a folder whose process still runs (or may: another user's, or
    not POSIX, where no signal-0 probe exists) is left alone."""
    if os.name != "posix":
        return
    prefix = f".{out.name}.tmp-"
    try:
        entries = [e for e in out.parent.iterdir() if e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix):]
        if not pid.isdigit() or int(pid) == os.getpid() or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass  # alive, someone else's


def _move_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp``: the whole folder when it is empty or an earlier demo set,
    only the demo entries when it is a forced non-demo folder (other files stay)."""
    if not out.exists():
        tmp.rename(out)
        return
    if is_demo_dir(out) or not any(out.iterdir()):
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return
    for entry in sorted(tmp.iterdir()):
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        entry.rename(target)
    tmp.rmdir()


def mask_paths(image_path: str | Path) -> dict[str, Path]:
    """The evidence and sky masks and the per-kind label map ("parts") of a demo image (the files
    may not exist for other data)."""
    image_path = Path(image_path)
    folder = image_path.parent.parent / "_masks" / image_path.parent.name
    return {kind: folder / f"{image_path.stem}_{kind}.png" for kind in ("evidence", "sky", "parts")}


def _params_key(p: dict) -> str:
    return json.dumps({"generator_version": GENERATOR_VERSION, **{k: p[k] for k in DEFAULTS}}, sort_keys=True)


def _full_params(params: dict) -> dict:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise BadArgument(f"Unknown demo data parameter(s): {', '.join(unknown)}.")
    return _validate(**{**DEFAULTS, **params})


def demo_dir(**params) -> Path:
    """The cache folder of the demo set for ``params`` (missing ones take DEFAULTS)."""
    p = _full_params(params)
    digest = hashlib.sha256(_params_key(p).encode()).hexdigest()[:10]
    return paths.cache_dir() / "demo" / f"v{GENERATOR_VERSION}-{digest}"


def ensure_demo(progress: Callable[[int, int], None] | None = None,
                cancel: Callable[[], bool] | None = None, **params) -> Path:
    """The demo set for ``params`` in the cache: generated on first use, reused afterwards."""
    folder = demo_dir(**params)
    p = _full_params(params)
    marker = folder / COMPLETE_MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == _params_key(p):
        return folder
    try:
        return generate_demo(folder, **p, force=True, progress=progress, cancel=cancel)
    except OSError:
        # Another process may have finished the same set first: use it if it is complete.
        if marker.is_file() and marker.read_text(encoding="utf-8").strip() == _params_key(p):
            return folder
        raise
