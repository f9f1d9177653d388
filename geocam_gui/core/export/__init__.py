"""Exports for publications: Grad-CAM overlays and publication figures, each with a provenance sidecar.

Two kinds of export, both planned first and then run (so every argument is checked and every
clash with an existing file found before anything is written):

* **overlays** (``ExportRequest(kind="overlays", destination=FOLDER)``): for every image and
  every checkpoint, up to three files at the photo's *native* resolution:
  ``<stem>_<model>.png`` (or ``.tif``: the heat map blended over the photo with the chosen
  colormap and opacity, DPI metadata set), ``<stem>_<model>_heatmap.png`` (the heat map alone,
  RGBA, alpha following the value so cold areas are transparent) and ``<stem>_<model>_cam.npy``
  (the raw map for the explained class, float32 at the layer's resolution, before any ReLU or
  normalisation). A ``summary.json`` in the folder lists what was written, skipped and failed.
* **figure** (``kind="figure"``, ``destination=FILE.pdf|.svg|.png``): the grid of
  ``export.figure`` (photos in rows, one column per model).

The CAM is computed on the photo squashed to the checkpoint's ``image_size`` (as in training)
and mapped back onto the whole photo by a bilinear resize to its native size. Normalisation is
the viewer's (``explain.store``, the one explanation path: an overlay is ``render.overlay`` of
``full_size_maps``, pixel for pixel what the viewer draws): ``per_map`` = ReLU then min-max of
each map, ``shared`` = ReLU then one scale for all models and classes of an image.

Every output ``FILE`` gets ``FILE.json`` beside it (``SIDECAR_FORMAT``): the sources with their
SHA-256, the checkpoints with theirs, layer, method, class, normalisation, colormap, opacity,
sizes, versions, date and the exact export parameters (``params``). An output whose sidecar
matches the planned parameters and the current files' hashes is up to date and skipped; any
other existing file is a conflict, never overwritten unless asked. ``export_from_sidecar``
re-creates an output byte for byte from its sidecar. Files are written to a temporary name in
the same folder and renamed (``core.files``), so a failure (full disk, no permission) leaves no
partial file.

Modules, in the order a request goes through them: ``request`` (the request, plan and summary
types, option and checkpoint checks, hashing), ``plan`` (output names, parameters, up-to-date /
conflict status), ``run`` (explaining through ``explain.store`` and writing), ``sidecar`` (the
provenance record and re-creating a request from it), ``figure`` (the figure grid).
"""

from geocam_gui.core.export.plan import plan_export
from geocam_gui.core.export.request import (
    CLASS_PREDICTED, CLASS_TRUE, MAX_DPI, MAX_FIGURE_ROWS, MIN_DPI, MODEL_OUTPUTS, NORMALIZATIONS, OVERLAY_FORMATS,
    SIDECAR_FORMAT, SUMMARY_NAME, ExportImage, ExportOptions, ExportPlan, ExportRequest, ExportSummary,
    ExportWriteError, ModelInfo, Target, chance_warnings, column_title, file_sha256, normalize_class_choice,
    read_models,
)
from geocam_gui.core.export.run import export, export_from_sidecar, run_export
from geocam_gui.core.export.sidecar import read_sidecar, request_from_sidecar, sidecar_path

__all__ = [
    "CLASS_PREDICTED", "CLASS_TRUE", "MAX_DPI", "MAX_FIGURE_ROWS", "MIN_DPI", "MODEL_OUTPUTS", "NORMALIZATIONS",
    "OVERLAY_FORMATS", "SIDECAR_FORMAT", "SUMMARY_NAME", "ExportImage", "ExportOptions", "ExportPlan",
    "ExportRequest", "ExportSummary", "ExportWriteError", "ModelInfo", "Target", "chance_warnings", "column_title",
    "export", "export_from_sidecar",
    "file_sha256", "normalize_class_choice", "plan_export", "read_models", "read_sidecar", "request_from_sidecar",
    "run_export", "sidecar_path",
]
