"""Resumable training: one checkpoint file per run directory, written atomically each epoch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from shoprec.errors import ModelFormatError

__all__ = ["CHECKPOINT_NAME", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_NAME = "last.pt"


def save_checkpoint(directory: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to directory/last.pt atomically (a crash never leaves half a file)."""
    path = Path(directory) / CHECKPOINT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The payload of directory/last.pt, or None when there is none. Tensors load on the CPU."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which
        raise ModelFormatError(f"{path}: not a shoprec training checkpoint ({exc}).") from exc
