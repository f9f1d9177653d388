"""Writing tensors in the safetensors format ourselves: streamed from the tensors' memory, into
a file we created (so its mode is the umask's, which ``safetensors.torch.save_file`` - it renames
its own 0600 temporary over the path - does not give)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from geocam_gui.core import validate
from geocam_gui.core.errors import CheckpointError

_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
              torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def write_tensor_file(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> int:
    """Write CPU tensors to ``path`` in the safetensors format, streamed from the tensors' own memory
    (no serialised copy in RAM), then fsync; returns the bytes written.

    ``path`` is meant to be a temporary name (``temp_beside``) that the caller then renames with
    ``commit_file``. The layout follows the safetensors specification: an 8-byte little-endian header
    length, a JSON header (dtype, shape, data offsets, ``__metadata__``) padded to 8 bytes, the data.
    """
    import struct
    import sys

    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    flat = []
    offset = 0
    for name, t in tensors.items():
        if t.device.type != "cpu" or t.dtype not in _ST_DTYPES:
            raise CheckpointError(f"Cannot store tensor {name!r} ({t.dtype} on {t.device}) in a checkpoint.")
        data = t.detach().contiguous().reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
        if sys.byteorder != "little" and t.element_size() > 1:
            raise CheckpointError("Checkpoints are written in little-endian order only.")
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + data.numel()]}
        offset += data.numel()
        flat.append(data)
    head = validate.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)))
        fh.write(head)
        for data in flat:
            if data.numel():
                fh.write(memoryview(data.numpy()))
        fh.flush()
        os.fsync(fh.fileno())
    return 8 + len(head) + offset
