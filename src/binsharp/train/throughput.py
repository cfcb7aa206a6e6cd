"""Time training steps of a model outside the engine (throughput benchmarks, sizing a step budget).

One step is what the engine does per batch without data loading: ``zero_grad``, forward under the chosen
precision, L1 loss in float32, ``backward``, ``Adam.step``. On CUDA the step waits for the device before it
is timed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

__all__ = ["PRECISIONS", "training_stepper", "measure_steps_per_second"]

#: Precisions of :func:`training_stepper` (Lightning's names).
PRECISIONS = ("32-true", "bf16-mixed")


def training_stepper(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    target: Tensor,
    *,
    device: str | torch.device = "cpu",
    precision: str = "32-true",
    channels_last: bool = False,
    compile: bool = False,
    lr: float = 1e-4,
) -> Callable[[], float]:
    """A function running one optimisation step of ``model`` on ``batch`` (``ms``, ``lms``, ``pan``, model
    inputs, normalised) against ``target`` (B, C, H, W) and returning its wall time in seconds.

    Args:
        model: moved to ``device`` (and to channels-last when asked), put in train mode.
        device: torch device.
        precision: ``"32-true"`` or ``"bf16-mixed"`` (forward under bf16 autocast, float32 weights).
        channels_last: model and 4-D inputs in the channels-last memory format.
        compile: run the forward through ``torch.compile`` (default inductor backend); the first steps
            include the compilation.
        lr: Adam learning rate.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=fmt).train()  # type: ignore[call-overload]
    inputs = {k: v.to(dev).contiguous(memory_format=fmt) for k, v in batch.items() if k != "gt"}
    target = target.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    forward = torch.compile(model) if compile else model
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def autocast() -> contextlib.AbstractContextManager:
        if precision == "bf16-mixed":
            return torch.autocast(dev.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step() -> float:
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast():
            pred = forward(**inputs)
        loss = nn.functional.l1_loss(pred.float(), target)
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - t0

    return step


def measure_steps_per_second(step: Callable[[], float], seconds: float, *, warmup: int = 2) -> float:
    """Steps per second of ``step`` over about ``seconds`` of timed steps (at least 3) after ``warmup``."""
    for _ in range(warmup):
        step()
    total, n = 0.0, 0
    while n < 3 or total < seconds:
        total += step()
        n += 1
    return n / total
