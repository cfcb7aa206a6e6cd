"""Two-process DDP on CPU (gloo) through ``torchrun``: both ranks end with identical, trained weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch

from binsharp.data.io import write_h5
from binsharp.models import create, load_checkpoint
from binsharp.train.engine import weights_digest


def test_ddp_two_processes_agree(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.uniform(200, 1800, size=(8, 4, 16, 16))
    ms = gt.reshape(8, 4, 4, 4, 4, 4).mean(axis=(3, 5))
    data = write_h5(tmp_path / "train.h5", {"gt": gt, "ms": ms, "lms": np.kron(ms, np.ones((4, 4))),
                    "pan": gt.mean(1, keepdims=True)}, {"sensor": "QB", "bits": 11, "ratio": 4})  # fmt: skip
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {channels: 8}\nrecipe: {batch_size: 2, lr: 1.0e-3}\n")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "binsharp.cli", "train", "--model", "pnn", "--data", str(data), "--config", str(cfg),
           "--out", str(out), "--max-steps", "3", "--accelerator", "cpu", "--devices", "2",
           "--strategy", "ddp",
           "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sync = json.loads((out / "stages/01-main/ddp_sync.json").read_text())
    assert sync["world_size"] == 2
    assert len(sync["digests"]) == 2 and sync["digests"][0] == sync["digests"][1]
    model, meta = load_checkpoint(out / "model.safetensors")
    assert weights_digest(model) == sync["digests"][0]  # rank 0 exported the weights both ranks hold
    assert meta["step"] == 3
    torch.manual_seed(0)
    assert weights_digest(create("pnn", bands=4, channels=8)) != sync["digests"][0]  # it trained
