"""Writing the results of ``run_units``: ``units.json``, an HTML page, and figures with sidecars.

``write_units_page(results, out_dir)`` writes ``units.json`` (``{"format", "models": [...]}``),
``units.html`` (a summary table, the detector-count bar chart, the first-layer filter grids side
by side, and every unit's mosaic with its concept and IoU, detectors first), ``detectors.png``,
``filters_<key>.png`` and ``mosaics/<key>/unit_NNNN.png``. Without label maps the page says why
there is no dissection and shows filters and top patches only.

``export_units_figure(kind, results, path, unit=)`` draws the detector chart (``kind="detectors"``)
or one unit's mosaic (``"mosaic"``) as PDF, SVG or PNG (by the suffix) and writes the sidecar
``FILE.json`` with the provenance (checkpoints, layer, split, data fingerprint, unit, versions).
Plots use ``matplotlib.figure.Figure`` on Agg (no pyplot), so this runs in any thread.
"""

from __future__ import annotations

import datetime as _dt
import html
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from geocam_gui.core import validate
from geocam_gui.core.errors import BadArgument
from geocam_gui.core.files import atomic_write

SIDECAR_FORMAT = "geocam-units-figure/1"
FIGURE_FORMATS = ("pdf", "svg", "png")


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def model_key(result: dict, results: list[dict]) -> str:
    """A short name for a result: the model, with the layer when two results share a model."""
    same = [r for r in results if r["model"] == result["model"]]
    return result["model"] if len(same) == 1 else f"{result['model']}-{result['layer']}".replace(".", "_")


def detector_chart(results: list[dict]):
    """Grouped bars: detectors per concept for each model (and hatched, the randomised model);
    only concepts with a detector somewhere are drawn."""
    from matplotlib.ticker import MaxNLocator

    with_d = [r for r in results if r["dissection"].get("available")]
    concepts = sorted({c for r in with_d for d in (r["dissection"], r["dissection"].get("randomised", {}))
                       for c in d.get("by_concept", {})})
    fig = _figure(max(5.0, 0.45 * len(concepts) * max(1, len(with_d)) + 3.0), 3.4)
    ax = fig.add_subplot()
    if not with_d or not concepts:
        ax.text(0.5, 0.5, "No dissection: the data has no label maps" if not with_d else
                "No unit exceeds IoU 0.04 with any concept", ha="center", va="center")
        ax.set_axis_off()
        return fig
    series = []
    for r in with_d:
        series.append((f"{r['label']} {r['layer']} ({r['dissection']['detectors']})", r["dissection"]["by_concept"], None))
        if "randomised" in r["dissection"]:
            rd = r["dissection"]["randomised"]
            series.append((f"{r['label']} randomised ({rd['detectors']})", rd["by_concept"], "//"))
    width = 0.8 / len(series)
    x = np.arange(len(concepts))
    for i, (name, counts, hatch) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [counts.get(c, 0) for c in concepts], width,
               label=name, hatch=hatch, color=f"C{i // 2 if any(s[2] for s in series) else i}",
               alpha=0.5 if hatch else 1.0, edgecolor="black", linewidth=0.4)
    ax.set_xticks(x, concepts, rotation=30, ha="right")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("detectors (IoU > 0.04)")
    ax.set_title("Units labelled by Network Dissection, per concept")
    ax.legend(fontsize=7)
    return fig


def mosaic_figure(result: dict, unit: int):
    row = result["units"][unit]
    img = np.asarray(Image.open(Path(result["entry"]) / row["mosaic"]).convert("RGB"))
    fig = _figure(max(2.0, img.shape[1] / 100 + 0.3), img.shape[0] / 100 + 0.55)
    ax = fig.add_subplot()
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{result['label']} {result['layer']} unit {unit}: {caption(row)}", fontsize=8)
    return fig


def caption(row: dict) -> str:
    if row.get("iou") is None:
        return "no dissection"
    if row.get("concept"):
        return f"{row['concept']} (IoU {row['iou']:.3f})"
    return f"no concept (best IoU {row['iou']:.3f})"


def _versions() -> dict:
    import matplotlib
    import PIL

    from geocam_gui.core.checkpoints import library_versions

    v = library_versions()
    v.update(matplotlib=matplotlib.__version__, pillow=PIL.__version__)
    return v


def export_units_figure(kind: str, results: list[dict], path, *, unit: int | None = None, dpi: int = 200) -> Path:
    """Write the detector chart or a unit mosaic to ``path`` (format by suffix) + ``path.json``."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise BadArgument(f"Figures are written as {', '.join(FIGURE_FORMATS)}; {path.name} has another suffix.")
    if not results:
        raise BadArgument("There are no unit results to export.")
    if kind == "detectors":
        fig, chosen = detector_chart(results), results
    elif kind == "mosaic":
        if unit is None or not 0 <= int(unit) < results[0]["units_count"]:
            raise BadArgument(f"Choose a unit between 0 and {results[0]['units_count'] - 1}.")
        fig, chosen = mosaic_figure(results[0], int(unit)), results[:1]
    else:
        raise BadArgument(f"Unknown units figure {kind!r}: detectors or mosaic.")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"Creator": "GeoCAM"} if fmt != "png" else {"Software": "GeoCAM"}
    if fmt == "pdf":
        meta["CreationDate"] = None
    if fmt == "svg":
        meta = {"Creator": "GeoCAM", "Date": None}
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta))
    side = {
        "format": SIDECAR_FORMAT, "kind": kind, "output": path.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "versions": _versions(),
        "sources": [{"checkpoint": r.get("checkpoint"), "model": r["model"], "layer": r["layer"], "split": r["split"],
                     "limit": r.get("limit"), "data": r["data"], "images": r["decoded"],
                     "dissection": {k: r["dissection"].get(k) for k in ("available", "detectors", "unique_concepts",
                                                                          "by_concept", "randomised", "reason")}}
                    for r in chosen],
        "params": {"unit": unit, "dpi": dpi, "quantile": 0.995, "iou_threshold": 0.04},
    }
    if kind == "mosaic":
        side["unit"] = {k: v for k, v in chosen[0]["units"][int(unit)].items() if k != "mosaic"}
    text = validate.dumps(side, indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(str(path) + ".json"), text)
    return path


def write_units_page(results: list[dict], out_dir) -> dict[str, Path]:
    """Write units.json, units.html, detectors.png, filter grids and mosaics into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    keys = [model_key(r, results) for r in results]
    for r, key in zip(results, keys):
        src = Path(r["entry"])
        shutil.copyfile(src / r["filters"], out / f"filters_{key}.png")
        dest = out / "mosaics" / key
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src / "mosaics", dest)
    fig = detector_chart(results)
    fig.savefig(out / "detectors.png", format="png")
    files["chart"] = out / "detectors.png"
    doc = {"format": "geocam-units-page/1",
           "models": [{**{k: v for k, v in r.items() if k != "entry"}, "key": key,
                       "filters": f"filters_{key}.png",
                       "units": [{**u, "mosaic": f"mosaics/{key}/{Path(u['mosaic']).name}"} for u in r["units"]]}
                      for r, key in zip(results, keys)]}
    atomic_write(out / "units.json", validate.dumps(doc))
    files["json"] = out / "units.json"
    text = _html(doc["models"])
    atomic_write(out / "units.html", text)
    files["html"] = out / "units.html"
    return files


def _html(models: list[dict]) -> str:
    e = html.escape
    rows = []
    for m in models:
        d = m["dissection"]
        rnd = d.get("randomised", {})
        rows.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in (
            m["label"], m["layer"], m["units_count"], "×".join(map(str, m["layer_shape"])), m["decoded"],
            d.get("labelled_images", 0), d.get("detectors", "–"), d.get("unique_concepts", "–"),
            rnd.get("detectors", "–"), rnd.get("unique_concepts", "–"))) + "</tr>")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>GeoCAM units</title><style>",
        "body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px}.units{display:flex;flex-wrap:wrap;gap:10px}.unit{font-size:11px}"
        ".det{color:#0a5}.why{background:#fff4d6;padding:8px;border:1px solid #e0c060}"
        ".filters{display:flex;gap:24px;align-items:flex-start}</style></head><body>",
        "<h1>Units: what the filters and channels detect</h1>",
        "<p>Network Dissection (Bau et al. 2017): each unit's threshold is its top-0.5 % activation over all "
        "positions of all images; its map, upsampled bilinearly to the label resolution and thresholded, is "
        "compared with every concept by IoU over the whole split; a unit is a detector of its best concept "
        "when that IoU exceeds 0.04. Mosaics: the top images of a unit, each cropped to the receptive field "
        "around the peak, the region above the threshold bright.</p>",
        "<table><tr><th>Model</th><th>Layer</th><th>Units</th><th>Map</th><th>Images</th><th>Labelled</th>"
        "<th>Detectors</th><th>Unique concepts</th><th>Detectors (randomised)</th><th>Concepts (randomised)</th></tr>",
        *rows, "</table>",
    ]
    for m in models:
        d = m["dissection"]
        if not d.get("available"):
            parts.append(f"<p class='why'><b>{e(m['label'])}:</b> {e(d.get('reason') or 'no dissection')}</p>")
        elif d.get("max_iou"):
            shares = ", ".join(f"{e(k)} {100 * v:.1f} % (IoU ≤ {d['max_iou'][k]:.3f})"
                               for k, v in d["concept_share"].items())
            parts.append(f"<p><b>{e(m['label'])}</b>: share of the labelled pixels per concept, and the best IoU a "
                         f"mask of the units' mean share ({100 * d['mask_share']:.2f} %) can reach on it: {shares}.</p>")
    parts += ["<h2>Detectors per concept</h2><img src='detectors.png' alt='detector counts'>",
              "<h2>First-layer filters</h2><div class='filters'>"]
    parts += [f"<figure><img src='{e(m['filters'])}' style='image-rendering:pixelated;width:260px'>"
              f"<figcaption>{e(m['label'])}</figcaption></figure>" for m in models]
    parts.append("</div>")
    for m in models:
        parts.append(f"<h2>{e(m['label'])} {e(m['layer'])}: {m['units_count']} units</h2><div class='units'>")
        order = sorted(m["units"], key=lambda u: (u.get("concept") is None, -(u.get("iou") or 0), u["unit"]))
        for u in order:
            cls = " det" if u.get("concept") else ""
            parts.append(f"<div class='unit'><img src='{e(u['mosaic'])}' loading='lazy'><br>"
                         f"<span class='{cls.strip()}'>unit {u['unit']}: {e(caption(u))}</span></div>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
