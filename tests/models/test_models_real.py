"""Every registered network learns on real data: a few optimiser steps on ``wv3-longmont`` training
patches reduce its L1 loss on those patches (the session fixture ``wv3_longmont`` builds the dataset)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from binsharp.data import PanDataset
from binsharp.models import create, list_models
from binsharp.nn import clip_latent_weights


@pytest.fixture(scope="module")
def real_batch(wv3_longmont) -> dict[str, torch.Tensor]:
    """Four real training patches (normalised), cropped to their top-left 16 x 16 to keep the test fast:
    ms (4,8,4,4), lms/gt (4,8,16,16), pan (4,1,16,16)."""
    data = PanDataset(wv3_longmont / "train.h5").data
    size = {"ms": 4, "lms": 16, "pan": 16, "gt": 16}
    return {k: v[:4, :, : size[k], : size[k]].clone() for k, v in data.items()}


def _loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    pred = model(ms=batch["ms"], lms=batch["lms"], pan=batch["pan"])
    return nn.functional.l1_loss(pred, batch["gt"])


@pytest.mark.parametrize("name", list_models())
def test_few_steps_reduce_the_loss_on_real_patches(name, real_batch):
    torch.manual_seed(0)
    model = create(name, bands=8)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-5)
    model.train()  # batch statistics throughout, so BatchNorm's running averages do not enter the comparison
    with torch.no_grad():
        before = float(_loss(model, real_batch))
    for _ in range(24):
        optimiser.zero_grad()
        _loss(model, real_batch).backward()
        optimiser.step()
        clip_latent_weights(model)
    with torch.no_grad():
        after = float(_loss(model, real_batch))
    assert after < before, (name, before, after)
