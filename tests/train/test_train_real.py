"""A few training steps on real ``wv3-longmont`` patches reduce the loss (dataset built into a temporary
cache from ``dgsamples`` by the session fixture ``wv3_longmont``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from binsharp.data import PanDataset
from binsharp.train.engine import train

pytest.importorskip("dgsamples")


def _l1(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(ms=batch["ms"], lms=batch["lms"], pan=batch["pan"])
    return float(nn.functional.l1_loss(pred, batch["gt"]))


def test_few_steps_reduce_the_loss_on_wv3_longmont(wv3_longmont, tmp_path):
    model, steps = "pnn", 10
    fixed = {k: v[:32] for k, v in PanDataset(wv3_longmont / "val.h5").data.items()}  # 32 held-out patches
    config = {
        "recipe": {"batch_size": 8, "lr": 1e-3, "scheduler": "none", "val_every": 0},
        "data": {"val_batch_size": 16, "val_max_batches": 1},
    }
    torch.manual_seed(0)
    from binsharp.models import create

    before = _l1(create(model, bands=8), fixed)  # the run's initialisation (seed 0)
    res = train(model, wv3_longmont, out=tmp_path / "run", config=config, max_steps=steps, progress=False)
    after = _l1(res.model, fixed)
    assert after < 0.9 * before, (before, after)
    val = res.val["main"]
    assert 0 < val["q2n"] <= 1 and 0 < val["sam"] < 90 and val["ergas"] > 0
    assert res.meta["sensor"] == "WV3" and res.meta["bits"] == 11 and res.meta["bands"] == 8
    assert res.meta["data_manifest"]["name"] == "wv3-longmont"
