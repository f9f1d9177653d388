"""The Export dialog: overlays of the current image, a figure of the selection, or a whole split.

A thin front end to ``core.export``: the dialog collects the choices, plans the export in a
worker thread (hashing sources and checkpoints can take a moment), asks before replacing
existing files, then runs the export in a worker with a progress bar and Cancel, and shows the
summary (files written, up to date, images skipped) at the end. It never leaves a thread
running: closing it cancels the work and waits for the thread.

Tests answer the overwrite question without a message box through ``overwrite_answer``
(True/False) or ``start_export(overwrite=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QMessageBox,
    QWidget,
)

from geocam_gui.core import export as ex
from geocam_gui.core import paths
from geocam_gui.core.models import MODEL_LABELS
from geocam_gui.ui.export_form import BATCH, CURRENT, FIGURE, FIGURE_FORMAT_CHOICES, OVERLAY_FORMAT_CHOICES, build_form
from geocam_gui.ui.workers import TaskWorker


_FOLDER_KEYS = {CURRENT: "export/folder", FIGURE: "export/figure_folder", BATCH: "export/batch_folder"}


class ExportDialog(QDialog):
    """Export overlays, figures and batches with provenance sidecars.

    ``checkpoints``: pane name -> checkpoint path (None: no model in that pane).
    ``images``: (path, ground-truth label or None) of the current selection.
    ``batch_samples``: optionally the samples of the split on screen (objects with ``path`` and
    ``label``, e.g. ``core.datasets.Sample``) for a batch export.
    """

    exportFinished = Signal(object)  # ExportSummary

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        checkpoints: dict[str, str | None] | None = None,
        images: Sequence[tuple[str, str | None]] | None = None,
        batch_samples: list | None = None,
        class_choice: str = "predicted",
        method: str = "gradcam",
        cmap: str = "jet",
        opacity: float = 0.5,
        scale: str = "per_map",
        reference_images: Sequence[str] = (),
    ):
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setObjectName("exportDialog")
        self.setMinimumWidth(540)
        self.checkpoints = {k: v for k, v in (checkpoints or {}).items() if v}
        self.images = [(str(p), lbl) for p, lbl in (images or [])]
        self.batch_samples = list(batch_samples or [])
        #: The viewer's reference sample (``reference.reference_samples`` of the open dataset): the
        #: images the "p99" scale takes each model's 99th percentile over, as the viewer does.
        self.reference_images = tuple(str(p) for p in reference_images)
        #: None: ask with a message box before replacing files; True/False: answer without asking.
        self.overwrite_answer: bool | None = None
        self.last_summary: ex.ExportSummary | None = None
        self.last_error: str | None = None
        self._worker: TaskWorker | None = None
        self._overwrite: bool | None = None
        self._partial: ex.ExportSummary | None = None
        self._closing = False
        #: True from start_export until its outcome is handled: also between the plan's end and the export's start.
        self._busy = False
        self._request: ex.ExportRequest | None = None
        self._settings = QSettings()
        self._classes = self._read_classes()
        first = Path(self.images[0][0]).stem if self.images else "figure"
        current = self._remembered(CURRENT) or paths.export_dir()
        figure_dir = self._remembered(FIGURE) or current
        self._dest = {CURRENT: str(current), FIGURE: str(figure_dir / f"{first}_gradcam.pdf"),
                      BATCH: str(self._remembered(BATCH) or current / "batch")}
        self._mode = CURRENT
        self._build(class_choice, method, cmap, opacity, scale)
        self._set_mode(CURRENT if self.images else (BATCH if self.batch_samples else CURRENT))
        self._update_enabled()

    # -- construction ---------------------------------------------------------------------
    def _remembered(self, mode: str) -> Path | None:
        """The folder last chosen for ``mode`` (settings are untrusted: anything but an absolute
        path is ignored)."""
        value = self._settings.value(_FOLDER_KEYS[mode])
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            return None
        path = Path(value.strip()).expanduser()
        return path if path.is_absolute() else None

    def _read_classes(self) -> list[str]:
        from geocam_gui.core.checkpoints import read_meta
        from geocam_gui.core.errors import GeoCamError

        for path in self.checkpoints.values():
            try:
                return list(read_meta(path).get("classes", []))
            except GeoCamError:
                continue
        return []

    def _build(self, class_choice: str, method: str, cmap: str, opacity: float, scale: str) -> None:
        build_form(self, class_choice, method, cmap, opacity, scale)

    @staticmethod
    def _select(combo: QComboBox, data) -> None:
        i = combo.findData(data)
        if i >= 0:
            combo.setCurrentIndex(i)

    # -- state ------------------------------------------------------------------------------
    def mode(self) -> str:
        """The export chosen: "current", "figure" or "batch"."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Choose what to export ("current", "figure", "batch")."""
        {CURRENT: self.mode_current, FIGURE: self.mode_figure, BATCH: self.mode_batch}[mode].setChecked(True)

    def _set_mode(self, mode: str) -> None:
        self.set_mode(mode)
        self._apply_mode(mode)

    def _on_mode_toggled(self, button, checked: bool) -> None:
        if checked:
            self._apply_mode(button.property("mode"))

    def _apply_mode(self, mode: str) -> None:
        self._mode = mode
        figure = mode == FIGURE
        self.format.blockSignals(True)
        self.format.clear()
        for label, data in (FIGURE_FORMAT_CHOICES if figure else OVERLAY_FORMAT_CHOICES):
            self.format.addItem(label, data)
        if figure:
            self._select(self.format, Path(self._dest[FIGURE]).suffix.lower().lstrip(".") or "pdf")
        self.format.blockSignals(False)
        self.destination.setText(self._dest[mode])
        self.destination_label.setText("File:" if figure else "Folder:")
        self._update_enabled()

    def _on_format_changed(self) -> None:
        if self._mode == FIGURE:
            fmt = self.format.currentData()
            path = Path(self.destination.text() or self._dest[FIGURE])
            self._dest[FIGURE] = str(path.with_suffix("." + fmt))
            self.destination.setText(self._dest[FIGURE])
        self._update_enabled()

    def set_destination(self, path: str) -> None:
        """The folder (overlays, batch) or file (figure) to write, for the current mode."""
        self._dest[self._mode] = str(path)
        self.destination.setText(str(path))
        if self._mode == FIGURE:
            self._select(self.format, Path(path).suffix.lower().lstrip("."))

    def _update_enabled(self) -> None:
        running = self.is_running()
        figure = self._mode == FIGURE
        for w in (self.width, self.width_label, self.predictions):
            w.setVisible(figure)
        self.width_custom.setVisible(figure and self.width.currentData() is None)
        for w in (self.out_overlay, self.out_heatmap, self.out_raw, self.outputs_label):
            w.setVisible(not figure)
        self.export_button.setEnabled(not running and bool(self.checkpoints))
        self.cancel_button.setEnabled(running)
        for w, ok in ((self.mode_current, bool(self.images)), (self.mode_figure, bool(self.images)),
                      (self.mode_batch, bool(self.batch_samples))):
            w.setEnabled(ok and not running)

    def _browse(self) -> None:
        if self._mode == FIGURE:
            path, _ = QFileDialog.getSaveFileName(self, "Save figure as", self.destination.text(),
                                                  "Figures (*.pdf *.svg *.png)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into folder", self.destination.text())
        if path:
            self.set_destination(path)
            self._remember_folder()

    def is_running(self) -> bool:
        """True from ``start_export`` until its outcome is shown (or the dialog closes).

        Also while a finished plan's result waits in the event queue: its thread has ended, but the
        export it leads to has not started yet.
        """
        w = self._worker
        try:
            return self._busy or (w is not None and w.thread.isRunning())
        except RuntimeError:
            return self._busy

    # -- the request --------------------------------------------------------------------------
    def build_request(self) -> ex.ExportRequest:
        """The core request for the dialog's current choices (not yet validated by the core)."""
        mode = self._mode
        if mode == BATCH:
            images = [ex.ExportImage(str(s.path), getattr(s, "label", None)) for s in self.batch_samples]
        else:
            images = [ex.ExportImage(p, lbl) for p, lbl in self.images]
            if mode == FIGURE:
                images = images[: ex.MAX_FIGURE_ROWS]
        outputs = tuple(k for k, box in (("overlay", self.out_overlay), ("heatmap", self.out_heatmap),
                                         ("raw", self.out_raw)) if box.isChecked())
        width = self.width.currentData()
        opts = ex.ExportOptions(
            class_choice=self.class_combo.currentData(), method=self.method.currentData(),
            cmap=self.cmap.currentData(), opacity=self.opacity.value() / 100.0,
            normalize=self.scale.currentData(), dpi=self.dpi.value(),
            reference_images=self.reference_images if self.scale.currentData() == "p99" else (),
            overlay_format=self.format.currentData() if mode != FIGURE else "png", outputs=outputs,
            width_in=float(width if width is not None else self.width_custom.value()),
            show_predictions=self.predictions.isChecked(),
        )
        ordered = sorted(self.checkpoints.items(), key=lambda kv: list(MODEL_LABELS).index(kv[0])
                         if kv[0] in MODEL_LABELS else len(MODEL_LABELS))
        return ex.ExportRequest(
            kind="figure" if mode == FIGURE else "overlays", images=images,
            checkpoints=[path for _name, path in ordered], destination=self.destination.text().strip(),
            options=opts, write_summary=mode == BATCH or len(images) > 1,
        )

    # -- running ------------------------------------------------------------------------------
    def start_export(self, overwrite: bool | None = None) -> bool:
        """Plan the export in a worker, then (after the overwrite question) run it.

        ``overwrite``: None asks (or uses ``overwrite_answer``); True/False answers directly.
        Returns False when nothing was started (already running, nothing to export).
        """
        if self.is_running():
            return False
        self._closing = False
        if not self.checkpoints:
            self._show_error("No trained model to explain yet.")
            return False
        if not self.destination.text().strip():
            self._show_error("Choose where to write the export.")
            return False
        request = self.build_request()
        if not request.images:
            self._show_error("There are no images to export.")
            return False
        self._request = request
        self.last_summary = None
        self.last_error = None
        self._partial = None
        self.summary_text.hide()
        self.status.setText("Checking sources and existing files…")
        self.progress.setRange(0, 0)
        self._overwrite = overwrite
        self._busy = True
        self._run_worker("export-plan", lambda progress, cancelled: ex.plan_export(
            request, progress=lambda d, t: progress(d, t, "checking"), cancel=cancelled), self._on_planned)
        return True

    def _run_worker(self, name: str, fn, on_finished) -> None:
        worker = TaskWorker(name, fn, self)
        worker.progress.connect(self._on_progress)
        worker.returned.connect(on_finished)
        worker.errored.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        worker.thread.finished.connect(self._update_enabled)
        self._worker = worker
        worker.start()
        self._update_enabled()

    def _on_progress(self, done: int, total: int, _text: str) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _on_planned(self, plan: ex.ExportPlan) -> None:
        overwrite = self._overwrite
        if self._worker is not None:
            self._worker.wait(5000)  # its thread is finishing; let it end before the next starts
            if self._closing or self._worker.is_cancelled():  # cancelled or closed while planning
                self._on_cancelled()
                return
        conflicts = plan.conflicts
        if conflicts:
            answer = overwrite if overwrite is not None else self.overwrite_answer
            if answer is None:
                answer = self._ask_overwrite(conflicts)
            if not answer:
                self._set_idle()
                self.progress.setRange(0, 1)
                self.progress.setValue(0)
                self.status.setText("Nothing was written: the existing files were kept.")
                return
        self._remember()
        total = len(plan.request.images) + (1 if plan.request.kind == "figure" else 0)
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(0)
        self.status.setText("Exporting…")
        do_overwrite = bool(conflicts)

        def job(progress, cancelled):
            summary = ex.run_export(plan, overwrite=do_overwrite, progress=lambda d, t: progress(d, t, ""),
                                    cancel=cancelled)
            self._partial = summary
            return summary

        self._partial = None
        self._run_worker("export", job, self._on_exported)

    def _ask_overwrite(self, files: list[Path]) -> bool:
        listing = "\n".join(str(f) for f in files[:8]) + (f"\n… and {len(files) - 8} more" if len(files) > 8 else "")
        box = QMessageBox(QMessageBox.Icon.Question, "Replace existing files?",
                          f"{len(files)} file(s) already exist and were not written by this same export. "
                          "Replace them?", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDetailedText(listing)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        return box.exec() == QMessageBox.StandardButton.Yes

    def _set_idle(self) -> None:
        self._busy = False
        self._update_enabled()

    def _on_exported(self, summary: ex.ExportSummary) -> None:
        self._set_idle()
        self._show_summary(summary)

    def _on_cancelled(self) -> None:
        self._set_idle()
        summary = self._partial
        if summary is not None:
            self._show_summary(summary)
        else:
            self.status.setText("Export cancelled.")
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _show_summary(self, summary: ex.ExportSummary) -> None:
        self.last_summary = summary
        head = "Export cancelled. " if summary.cancelled else "Export finished. "
        self.status.setText(head + summary.text().splitlines()[0] + f" Destination: {summary.destination}")
        self.summary_text.setPlainText(summary.text() + ("\n" + "\n".join(summary.written[:200]) if summary.written else ""))
        self.summary_text.show()
        self.progress.setValue(self.progress.maximum())
        self.exportFinished.emit(summary)

    def _on_failed(self, message: str) -> None:
        self._set_idle()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._show_error(message)

    def _show_error(self, message: str) -> None:
        self.last_error = message
        self.status.setText(f"<span style='color:#b3261e'>{message}</span>")

    def _remember(self) -> None:
        self._remember_folder()
        self._settings.setValue("export/dpi", self.dpi.value())

    def _remember_folder(self) -> None:
        """Keep the folder chosen for this kind of export (a figure's: the file's folder) for the
        next dialog; the first choice of any kind also becomes the overlays' default."""
        text = self.destination.text().strip()
        if not text:
            return
        path = Path(text).expanduser().absolute()
        folder = path.parent if self._mode == FIGURE else path
        self._settings.setValue(_FOLDER_KEYS[self._mode], str(folder))
        if self._remembered(CURRENT) is None:
            self._settings.setValue(_FOLDER_KEYS[CURRENT], str(folder if self._mode != BATCH else folder.parent))

    def cancel_export(self) -> None:
        """Ask the running plan or export to stop (between images)."""
        if self._worker is not None and self.is_running():
            self._worker.cancel()
            self.status.setText("Cancelling after the current image…")

    # -- closing: never leave the thread running ---------------------------------------------
    def _stop_worker(self) -> None:
        self._closing = True
        w = self._worker
        if w is not None:
            w.cancel()
            w.wait(60000)
        self._busy = False  # a plan's result still queued finds _closing set and starts nothing

    def done(self, result: int) -> None:  # accept(), reject() and the close button end here
        self._stop_worker()
        super().done(result)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._stop_worker()
        super().closeEvent(event)
