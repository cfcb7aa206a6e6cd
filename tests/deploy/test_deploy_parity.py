"""Parity of the packed engine with PyTorch for every binary network of the zoo, with its zoo weights, on a
real WorldView-3 tile (the first reduced-resolution test tile of ``wv3-longmont``, 128 x 128 PAN): (a) fed
PyTorch's binarization decisions the engine reproduces PyTorch to 1e-3 DN, (b) every first-generation sign
flip lies within the tie band, (c) Q2n (absolute), SAM and ERGAS (relative) agree to 1e-3."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from binsharp import models, zoo
from binsharp.deploy import kernels as K
from binsharp.deploy.export import lower_model
from binsharp.deploy.parity import TIE_BAND, compare
from binsharp.deploy.runtime import Engine

pytestmark = pytest.mark.skipif(not K.have_kernels(), reason="compiled kernels not built")

DATASET = "wv3-longmont"
BINARY = sorted(
    m for m, e in zoo.read_manifest()["checkpoints"].get(DATASET, {}).items() if e["kind"] == "binary"
)


@pytest.fixture(scope="module")
def tile(wv3_longmont) -> dict[str, np.ndarray]:
    from binsharp.data.io import read_h5, read_h5_attrs

    path = wv3_longmont / "test_rr.h5"
    dn = float(2 ** int(read_h5_attrs(path)["bits"]) - 1)
    a = read_h5(path, dtype=np.float32)
    return {k: a[k][:1] / np.float32(dn) for k in ("ms", "lms", "pan")} | {
        "gt": a["gt"][0].astype(np.float64)
    }


def test_every_binary_network_of_the_zoo_is_covered():
    assert len(BINARY) >= 11 and {"s2bnet", "bnnpan", "bisrnet", "bbcu"} <= set(BINARY)


@pytest.mark.parametrize("name", BINARY)
def test_zoo_parity_on_real_tile(name, tile):
    torch.set_num_threads(1)
    m = models.create(name, pretrained=DATASET)
    inputs = {k: v for k, v in tile.items() if k in m.inputs}
    p = compare(m, Engine(lower_model(m), threads=1), inputs, tile["gt"])
    # (a) decision-forced parity
    assert p.forced_max_diff <= 1e-3, f"{name}: forced engine differs by {p.forced_max_diff:.3g} DN"
    # (b) first-generation flips are rounding ties
    for f in p.flips:
        assert f.in_tie_band, (
            f"{name}: binary conv {f.layer}: {f.count} flipped decisions up to |x| = {f.max_abs_pre:.3g}, "
            f"outside the tie band {TIE_BAND:.3g} * {f.scale:.3g}"
        )
    # (c) quality indexes of the free-running engine
    t, e = p.torch_indexes, p.engine_indexes
    assert abs(e["q2n"] - t["q2n"]) <= 1e-3, (name, t, e)
    for k in ("sam", "ergas"):
        assert abs(e[k] - t[k]) <= 1e-3 * abs(t[k]), (name, k, t, e)
