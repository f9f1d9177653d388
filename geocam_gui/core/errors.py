"""Errors a user can cause. Their message is a sentence a person understands."""

import errno


class GeoCamError(Exception):
    """Something the user can fix: a bad folder, a corrupt file, a wrong checkpoint."""


class BadArgument(GeoCamError):
    """An argument is out of range or inconsistent. The CLI exits with status 2."""


class DataError(GeoCamError):
    """A dataset cannot be used as asked (no images, one class, too few groups...)."""


class ImageError(GeoCamError):
    """An image file cannot be decoded. ``reason`` is short and stable (for audits)."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class CheckpointError(GeoCamError):
    """A checkpoint is missing, corrupt, unsafe or does not fit the model/classes."""


class Cancelled(GeoCamError):
    """Long work was cancelled by the user."""


class WriteError(GeoCamError):
    """A file could not be written (no space left, read-only file system, no permission...)."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Could not write {path}: {reason}.")


class BadData(DataError, BadArgument):
    """A dataset that cannot be used at all: a missing path, no images, a single class.
    Every command exits with status 2 for it, as for any bad argument."""


class BadCheckpoint(CheckpointError, BadArgument):
    """A checkpoint that is missing, or whose metadata is outside GeoCAM's bounded schema
    (a wrong type, an absurd size): status 2, one sentence naming the field and the file."""


_REASONS = {
    errno.ENOSPC: "no space is left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
}


def os_error_reason(exc: OSError) -> str:
    """Why an ``OSError`` happened, in a few lower-case words (``no space is left on the device``)."""
    return _REASONS.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__).rstrip(".").lower()


def os_error_sentence(exc: OSError, where=None) -> str:
    """``Could not write PATH: no space left on the device.`` from an ``OSError`` (``where``: the
    folder being written, for errors that name no file)."""
    reason = os_error_reason(exc)
    path = exc.filename if exc.filename is not None else where
    return f"Could not write {path}: {reason}." if path is not None else f"A file could not be written: {reason}."
