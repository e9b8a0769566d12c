"""Progress saved to a file (--state-file) by the CLI's commands: written whole or not at all (a
temporary file renamed over it), so a kill -9 at any moment leaves the last state or the one before."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from .errors import StateError

M = TypeVar("M", bound=BaseModel)


def load_state(path: Path, model: type[M], what: str = "tablesync state") -> M | None:
    if not path.exists():
        return None
    try:
        return model.model_validate_json(path.read_text())
    except (OSError, ValueError):
        raise StateError(f"cannot read state file {path}: not a {what}") from None


def save_state(path: Path, state: BaseModel) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(state.model_dump_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
