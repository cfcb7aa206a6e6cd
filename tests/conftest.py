"""Shared fixtures: the conformance vectors (skipped cleanly when ``../shared`` is absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("BINSHARP_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
CONFORMANCE = SHARED / "conformance"


def _require_conformance() -> Path:
    if not (CONFORMANCE / "expected.json").is_file():
        pytest.skip(f"conformance vectors not found at {CONFORMANCE}")
    return CONFORMANCE


@pytest.fixture(scope="session")
def conformance_expected() -> dict:
    """``expected.json``: reference indexes per case and fused array."""
    return json.loads((_require_conformance() / "expected.json").read_text())


@pytest.fixture(scope="session")
def conformance_case():
    """Loader ``conformance_case(name) -> dict of arrays`` (stored dtypes).

    Cases: ``rr_wv3``, ``rr_4b``, ``fr_wv3``, ``fr_4b``.
    """
    root = _require_conformance()
    cache: dict[str, dict[str, np.ndarray]] = {}

    def load(name: str) -> dict[str, np.ndarray]:
        if name not in cache:
            with np.load(root / f"{name}.npz") as z:
                cache[name] = {k: z[k] for k in z.files}
        return cache[name]

    return load


@pytest.fixture(scope="session")
def wv3_longmont(tmp_path_factory) -> Path:
    """Directory of the ``wv3-longmont`` dataset, built once per session from ``dgsamples`` into a
    temporary cache (``BINSHARP_CACHE`` set only while building)."""
    pytest.importorskip("dgsamples")
    from binsharp.data import catalog

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BINSHARP_CACHE", str(cache))
        return Path(catalog.build("wv3-longmont", progress=False))


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``gpu`` when no CUDA device is present."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
