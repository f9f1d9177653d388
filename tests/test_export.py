"""Export of overlays and figures: native resolution, figure geometry, sidecars, no silent overwrite."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.cli import main
from geocam_gui.core import export as ex
from geocam_gui.core.errors import BadArgument, DataError

CLASSES = ["pittsburgh", "tokyo"]
SIZE = 32  # model input


@pytest.fixture(scope="module")
def assets(tmp_path_factory, torch_threads):
    """Two tiny checkpoints (shallow, resnet18) and three photos of odd sizes plus a corrupt one."""
    torch = torch_threads

    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("export_assets")
    ckpts = []
    for name in ("shallow", "resnet18"):
        model = build_model(name, len(CLASSES))
        save_checkpoint(root / name / "best", model, base_meta(name, CLASSES, SIZE))
        ckpts.append(str(root / name / "best.json"))
    rng = np.random.default_rng(1)
    photos = []
    for i, ((w, h), label) in enumerate([((160, 120), "pittsburgh"), ((96, 128), "tokyo"), ((140, 70), "tokyo")]):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        arr[h // 4: h // 2, w // 3: w // 2] = 255
        folder = root / "photos" / label
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"view_{i}.png"
        Image.fromarray(arr).save(path)
        photos.append(str(path))
    corrupt = root / "photos" / "tokyo" / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return {"root": root, "ckpts": ckpts, "photos": photos, "corrupt": str(corrupt)}


def _request(assets, kind, dest, **opts):
    images = [ex.ExportImage(p, Path(p).parent.name) for p in assets["photos"]]
    return ex.ExportRequest(kind, images, assets["ckpts"], str(dest), ex.ExportOptions(**opts))


def _mediabox(pdf: Path) -> tuple[float, float]:
    m = re.search(rb"/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]", pdf.read_bytes())
    assert m, "no MediaBox in the PDF"
    x0, y0, x1, y1 = (float(v) for v in m.groups())
    return x1 - x0, y1 - y0


# --------------------------------------------------------------------------- overlays
def test_overlays_are_written_at_the_photos_native_resolution(assets, tmp_path):
    summary = ex.export(_request(assets, "overlays", tmp_path / "out", opacity=0.6, dpi=300))
    assert not summary.failed and not summary.cancelled
    assert len(summary.written) == 3 * 2 * 3  # images x models x (overlay, heatmap, raw)
    src = Image.open(assets["photos"][0])
    assert src.size == (160, 120)
    over = Image.open(tmp_path / "out" / "view_0_shallow.png")
    assert over.size == (160, 120) and over.mode == "RGB"
    assert over.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert not np.array_equal(np.asarray(over), np.asarray(src.convert("RGB")))  # the heat map is there
    heat = Image.open(tmp_path / "out" / "view_0_shallow_heatmap.png")
    assert heat.size == (160, 120) and heat.mode == "RGBA"
    alpha = np.asarray(heat)[..., 3]
    assert alpha.min() < alpha.max()  # alpha follows the map
    raw = np.load(tmp_path / "out" / "view_0_shallow_cam.npy")
    assert raw.dtype == np.float32 and raw.shape == (SIZE // 8, SIZE // 8)  # layer resolution
    raw_r = np.load(tmp_path / "out" / "view_0_resnet18_cam.npy")
    assert raw_r.shape == (1, 1)  # ResNet18 at 32 px: 1/32 of the input
    portrait = Image.open(tmp_path / "out" / "view_1_shallow.png")
    assert portrait.size == (96, 128)
    side = json.loads((tmp_path / "out" / "view_0_shallow.png.json").read_text())
    assert side["sources"][0]["path"] == assets["photos"][0]
    assert side["sources"][0]["sha256"] == ex.file_sha256(assets["photos"][0])
    assert side["models"][0]["layer"] == "features.14" and side["models"][1]["layer"] == "layer4.1"
    assert side["models"][0]["sha256"] == ex.file_sha256(Path(assets["ckpts"][0]).with_suffix(".safetensors"))
    assert side["image_size"] == {"width": 160, "height": 120}
    for key in ("torch", "torchvision", "geocam"):
        assert side["versions"][key]
    assert side["params"]["opacity"] == 0.6 and side["params"]["colormap"] == "jet"
    assert side["results"][0]["class"] in CLASSES
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["failed"] == []


@pytest.mark.parametrize("method, choice, normalize, cmap, opacity", [
    ("gradcam", "predicted", "per_map", "jet", 0.5),
    ("gradcam++", "true", "shared", "viridis", 0.35),
    ("layercam", "tokyo", "per_map", "inferno", 0.8),
])
def test_overlay_is_byte_identical_to_the_viewers_explanation(assets, tmp_path, method, choice, normalize, cmap,
                                                               opacity):
    """The sidecar's promise: the exported overlay is what the viewer draws - ``explain_image``
    + ``full_size_maps`` (the viewer's maps) blended by ``render.overlay`` - for the same image,
    class, method, colormap and opacity, down to the PNG's bytes."""
    import io

    from geocam_gui.core.explain import render
    from geocam_gui.core.explain.store import GROUND_TRUTH, ModelStore, explain_image, full_size_maps

    photo = assets["photos"][1]
    label = Path(photo).parent.name
    req = ex.ExportRequest("overlays", [ex.ExportImage(photo, label)], assets["ckpts"], str(tmp_path),
                           ex.ExportOptions(class_choice=choice, method=method, cmap=cmap, opacity=opacity,
                                            normalize=normalize, dpi=150, outputs=("overlay",)))
    summary = ex.export(req)
    assert len(summary.written) == 2 and not summary.failed
    # what the viewer computes (its own keys: the model names) for this image
    viewer = explain_image(photo, {"shallow": assets["ckpts"][0], "resnet18": assets["ckpts"][1]},
                           ModelStore("cpu"), method=method, label=label)
    assert not viewer.errors
    shown = full_size_maps(viewer, GROUND_TRUTH if choice == "true" else choice, shared=normalize == "shared")
    for key in ("shallow", "resnet18"):
        drawn = render.overlay(viewer.image, shown[key][1], opacity=opacity, cmap=cmap)
        written = tmp_path / f"view_1_{key}.png"
        assert np.array_equal(np.asarray(Image.open(written)), drawn)
        encoded = io.BytesIO()
        Image.fromarray(drawn).save(encoded, format="PNG", dpi=(150, 150))
        assert written.read_bytes() == encoded.getvalue()
        side = json.loads((tmp_path / f"view_1_{key}.png.json").read_text())
        idx = shown[key][0]
        assert side["results"][0]["class_index"] == idx
        assert side["results"][0]["probabilities"] == [float(v) for v in viewer.models[key].probs]


def test_opacity_zero_gives_the_photo_and_tiff_keeps_size_and_dpi(assets, tmp_path):
    ex.export(_request(assets, "overlays", tmp_path, opacity=0.0, overlay_format="tiff", dpi=600,
                       outputs=("overlay",)))
    tif = Image.open(tmp_path / "view_0_shallow.tif")
    assert tif.format == "TIFF" and tif.size == (160, 120)
    assert tuple(float(v) for v in tif.info["dpi"]) == pytest.approx((600, 600))
    assert np.array_equal(np.asarray(tif), np.asarray(Image.open(assets["photos"][0]).convert("RGB")))
    assert not (tmp_path / "view_0_shallow_heatmap.png").exists()


def test_class_choice_true_and_named(assets, tmp_path):
    one = {"ckpts": assets["ckpts"][:1], "photos": assets["photos"][:2]}
    ex.export(_request(one, "overlays", tmp_path / "t", class_choice="ground truth", outputs=("raw",)))
    side = json.loads((tmp_path / "t" / "view_1_shallow_cam.npy.json").read_text())
    assert side["results"][0]["class"] == "tokyo" and side["params"]["class"] == "true"
    ex.export(_request(one, "overlays", tmp_path / "n", class_choice="pittsburgh", outputs=("raw",)))
    side = json.loads((tmp_path / "n" / "view_1_shallow_cam.npy.json").read_text())
    assert side["results"][0]["class"] == "pittsburgh"
    with pytest.raises(BadArgument, match="Unknown class 'paris'"):
        ex.plan_export(_request(assets, "overlays", tmp_path, class_choice="paris"))


# --------------------------------------------------------------------------- figures
@pytest.mark.parametrize("width,points", [("single", 3.5 * 72), ("double", 7.16 * 72)])
def test_pdf_figure_page_width_follows_the_column_width(assets, tmp_path, width, points):
    out = tmp_path / "fig.pdf"
    rc = main(["export", "--checkpoint", *assets["ckpts"], "--images", *assets["photos"][:2],
               "--figure", str(out), "--width", width])
    assert rc == 0
    w, h = _mediabox(out)
    assert w == pytest.approx(points, abs=0.01)
    assert h > w * 0.5  # two rows of photos, titles and captions
    data = out.read_bytes()
    assert b"/Width 160" in data and b"/Height 120" in data  # the photo embedded at full resolution
    assert b"/FontFile2" in data  # TrueType (Type 42) font embedded
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["size_in"]["width"] == pytest.approx(points / 72)
    assert len(side["results"]) == 2 * 2


def test_svg_figure_keeps_text_as_text(assets, tmp_path):
    out = tmp_path / "fig.svg"
    assert main(["export", "--checkpoint", *assets["ckpts"], "--images", *assets["photos"][:2],
                 "--figure", str(out), "--width", "5"]) == 0
    svg = out.read_text()
    assert "<text" in svg and "Shallow CNN" in svg and "ResNet18" in svg
    assert "<image" in svg


def test_png_figure_has_its_dpi(assets, tmp_path):
    out = tmp_path / "fig.png"
    assert main(["export", "--checkpoint", *assets["ckpts"], "--images", assets["photos"][0],
                 "--figure", str(out), "--dpi", "300"]) == 0
    img = Image.open(out)
    assert img.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert img.size[0] == round(3.5 * 300)


def test_width_parsing_and_limits():
    from geocam_gui.core.export.figure import parse_width

    assert parse_width("single") == 3.5 and parse_width("double") == 7.16 and parse_width("4.2in") == 4.2
    with pytest.raises(BadArgument):
        parse_width("wide")
    with pytest.raises(BadArgument):
        parse_width("0.2")


# --------------------------------------------------------------------------- provenance
def test_from_sidecar_recreates_every_output_byte_for_byte(assets, tmp_path):
    first = tmp_path / "first"
    assert main(["export", "--checkpoint", *assets["ckpts"], "--images", *assets["photos"][:2],
                 "--overlays", str(first), "--colormap", "viridis", "--opacity", "0.7", "--format", "tiff",
                 "--class", "true", "--normalize", "shared", "--figure", str(first / "fig.pdf")]) == 0
    outputs = [first / n for n in ("view_0_shallow.tif", "view_1_resnet18_heatmap.png", "view_0_shallow_cam.npy",
                                   "fig.pdf")]
    again = tmp_path / "again"
    for out in outputs:
        side = Path(str(out) + ".json")
        dest = ["--figure", str(again / out.name)] if out.name.startswith("fig") else ["--overlays", str(again)]
        assert main(["export", "--from-sidecar", str(side), *dest]) == 0, out
        assert (again / out.name).read_bytes() == out.read_bytes(), f"{out.name} differs"
    # in place: the output is removed and re-created beside its sidecar
    original = outputs[2].read_bytes()
    outputs[2].unlink()
    assert main(["export", "--from-sidecar", str(outputs[2]) + ".json"]) == 0
    assert outputs[2].read_bytes() == original


@pytest.mark.parametrize("fmt", ["pdf", "svg", "png"])
def test_figure_files_are_deterministic(fmt):
    from io import BytesIO

    from geocam_gui.core.export.figure import FigurePanel, FigureRow, render_figure

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    rows = [FigureRow(photo, "tokyo", [FigurePanel(photo[::-1].copy(), "tokyo", "pittsburgh", 0.61)])]
    blobs = []
    for _ in range(2):
        buf = BytesIO()
        render_figure(rows, ["Image", "Shallow CNN"], buf, fmt, dpi=100)
        blobs.append(buf.getvalue())
    assert blobs[0] == blobs[1]
    if fmt == "svg":
        text = blobs[0].decode()
        assert "<text" in text and "pittsburgh (0.61)" in text and "CAM: tokyo" in text and "<dc:date>" not in text


def test_from_sidecar_refuses_changed_sources(assets, tmp_path):
    photo = tmp_path / "photo.png"
    shutil.copy(assets["photos"][0], photo)
    ex.export(ex.ExportRequest("overlays", [ex.ExportImage(str(photo))], assets["ckpts"][:1], str(tmp_path / "o"),
                               ex.ExportOptions(outputs=("overlay",))))
    Image.new("RGB", (160, 120), "red").save(photo)
    with pytest.raises(DataError, match="changed since the export"):
        ex.export_from_sidecar(tmp_path / "o" / "photo_shallow.png.json", tmp_path / "p")


# --------------------------------------------------------------------------- bad input
def test_existing_files_are_never_overwritten_silently(assets, tmp_path, capsys):
    fig = tmp_path / "fig.pdf"
    fig.write_bytes(b"my own figure")
    rc = main(["export", "--checkpoint", *assets["ckpts"], "--images", assets["photos"][0], "--figure", str(fig)])
    assert rc == 2
    assert str(fig) in capsys.readouterr().err
    assert fig.read_bytes() == b"my own figure"
    out = tmp_path / "ov"
    args = ["export", "--checkpoint", assets["ckpts"][0], "--images", assets["photos"][0], "--overlays", str(out)]
    assert main(args) == 0
    stamp = (out / "view_0_shallow.png").stat().st_mtime_ns
    assert main(args) == 0  # same export again: up to date, nothing rewritten
    assert (out / "view_0_shallow.png").stat().st_mtime_ns == stamp
    assert "3 already up to date" in capsys.readouterr().out
    before = (out / "view_0_shallow.png").read_bytes()
    rc = main(args + ["--colormap", "gray"])  # a different export would replace them
    assert rc == 2 and "view_0_shallow.png already exists" in capsys.readouterr().err
    assert (out / "view_0_shallow.png").read_bytes() == before
    assert main(args + ["--colormap", "gray", "--overwrite"]) == 0
    assert (out / "view_0_shallow.png").read_bytes() != before


def test_corrupt_image_is_skipped_and_reported(assets, tmp_path):
    images = [ex.ExportImage(assets["corrupt"], "tokyo"), ex.ExportImage(assets["photos"][0], "pittsburgh")]
    seen = []
    summary = ex.export(ex.ExportRequest("overlays", images, assets["ckpts"][:1], str(tmp_path),
                                         ex.ExportOptions(outputs=("overlay",))),
                        progress=lambda d, t: seen.append((d, t)))
    assert summary.failed == [(assets["corrupt"], "corrupt header (cannot identify image file)")] or \
        [p for p, _ in summary.failed] == [assets["corrupt"]]
    assert summary.written == [str(tmp_path / "view_0_shallow.png")]
    assert seen[-1] == (2, 2)
    report = json.loads((tmp_path / "summary.json").read_text())
    assert [f["path"] for f in report["failed"]] == [assets["corrupt"]]
    fig = ex.export(ex.ExportRequest("figure", images, assets["ckpts"][:1], str(tmp_path / "f.png"),
                                     ex.ExportOptions()))
    assert [p for p, _ in fig.failed] == [assets["corrupt"]] and fig.written
    only_bad = ex.ExportRequest("figure", images[:1], assets["ckpts"][:1], str(tmp_path / "g.png"))
    with pytest.raises(DataError, match="could be read"):
        ex.export(only_bad)
    assert not (tmp_path / "g.png").exists()


def test_failed_write_leaves_no_partial_file(assets, tmp_path, monkeypatch):
    def full_disk(self, fp, *a, **k):
        Path(fp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    req = ex.ExportRequest("overlays", [ex.ExportImage(assets["photos"][0])], assets["ckpts"][:1], str(tmp_path),
                           ex.ExportOptions(outputs=("overlay",)))
    with pytest.raises(ex.ExportWriteError, match="no space is left on the device"):
        ex.export(req)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cancel_stops_between_images_and_a_rerun_finishes(assets, tmp_path):
    req = _request(assets, "overlays", tmp_path, outputs=("overlay",))
    calls = []
    summary = ex.export(req, progress=lambda d, t: calls.append(d), cancel=lambda: len(calls) >= 1)
    assert summary.cancelled and len(summary.written) == 2  # one image, two models
    summary = ex.export(_request(assets, "overlays", tmp_path, outputs=("overlay",)))
    assert len(summary.skipped) == 2 and len(summary.written) == 4 and not summary.cancelled


def test_arguments_are_validated_before_anything_is_written(assets, tmp_path, capsys):
    import torch

    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "three" / "best", build_model("shallow", 3),
                    base_meta("shallow", ["a", "b", "c"], SIZE))
    out = tmp_path / "out"
    base = ["export", "--images", assets["photos"][0], "--overlays", str(out)]
    cases = [
        (["--checkpoint", assets["ckpts"][0], str(tmp_path / "three" / "best.json")], "differ"),
        (["--checkpoint", assets["ckpts"][0], "--class", "paris"], "Unknown class"),
        (["--checkpoint", assets["ckpts"][0], "--opacity", "1.5"], "opacity"),
        (["--checkpoint", assets["ckpts"][0], "--figure", str(tmp_path / "f.jpg")], ".pdf, .svg or .png"),
        (["--checkpoint", str(tmp_path / "missing.json")], "does not exist"),
    ]
    for extra, needle in cases:
        assert main(base + extra) == 2, extra
        assert needle in capsys.readouterr().err
    assert main(["export", "--checkpoint", assets["ckpts"][0], "--images", str(tmp_path / "nope.png"),
                 "--overlays", str(out)]) == 2
    assert main(["export", "--checkpoint", assets["ckpts"][0], "--images", assets["photos"][0]]) == 2
    assert "Nothing to export" in capsys.readouterr().err
    assert not out.exists()


def test_split_of_a_dataset_with_limit(assets, tmp_path):
    rows = ["path,label,group,split"] + [f"{p},{Path(p).parent.name},g{i},test" for i, p in enumerate(assets["photos"])]
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", assets["ckpts"][0], "--split", "test", "--data", str(data),
                 "--limit", "2", "--overlays", str(out), "--only", "raw", "--class", "true"]) == 0
    assert len(list(out.glob("*_cam.npy"))) == 2


def test_figure_marks_a_model_at_chance_and_the_sidecar_says_why(assets, tmp_path, capsys, torch_threads):
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    # one model answering "pittsburgh" for all 20 test images (50 %), one right on 19 of 20
    at_chance = {"test": {"confusion": [[10, 0], [10, 0]], "classes": CLASSES, "accuracy": 0.5, "n": 20}}
    good = {"test": {"confusion": [[10, 0], [1, 9]], "classes": CLASSES, "accuracy": 0.95, "n": 20}}
    ckpts = []
    for name, metrics in (("shallow", at_chance), ("resnet18", good)):
        save_checkpoint(tmp_path / name / "best", build_model(name, 2), base_meta(name, CLASSES, SIZE, metrics=metrics))
        ckpts.append(str(tmp_path / name / "best.json"))
    out = tmp_path / "fig.svg"
    assert main(["export", "--checkpoint", *ckpts, "--images", assets["photos"][0], "--figure", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: Shallow CNN: At chance" in err and "ResNet18:" not in err
    svg = out.read_text()
    assert "Shallow CNN (at chance)" in svg and "ResNet18 (at chance)" not in svg
    side = json.loads(ex.sidecar_path(out).read_text())
    verdicts = {m["model"]: m["chance"] for m in side["models"]}
    assert not verdicts["shallow"]["above_chance"] and verdicts["resnet18"]["above_chance"]
    assert verdicts["resnet18"]["p_value"] < 0.001


# --------------------------------------------------------------------------- the comparable (p99) scale
def test_p99_overlays_are_the_viewers_comparable_scale_and_recreate_from_their_sidecar(assets, tmp_path):
    """Each model's map over its own 99th percentile of the reference images, as the viewer's
    'comparable across models' scale draws it (``cam_percentiles`` + ``full_size_maps``)."""
    from geocam_gui.core.explain import render
    from geocam_gui.core.explain.reference import cam_percentiles
    from geocam_gui.core.explain.store import ModelStore, explain_image, full_size_maps

    refs = (*assets["photos"], assets["corrupt"])  # an unreadable reference is skipped and counted
    photo = assets["photos"][0]
    req = ex.ExportRequest("overlays", [ex.ExportImage(photo, "pittsburgh")], assets["ckpts"], str(tmp_path / "a"),
                           ex.ExportOptions(normalize="p99", reference_images=refs, outputs=("overlay", "heatmap")))
    summary = ex.export(req)
    assert len(summary.written) == 4 and not summary.failed
    store = ModelStore("cpu")
    keys = {"shallow": assets["ckpts"][0], "resnet18": assets["ckpts"][1]}
    percentiles = {k: cam_percentiles(c, refs, store)["percentiles"] for k, c in keys.items()}
    viewer = explain_image(photo, keys, store, label="pittsburgh")
    shown = full_size_maps(viewer, "predicted", reference=percentiles)
    for j, key in enumerate(keys):
        written = tmp_path / "a" / f"view_0_{key}.png"
        assert np.array_equal(np.asarray(Image.open(written)), render.overlay(viewer.image, shown[key][1]))
        side = json.loads(Path(str(written) + ".json").read_text())
        ref = side["reference"][0]
        assert side["normalisation"] == "p99" and ref["model_index"] == j
        assert ref["percentiles"] == [float(v) for v in percentiles[key]] and ref["images"] == 3 and ref["skipped"] == 1
        assert side["params"]["reference_images"] == [str(Path(r).absolute()) for r in refs]
    # the sidecar re-creates it byte for byte
    out = tmp_path / "a" / "view_0_resnet18_heatmap.png"
    assert main(["export", "--from-sidecar", str(out) + ".json", "--overlays", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / out.name).read_bytes() == out.read_bytes()


def test_p99_needs_its_reference_images(assets, tiny_demo, tmp_path, capsys):
    base = ["export", "--checkpoint", *assets["ckpts"], "--images", assets["photos"][0], "--overlays", str(tmp_path / "o")]
    assert main([*base, "--normalize", "p99"]) == 2
    assert "--reference DATA" in capsys.readouterr().err
    assert main([*base, "--reference", str(tiny_demo)]) == 2
    assert "--reference goes with --normalize p99" in capsys.readouterr().err
    assert main([*base, "--normalize", "p99", "--reference", str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "o").exists()
    with pytest.raises(BadArgument, match="reference images"):
        ex.plan_export(ex.ExportRequest("overlays", [ex.ExportImage(assets["photos"][0])], assets["ckpts"],
                                        str(tmp_path / "o"), ex.ExportOptions(normalize="p99")))
    # a figure on the viewer's reference sample of a dataset: its colour bar says the scale
    assert main([*base[:5], *assets["photos"], "--figure", str(tmp_path / "f.svg"), "--normalize", "p99",
                 "--reference", str(tiny_demo)]) == 0
    assert "1 = each model's p99" in (tmp_path / "f.svg").read_text()
    side = json.loads((tmp_path / "f.svg.json").read_text())
    assert len(side["reference"]) == 2 and side["params"]["reference_q"] == 99.0
