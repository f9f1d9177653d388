"""What the window says about a training run while it goes on and when it ends (no widgets).

``RunTracker`` follows one run of the training panel (the queue of configs, the child's messages)
and words its state for the places that show it: each model's pane ("VGG11 is training — epoch
2/6, val accuracy 71 %", "ResNet18 is waiting to train (3rd of 3)"), the status bar and the
outcome ("finished", "cancelled during epoch k", "failed"). One object decides all of them, so
the panes, the panel and the status bar never disagree.
"""

from __future__ import annotations

from geocam_gui.core.models import MODEL_LABELS


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _names(models: list[str]) -> str:
    labels = [MODEL_LABELS.get(m, m) for m in models]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


class RunTracker:
    """The state of one training run: ``running`` -> ``cancelling`` -> ``finished`` /
    ``cancelled`` / ``failed``."""

    def __init__(self, configs: list):
        self.configs = {c.model: c for c in configs}
        self.queue = [c.model for c in configs]
        self.current: str | None = self.queue[0] if self.queue else None  # the child starts it first
        self.epoch: dict[str, int] = {}  # 1-based epoch in progress
        self.val_acc: dict[str, float] = {}  # of the last complete epoch
        self.done: list[str] = []
        self.failed: dict[str, str] = {}
        self.state = "running"
        self.paused = False
        self.outcome = ""

    # ---------------------------------------------------------------- the child's messages
    def model_started(self, name: str) -> None:
        self.current = name

    def on_event(self, name: str, event) -> bool:
        """Follow an engine event; True when a pane's words change."""
        from geocam_gui.core.train import events as ev

        if isinstance(event, ev.Start):
            self.current, self.epoch[name] = name, event.start_epoch + 1
            return True
        if isinstance(event, ev.Batch) and self.epoch.get(name) != event.epoch:
            self.epoch[name] = event.epoch
            return True
        if isinstance(event, ev.Epoch):
            self.val_acc[name] = float(event.val_acc)
            self.epoch[name] = min(event.epoch + 1, event.epochs)
            return True
        return False

    def model_finished(self, name: str) -> None:
        self.done.append(name)
        self._advance(name)

    def model_failed(self, name: str, message: str) -> None:
        self.failed[name] = message
        self._advance(name)

    def _advance(self, name: str) -> None:
        if self.current == name:
            rest = [m for m in self.queue if m not in self.done and m not in self.failed]
            self.current = rest[0] if rest else None

    # ---------------------------------------------------------------- words
    def epochs_of(self, name: str) -> int:
        return int(self.configs[name].epochs)

    def pane_note(self, name: str) -> str | None:
        """What ``name``'s pane says while the run goes on (None: nothing, show the truth)."""
        if self.state not in ("running", "cancelling") or name not in self.queue:
            return None
        if name in self.done or name in self.failed:
            return None
        label = MODEL_LABELS.get(name, name)
        if name == self.current:
            if self.state == "cancelling":
                return f"{label}: cancelling the training…"
            return f"{label} is training — {self._progress(name)}"
        pos = self.queue.index(name) + 1
        return f"{label} is waiting to train ({ordinal(pos)} of {len(self.queue)})."

    def _progress(self, name: str) -> str:
        epoch = self.epoch.get(name)
        text = f"epoch {epoch}/{self.epochs_of(name)}" if epoch else "preparing the data"
        if name in self.val_acc:
            text += f", val accuracy {self.val_acc[name] * 100:.0f} %"
        return text

    def status_text(self) -> str:
        """One line for the status bar while the run goes on."""
        if self.state == "cancelling":
            return "Cancelling the training…"
        name = self.current
        if name is None:
            return "Training: finishing…"
        pos = self.queue.index(name) + 1
        where = f"{MODEL_LABELS.get(name, name)} ({pos} of {len(self.queue)}) — {self._progress(name)}"
        return f"Training paused: {where}." if self.paused else f"Training {where}"

    # ---------------------------------------------------------------- the end
    def cancelling(self) -> None:
        if self.state == "running":
            self.state = "cancelling"

    def end(self, ok: bool, stopped: tuple | None, elapsed: str) -> str:
        """Close the run (``stopped``: (model, epoch, forced) when it was cancelled); returns the
        outcome sentence."""
        if stopped is not None or self.state == "cancelling":
            self.state = "cancelled"
            model, epoch = stopped[:2] if stopped else (self.current, self.epoch.get(self.current or ""))
            label = MODEL_LABELS.get(model, model) if model else "the run"
            if model is None or model in self.done:
                text = "Training cancelled between models."
            elif epoch is None:
                text = f"Training cancelled before {label} began its first epoch."
            elif epoch <= 1:
                text = f"Training cancelled during epoch 1 of {label}; no epoch of it had finished, so it has no new checkpoint."
            else:
                text = (f"Training cancelled during epoch {epoch} of {label}; "
                        "the last complete epoch's checkpoint is kept (the run can be resumed).")
            if self.done:
                text += f" {_names(self.done)} finished before."
        elif self.failed or not ok:
            self.state = "failed"
            failed = "; ".join(f"{MODEL_LABELS.get(m, m)}: {msg}" for m, msg in self.failed.items())
            text = f"Training failed ({failed or 'the training process ended unexpectedly'})."
            if self.done:
                text += f" {_names(self.done)} trained."
        else:
            self.state = "finished"
            text = f"Training finished: {_names(self.done or self.queue)} trained in {elapsed}."
        self.outcome = text
        return text
