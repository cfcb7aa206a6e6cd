"""Training engine options for accelerators: bf16 autocast, channels-last, pinned batches (CUDA tests are
marked ``gpu`` and skipped without a CUDA device; the CPU tests check that the switches reach Lightning and
the model)."""

from __future__ import annotations

import pytest
import torch
from test_train import TINY, make_h5

from binsharp.train.engine import train
from binsharp.train.recipe import build_run_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-gpu")
    return {"train": make_h5(d / "train.h5", 16), "val": make_h5(d / "val.h5", 4, seed=1)}


def test_accelerator_switches_are_run_config_keys():
    cfg = build_run_config(None, {"trainer": {"precision": "bf16-mixed", "channels_last": True}})
    assert cfg.trainer["precision"] == "bf16-mixed" and cfg.trainer["channels_last"] is True
    assert cfg.trainer["deterministic"] is None and cfg.data["pin_memory"] is None


def test_channels_last_trains_and_keeps_the_layout(tiny, tmp_path):
    cfg = {**TINY, "model": {}, "trainer": {"channels_last": True}, "data": {"pin_memory": False}}
    res = train("bbcu", tiny["train"], out=tmp_path / "run", val_data=tiny["val"], config=cfg, max_steps=3,
                progress=False)  # fmt: skip
    w = res.model.head.weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    assert res.steps == {"main": 3} and res.val["main"]["q2n"] > 0


@pytest.mark.parametrize("model", ["pnn", "bbcu", "bisrnet"])
def test_bf16_autocast_on_cpu_trains(tiny, tmp_path, model):
    """bf16 autocast through the custom autograd functions (signs, RPReLU) of the binary units."""
    arch = {"channels": 8} if model == "pnn" else {"dim": 8}
    cfg = {**TINY, "model": arch, "trainer": {"precision": "bf16-mixed"}}
    res = train(model, tiny["train"], out=tmp_path / "run", config=cfg, max_steps=3, progress=False)
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # mixed: float32 master weights
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["bbcu", "bisrnet", "pnn"])
def test_cuda_bf16_channels_last_pinned(tiny, tmp_path, model):
    cfg = {
        **TINY,
        "model": {"channels": 8} if model == "pnn" else {},
        "trainer": {"accelerator": "gpu", "precision": "bf16-mixed", "channels_last": True},
    }
    res = train(model, tiny["train"], out=tmp_path / "run", val_data=tiny["val"], config=cfg, max_steps=5,
                progress=False)  # fmt: skip
    assert res.steps == {"main": 5}
    assert 0 < res.val["main"]["q2n"] <= 1
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
