"""Where trained triage models live: ``<data dir>/assist/triage-<version>.pkl``, and
``current.json`` naming the one in use. With none, the seed model (``assist/model.py``) answers.

The files are the project's own (written 0600 in the private data directory, ``datadir.py``) and
read only from there: nothing is downloaded, ever.
"""

from __future__ import annotations

import json
import pickle
from functools import cache
from pathlib import Path

from assist.model import TriageModel, seed_model
from datadir import write_private
from settings import get_settings


def model_dir(data_dir: Path | None = None) -> Path:
    path = Path(data_dir or get_settings().data_dir) / "assist"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def save(model: TriageModel, data_dir: Path | None = None) -> Path:
    """Write the model under its version and make it the current one."""
    folder = model_dir(data_dir)
    path = folder / f"triage-{model.version}.pkl"
    path.touch(mode=0o600)
    path.write_bytes(pickle.dumps(model))
    write_private(folder / "current.json", json.dumps({"version": model.version}) + "\n")
    _cached.cache_clear()
    return path


def current_version(data_dir: Path | None = None) -> str | None:
    """The version of the trained model in use (None: the seed model)."""
    pointer = model_dir(data_dir) / "current.json"
    if not pointer.exists():
        return None
    return str(json.loads(pointer.read_text())["version"])


def load(data_dir: Path | None = None) -> TriageModel:
    """The current trained model, else the seed model (trained once per process)."""
    return _cached(str(model_dir(data_dir)), current_version(data_dir))


@cache
def _cached(folder: str, version: str | None) -> TriageModel:
    if version is None:
        return seed_model()
    model: TriageModel = pickle.loads((Path(folder) / f"triage-{version}.pkl").read_bytes())
    return model
