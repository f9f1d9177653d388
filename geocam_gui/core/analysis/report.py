"""Writing an analysis report: ``report.json``, the plots as PNG, the element mosaics and a
self-contained ``report.html`` (tables, and every image embedded as base64 PNG).

Plots are drawn with ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot, no global
state), so reports can be written from a worker thread or a server.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from geocam_gui.core.chance import chance_from_metrics
from geocam_gui.core.files import atomic_write, atomic_write_json

KINDS_SHOWN = 6

PLOTS = ("accuracy", "confusion", "localisation", "faithfulness", "sanity", "agreement")


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def _fmt(v, pct: bool = False, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, dict):
        v = v.get("mean")
        if v is None:
            return "–"
    return f"{100 * v:.1f} %" if pct else f"{v:.{digits}f}"


def _mean(d):
    return (d or {}).get("mean") if isinstance(d, dict) else d


def display_name(m: dict) -> str:
    """A model's name for people: "Shallow CNN", or "Shallow CNN (run_a)" when two checkpoints of
    one model are analysed (their internal keys are "shallow (run_a)", "shallow (run_b)")."""
    key, model, label = str(m.get("key", "")), str(m.get("model", "")), str(m.get("label") or m.get("model", ""))
    if not key or key == model:
        return label
    return label + key[len(model):] if key.startswith(model) else f"{label} [{key}]"


def display_names(report: dict) -> dict[str, str]:
    """Internal key -> display name of every model of ``report``."""
    return {m["key"]: display_name(m) for m in report.get("models", [])}


def text_color(value: float, vmin: float, vmax: float, cmap: str = "Blues") -> str:
    """"black" or "white", whichever reads on the colour ``cmap`` gives ``value`` on the scale
    ``vmin``..``vmax`` (the image's own scale, minimum included): by the colour's luminance."""
    import matplotlib

    if value is None or not np.isfinite(value):
        return "black"
    span = (vmax - vmin) or 1.0
    r, g, b, _a = matplotlib.colormaps[cmap](float(np.clip((value - vmin) / span, 0.0, 1.0)))
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"


def value_range(values, low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """The scale ``low``..``high`` widened to cover every finite value (e.g. a Spearman correlation
    of -0.39 on an agreement scale that starts at 0), rounded out to tenths."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size:
        low = min(low, float(np.floor(v.min() * 10) / 10))
        high = max(high, float(np.ceil(v.max() * 10) / 10))
    return low, high


# --------------------------------------------------------------------------- tables


def tables(report: dict) -> dict[str, dict]:
    """The report's tables as ``{name: {"title", "columns", "rows"}}`` (strings), shared by the
    HTML writer and the GUI."""
    models = report["models"]
    out: dict[str, dict] = {}
    rows = []
    for m in models:
        acc = m["accuracy"]
        row = [display_name(m), str(acc["n"]),
               _fmt(acc["accuracy"], True)]
        verdict = m.get("chance") or chance_from_metrics(acc)
        if verdict:
            lo, hi = verdict["ci95"]
            row += [f"{100 * lo:.1f}-{100 * hi:.1f} %", _fmt(verdict["majority_rate"], True),
                    ("yes" if verdict["above_chance"] else "NO - at chance") + f" (p = {verdict['p_value']:.2g})"]
        else:
            row += ["–", "–", "–"]
        for c in acc["classes"]:
            row.append(_fmt(acc["per_class"][c]["recall"], True))
        rows.append(row)
    classes = models[0]["accuracy"]["classes"] if models else []
    out["accuracy"] = {"title": "Accuracy (above chance: exact one-sided binomial test against always answering "
                                "the largest class, p < 0.05; Clopper-Pearson 95 % interval)",
                       "columns": ["Model", "Images", "Accuracy", "95 % CI", "Largest class", "Above chance"]
                       + [f"Recall {c}" for c in classes], "rows": rows}
    loc_rows = []
    for m in models:
        loc = m["localisation"]
        if not loc.get("available"):
            loc_rows.append([display_name(m), "0", "–", "–", "–", "–", "–", "–", "–", _fmt(m.get("map_area"), True)])
            continue
        pg, ee, se = loc["pointing_game"], loc["evidence_energy"], loc["sky_energy"]
        loc_rows.append([display_name(m), f"{loc['with_evidence_mask']}/{loc['images']}", _fmt(pg["cam"], True),
                     _fmt(pg["random"], True), _fmt(ee["cam"], True), _fmt(ee["random"], True),
                     _fmt(se["cam"], True), _fmt(loc.get("sky_energy_predicted"), True), _fmt(se["random"], True),
                     _fmt(m.get("map_area"), True)])
    rows = []
    for m in models:
        for c, kinds in (m.get("kinds") or {}).get("per_class", {}).items():
            best = sorted(kinds.items(), key=lambda kv: -kv[1]["hit"])[:KINDS_SHOWN]
            rows += [[display_name(m), c, k, str(v["n"]), _fmt(v["hit"], True), _fmt(v["energy"], True),
                      _fmt(v["area"], True)] for k, v in best]
    if rows:
        out["kinds"] = {"title": f"Which kinds the true class's map points at (top {KINDS_SHOWN} per model and class; "
                                 "a uniform map's energy share is the kind's area)",
                        "columns": ["Model", "Class", "Kind", "Images with it", "Pointing game", "Energy share",
                                    "Area"], "rows": rows}
    out["localisation"] = {"title": "Localisation against ground-truth masks",
                           "columns": ["Model", "With masks", "Pointing game", "(random map)",
                                       "Energy on evidence", "(random map)", "Energy on sky",
                                       "Energy on sky (predicted class)", "(random map)",
                                       "Map area >= half its peak"],
                           "rows": loc_rows}
    rows = []
    for m in models:
        f = m["faithfulness"]
        rows.append([display_name(m), str(f["n"]), _fmt(f["deletion"]["auc"]), _fmt(f["random_deletion"]["auc"]),
                     _fmt(f["insertion"]["auc"]), _fmt(f["random_insertion"]["auc"])])
    out["faithfulness"] = {"title": "Faithfulness (area under the curve; deletion: lower is better, "
                                    "insertion: higher is better)",
                           "columns": ["Model", "Images", "Deletion", "(random order)", "Insertion",
                                       "(random order)"], "rows": rows}
    rows = []
    for m in models:
        st = m["sanity"]["steps"]
        last = st[-1] if st else {}
        first = st[1] if len(st) > 1 else {}
        rows.append([display_name(m), str(m["sanity"]["n"]), str(len(st) - 1),
                     _fmt(first.get("spearman")), _fmt(first.get("ssim")),
                     _fmt(last.get("spearman")), _fmt(last.get("ssim"))])
    out["sanity"] = {"title": "Sanity check: similarity to the trained model's maps (cascading randomisation)",
                     "columns": ["Model", "Images", "Steps", "Spearman (top layer random)", "SSIM (top layer random)",
                                 "Spearman (all random)", "SSIM (all random)"], "rows": rows}
    names = display_names(report)
    ag = report.get("agreement", {})
    out["agreement"] = {"title": f"Agreement between models (top {round(100 * ag.get('top_fraction', 0.2))} % IoU, "
                                 "Spearman)",
                        "columns": ["Model A", "Model B", "Images", "IoU top region", "Spearman"],
                        "rows": [[names.get(p["a"], p["a"]), names.get(p["b"], p["b"]), str(p["n"]), _fmt(p["iou_top20"]), _fmt(p["spearman"])]
                                 for p in ag.get("pairs", [])]}
    bias = report.get("bias", {})
    keys = [m["key"] for m in models]
    if bias.get("available"):
        rows = []
        for s in bias["sets"]:
            q, lq = s["test_sky_bias"], s.get("test_layout_bias")
            rates = [f"sky rate {q:g}"] if q is not None else []
            rates += [f"layout rate {lq:g}"] if lq is not None and (lq != 0 or q is None) else []
            rows.append([s["name"] + (f" ({', '.join(rates)})" if rates else ""), str(s["n"])]
                        + [_fmt(s["accuracy"].get(k), True) for k in keys])
        for key, label in (("sky_reliance", "Sky"), ("layout_reliance", "Layout")):
            if bias.get(key):
                rows.append([f"{label} reliance (as trained − flipped)", ""]
                            + [_fmt(bias[key].get(k), True) for k in keys])
        out["bias"] = {"title": "Sky-bias probe: accuracy on test sets with another sky rate (or layout rate)",
                       "columns": ["Test set", "Images"] + [names.get(k, k) for k in keys], "rows": rows}
    rows = []
    for m in models:
        sc = m.get("sky_congruence")
        if sc:
            rows.append([display_name(m), f"{_fmt(sc['usual']['accuracy'], True)} (n={sc['usual']['n']})",
                         f"{_fmt(sc['unusual']['accuracy'], True)} (n={sc['unusual']['n']})"])
    if rows:
        out["congruence"] = {"title": "Accuracy by sky: the class's usual sky (from the train split) or not",
                             "columns": ["Model", "Usual sky", "Unusual sky"], "rows": rows}
    return out


# --------------------------------------------------------------------------- plots


def _bars(ax, groups: list[str], series: dict[str, list], ylabel: str, hatched: set = frozenset()) -> None:
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, vals) in enumerate(series.items()):
        v = [np.nan if a is None else a for a in vals]
        ax.bar(x + (i - (n - 1) / 2) * width, v, width, label=name, hatch="//" if name in hatched else None,
               alpha=0.55 if name in hatched else 1.0)
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)


def confusion_figure(models: list[dict], labels: list[str]):
    """One confusion matrix per model (rows: true class), counts written in the colour that
    reads on each cell (the scale runs from the matrix's smallest count to its largest)."""
    fig = _figure(3.0 * max(1, len(models)), 3.0)
    for i, m in enumerate(models):
        ax = fig.add_subplot(1, len(models), i + 1)
        cm = np.asarray(m["accuracy"]["confusion"])
        lo, hi = (float(cm.min()), float(cm.max())) if cm.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        ax.imshow(cm, cmap="Blues", vmin=lo, vmax=hi)
        cls = m["accuracy"]["classes"]
        ax.set_xticks(range(len(cls)), cls, fontsize=8)
        ax.set_yticks(range(len(cls)), cls, fontsize=8)
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, str(v), ha="center", va="center", color=text_color(v, lo, hi, "Blues"))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(labels[i], fontsize=10)
    return fig


def agreement_figure(report: dict, labels: list[str]):
    """IoU and Spearman between every pair of models as two matrices, each colour bar covering
    its values (a negative correlation included)."""
    keys = [m["key"] for m in report["models"]]
    fig = _figure(8, 3.4)
    for j, (metric, title) in enumerate((("iou_top20", "IoU of the top regions"), ("spearman", "Spearman"))):
        mat = np.eye(len(keys))
        for p in report["agreement"]["pairs"]:
            a, b = keys.index(p["a"]), keys.index(p["b"])
            mat[a, b] = mat[b, a] = np.nan if _mean(p[metric]) is None else _mean(p[metric])
        ax = fig.add_subplot(1, 2, j + 1)
        lo, hi = value_range(mat)
        im = ax.imshow(mat, vmin=lo, vmax=hi, cmap="viridis")
        ax.set_xticks(range(len(keys)), labels, fontsize=8, rotation=20)
        ax.set_yticks(range(len(keys)), labels, fontsize=8)
        for (r, c), v in np.ndenumerate(mat):
            ax.text(c, r, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center",
                    color=text_color(v, lo, hi, "viridis"))
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def plot_all(report: dict, out_dir: Path) -> dict[str, Path]:
    """Draw every plot of the report into ``out_dir`` as ``<name>.png``; returns name -> path."""
    models = report["models"]
    labels = [display_name(m).replace(" (", "\n(") for m in models]
    files: dict[str, Path] = {}
    fig = _figure(6.5, 3.2)
    ax = fig.add_subplot()
    series = {"analysed split": [m["accuracy"]["accuracy"] for m in models]}
    bias = report.get("bias", {})
    for s in bias.get("sets", []) if bias.get("available") else []:
        series[f"probe: {s['name']}"] = [s["accuracy"].get(m["key"]) for m in models]
    _bars(ax, labels, series, "accuracy")
    ax.set_title("Accuracy")
    files["accuracy"] = _save(fig, out_dir / "accuracy.png")

    files["confusion"] = _save(confusion_figure(models, labels), out_dir / "confusion.png")

    fig = _figure(9, 3.2)
    for j, (key, title) in enumerate((("pointing_game", "Pointing game"), ("evidence_energy", "Energy on evidence"),
                                      ("sky_energy", "Energy on sky"))):
        ax = fig.add_subplot(1, 3, j + 1)
        loc = [m["localisation"] for m in models]
        _bars(ax, labels, {"CAM": [_mean(l[key]["cam"]) if l.get("available") else None for l in loc],
                           "random map": [_mean(l[key]["random"]) if l.get("available") else None for l in loc]},
              "share" if j else "hit rate", hatched={"random map"})
        ax.set_title(title, fontsize=10)
    files["localisation"] = _save(fig, out_dir / "localisation.png")

    fig = _figure(9, 3.2)
    for j, kind in enumerate(("deletion", "insertion")):
        ax = fig.add_subplot(1, 2, j + 1)
        for i, m in enumerate(models):
            f = m["faithfulness"]
            line, = ax.plot(f["fractions"], f[kind]["curve"], label=f"{labels[i]} ({_fmt(f[kind]['auc'])})")
            ax.plot(f["fractions"], f["random_" + kind]["curve"], ls="--", color=line.get_color(), alpha=0.6)
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "revealed"))
        ax.set_ylabel("probability of the predicted class")
        ax.set_ylim(0, 1)
        ax.set_title(kind.capitalize() + " (dashed: random order)", fontsize=10)
        ax.legend(fontsize=8)
    files["faithfulness"] = _save(fig, out_dir / "faithfulness.png")

    fig = _figure(9, 3.2)
    for j, metric in enumerate(("spearman", "ssim")):
        ax = fig.add_subplot(1, 2, j + 1)
        seen = []
        for i, m in enumerate(models):
            st = m["sanity"]["steps"]
            ys = [_mean(s[metric]) for s in st]
            seen += [y for y in ys if y is not None]
            ax.plot(range(len(st)), [np.nan if y is None else y for y in ys], marker="o", ms=3, label=labels[i])
        ax.set_xlabel("layers randomised, from the top")
        ax.set_ylabel("Spearman rank correlation" if metric == "spearman" else "SSIM")
        ax.set_ylim(value_range(seen, -0.2 if metric == "spearman" else 0.0)[0] - 0.05, 1.05)  # SSIM goes below 0 too
        ax.set_title("Cascading randomisation: " + ("rank correlation" if metric == "spearman" else "SSIM"),
                     fontsize=10)
        ax.legend(fontsize=8)
    files["sanity"] = _save(fig, out_dir / "sanity.png")

    if len(models) > 1:
        files["agreement"] = _save(agreement_figure(report, labels), out_dir / "agreement.png")
    return files


# --------------------------------------------------------------------------- writing


def _b64(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table_html(t: dict) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t["columns"])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in t["rows"])
    return f"<h3>{html.escape(t['title'])}</h3>\n<table><tr>{head}</tr>{body}</table>\n"


def write_report(report: dict, out_dir) -> dict[str, Path]:
    """Write ``report.json``, the plot PNGs, the mosaics and a self-contained ``report.html``
    into ``out_dir`` (created). Mosaic paths in the written JSON are relative to ``out_dir``.
    Returns ``{name: path}`` of everything written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = plot_all(report, out)
    written = json.loads(json.dumps(report))
    mosaics: list[tuple[str, str, Path]] = []
    for m in written["models"]:
        for cls, e in m.get("elements", {}).items():
            src = e.get("mosaic")
            if src and Path(src).is_file():
                safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{m['key']}_{cls}")
                dst = out / f"elements_{safe}.png"
                if Path(src).resolve() != dst.resolve():
                    atomic_write(dst, Path(src).read_bytes())
                e["mosaic"] = dst.name
                files[f"elements_{safe}"] = dst
                mosaics.append((display_name(m), cls, dst))
    files["json"] = atomic_write_json(out / "report.json", written, ensure_ascii=True)
    files["html"] = out / "report.html"
    atomic_write(files["html"], _html(written, files, mosaics))
    return files


def _html(report: dict, files: dict[str, Path], mosaics: list) -> str:
    d = report["data"]
    t = tables(report)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>GeoCAM analysis</title><style>",
        "body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;margin:8px 0}",
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}",
        "td:first-child{text-align:left}img{max-width:100%}.note{color:#555;font-size:90%}",
        ".warn{background:#fff3cd;border:1px solid #e0b000;padding:6px 10px}</style></head><body>",
        "<h1>GeoCAM interpretability report</h1>",
        f"<p>Data: {html.escape(', '.join(d['roots']))} ({html.escape(d['layout'])}), split "
        f"<b>{html.escape(d['split'])}</b>, {d['images']} images; method <b>{html.escape(report['method'])}</b>; "
        f"created {html.escape(report['created'])}.</p>",
    ]
    for m in report["models"]:
        verdict = m.get("chance") or chance_from_metrics(m["accuracy"])
        if verdict and not verdict["above_chance"]:
            parts.append(f"<p class='warn'><b>Warning - {html.escape(display_name(m))}</b>: {html.escape(verdict['message'])} "
                         "Read its heat maps and measures below with that in mind.</p>")
    sections = [("accuracy", ["accuracy", "confusion"]), ("localisation", ["localisation"]), ("kinds", []),
                ("faithfulness", ["faithfulness"]), ("sanity", ["sanity"]), ("agreement", ["agreement"]),
                ("bias", []), ("congruence", [])]
    for name, plots in sections:
        if name in t:
            parts.append(_table_html(t[name]))
        for p in plots:
            if p in files:
                parts.append(f"<p><img alt='{p}' src='{_b64(files[p])}'></p>")
    s = report["settings"]
    parts.append(f"<p class='note'>Pointing game tolerance: {html.escape(s['pointing_tolerance'])}; "
                 f"faithfulness in {s['faithfulness_steps']} steps (deletion to the ImageNet mean colour, "
                 f"insertion from a blurred copy; pixels with equal map values go in a seeded random order, not in "
                 f"raster order); sanity check on {s['sanity_images']} images; "
                 "uniform-random maps and random pixel orders are seeded baselines.</p>")
    if report.get("bias", {}).get("reason"):
        parts.append(f"<p class='note'>Sky probe: {html.escape(report['bias']['reason'])}</p>")
    if mosaics:
        parts.append("<h2>Discriminative elements</h2><p class='note'>Top CAM peaks of correctly classified "
                     "images, clustered by the target layer's features; clusters from a single place are dropped.</p>")
        for label, cls, path in mosaics:
            parts.append(f"<h3>{html.escape(label)}: {html.escape(cls)}</h3><img alt='elements' src='{_b64(path)}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
