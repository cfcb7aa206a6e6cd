"""The Lightning module that trains one stage of a pan-sharpening model, and the model hook protocol.

Batches are the dicts of :class:`binsharp.data.PanDataset` stacked by the default collate: ``ms``
(B,C,h,w), ``lms`` (B,C,H,W), ``pan`` (B,1,H,W) and ``gt`` (B,C,H,W), float32 normalised (DN / (2**bits-1)).

Model hooks (all optional)
--------------------------
The engine calls these methods when a model (or, where said, any of its submodules) defines them:

``training_loss(batch, stage) -> Tensor | dict[str, Tensor] | None``
    Replaces the default loss ``stage.criterion()(model(ms=, lms=, pan=), gt)``. ``stage`` is the
    :class:`~binsharp.train.recipe.Stage` being trained (``stage.name``, ``stage.index``, ``stage.options``,
    ``stage.criterion()``). Return the scalar loss, or a dict with the scalar under ``"loss"`` plus other
    scalars that are logged as ``train/<key>``; ``None`` falls back to the default loss.
``validation_output(batch, stage) -> Tensor``
    The (B,C,H,W) normalised prediction used for validation (default: ``model(ms=, lms=, pan=)``).
``on_stage_start(stage)`` / ``on_stage_end(stage)``
    Called on the model when a stage starts (also when it resumes from a checkpoint) and after its last
    step, on every rank.
``after_optimizer_step()``
    Called after every optimiser step, on the model *and on every submodule* that defines it. Latent-weight
    clipping (:func:`binsharp.nn.clip_latent_weights`, for BNN weights declaring ``latent_clip``) always runs
    right after the step, before these hooks.
``set_progress(epoch, total)``
    Called before every step, on the model and every submodule that defines it (through
    :func:`binsharp.nn.set_progress`), with ``(step, stage.steps)``: the schedules (IR-Net's EDE, ...)
    depend on ``epoch / total`` only, so training progress is measured in steps, stage-relative.

A stage's ``hooks`` setting adds model methods by dotted name per event, e.g.
``hooks: {on_stage_start: [prior.freeze_encoder], after_optimizer_step: [clamp_scales]}``; they are called
with the event's arguments (``stage`` for the stage events, nothing for ``after_optimizer_step``).

Trainable parameters: at the start of a stage, a parameter is trainable when its name matches the stage's
``trainable`` patterns and none of its ``frozen`` patterns, and it was trainable before the first stage
(parameters a model creates with ``requires_grad=False`` stay fixed). Only trainable parameters are given
to the optimiser. Modules matching ``eval_modules`` are kept in eval mode during training.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.sensors import max_dn
from binsharp.train.recipe import Stage

_INPUTS = ("ms", "lms", "pan")


def _resolve_attr(model: nn.Module, dotted: str) -> Any:
    obj: Any = model
    for part in dotted.split("."):
        if not hasattr(obj, part):
            raise BinsharpError(f"model {getattr(model, 'model_name', '?')!r} has no hook {dotted!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BinsharpError(f"hook {dotted!r} of model {getattr(model, 'model_name', '?')!r} is not callable")
    return obj


class PanSharpeningTask(L.LightningModule):
    """Train ``model`` for one :class:`Stage`: loss, optimiser, schedule, hooks, validation indexes.

    Args:
        model: a binsharp model (``forward(*, ms, lms, pan) -> (B,C,H,W)``, inputs normalised).
        stage: the stage to train.
        bits: radiometric depth of the data; outputs are de-normalised by ``2**bits - 1`` for the indexes.
        ratio: PAN/MS resolution ratio (for ERGAS).
        val_metrics: compute Q2n, SAM and ERGAS on the validation batches (else only the validation loss).
        val_block: Q2n block size (must not exceed the patch side; 32 for 64x64 patches).
        val_dim_cut: border (pixels) removed before computing the indexes (toolbox ``dim_cut``); 0 for
            small patches such as the 64x64 validation patches (the toolbox's 21 would leave 23x23 pixels).
        base_step: optimiser steps done before this stage.
        trainable_at_start: ``requires_grad`` of each parameter before any stage changed it (default: as
            now); parameters False here are never trained.
        channels_last: keep the model and the 4-D batch tensors in the channels-last memory format (the
            values are unchanged; convolutions on GPUs, especially in bf16, run faster in it).
        teacher: frozen full-precision network for the stage's ``distill`` setting (kept out of the
            checkpoints; moved to the training device at the start).

    Logged: ``train/loss`` (and hook-returned scalars), ``train/lr``, ``val/loss``, ``val/q2n``, ``val/sam``
    (degrees), ``val/ergas``, averaged over the validation images (across ranks under DDP).
    """

    def __init__(
        self,
        model: nn.Module,
        stage: Stage,
        *,
        bits: int = 11,
        ratio: int = 4,
        val_metrics: bool = True,
        val_block: int = 32,
        val_dim_cut: int = 0,
        base_step: int = 0,
        trainable_at_start: Mapping[str, bool] | None = None,
        channels_last: bool = False,
        teacher: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.channels_last = bool(channels_last)
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model  # type: ignore[call-overload]
        self.stage = stage
        self.bits = int(bits)
        self.ratio = int(ratio)
        self.val_metrics = bool(val_metrics)
        self.val_block = int(val_block)
        self.val_dim_cut = int(val_dim_cut)
        self.base_step = int(base_step)
        self._criterion = stage.criterion()
        if stage.distill is not None and teacher is None:
            raise BinsharpError(f"stage {stage.name!r} distills but no teacher was given")
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self._val_sums: dict[str, float] = {}
        self._val_count = 0
        self._initially_trainable = dict(
            trainable_at_start
            if trainable_at_start is not None
            else {n: p.requires_grad for n, p in model.named_parameters()}
        )
        self.apply_trainable()

    # ------------------------------------------------------------------ stage set-up
    def apply_trainable(self) -> list[str]:
        """Set ``requires_grad`` from the ``trainable``/``frozen`` patterns; return the trained names."""
        names = []
        for name, p in self.model.named_parameters():
            on = self._initially_trainable.get(name, True) and self.stage.is_trainable(name)
            p.requires_grad_(on)
            if on:
                names.append(name)
        if not names:
            raise BinsharpError(
                f"stage {self.stage.name!r}: no parameter is trainable (trainable={self.stage.trainable}, "
                f"frozen={self.stage.frozen})"
            )
        return names

    def _call_hooks(self, event: str, *args: Any) -> None:
        for dotted in self.stage.hooks.get(event, []):
            _resolve_attr(self.model, dotted)(*args)

    def _apply_eval_modules(self) -> None:
        if not self.stage.eval_modules:
            return
        for name, module in self.model.named_modules():
            if name and any(fnmatch.fnmatchcase(name, p) for p in self.stage.eval_modules):
                module.eval()

    # ------------------------------------------------------------------ lightning hooks
    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:  # type: ignore[override]
        """Normalised prediction (B,C,H,W) for a batch dict holding ``ms``, ``lms``, ``pan``."""
        return self.model(**{k: batch[k] for k in _INPUTS if k in batch})

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not self.channels_last or not isinstance(batch, Mapping):
            return batch
        return {
            k: v.contiguous(memory_format=torch.channels_last)
            if isinstance(v, Tensor) and v.dim() == 4
            else v
            for k, v in batch.items()
        }

    def on_fit_start(self) -> None:
        if self._teacher:
            self._teacher[0].to(self.device)

    def on_train_start(self) -> None:
        fn = getattr(self.model, "on_stage_start", None)
        if callable(fn):
            fn(self.stage)
        self._call_hooks("on_stage_start", self.stage)

    def on_train_end(self) -> None:
        fn = getattr(self.model, "on_stage_end", None)
        if callable(fn):
            fn(self.stage)
        self._call_hooks("on_stage_end", self.stage)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        from binsharp.nn import set_progress

        self._apply_eval_modules()
        set_progress(self.model, float(min(self.global_step, self.stage.steps)), float(self.stage.steps))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if "gt" not in batch:
            raise BinsharpError("training data has no 'gt': train on a reduced-resolution split")
        out: Any = None
        hook = getattr(self.model, "training_loss", None)
        if callable(hook):
            out = hook(batch, self.stage)
        extras: dict[str, Tensor] = {}
        if self._teacher:
            if out is not None:
                raise BinsharpError(
                    f"stage {self.stage.name!r}: distill does not combine with the model's own training_loss"
                )
            loss, extras = self._distilled_loss(batch)
        elif out is None:
            loss = self._criterion(self(batch), batch["gt"])
        elif isinstance(out, Mapping):
            if "loss" not in out:
                raise BinsharpError("training_loss returned a dict without 'loss'")
            loss = out["loss"]
            extras = {k: v for k, v in out.items() if k != "loss"}
        else:
            loss = out
        if not torch.isfinite(loss.detach()):
            raise BinsharpError(
                f"stage {self.stage.name!r}: loss is {loss.item()} at step {self.global_step} "
                "(lower the learning rate or enable grad_clip)"
            )
        bs = batch["gt"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k, v in extras.items():
            self.log(f"train/{k}", v, batch_size=bs)
        opt = self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None
        if opt is not None:
            self.log("train/lr", float(opt.param_groups[0]["lr"]), batch_size=bs)
        return loss

    def _distilled_loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Task loss + ``weight`` * L1 to the teacher's output (+ ``feature_weight`` * L1 between the ``body``
        outputs of student and teacher)."""
        d = self.stage.distill or {}
        teacher = self._teacher[0]
        feats: dict[str, Tensor] = {}
        handles = []
        if d["feature_weight"] > 0:
            for key, net in (("student", self.model), ("teacher", teacher)):
                body = getattr(net, "body", None)
                if not isinstance(body, nn.Module):
                    raise BinsharpError(f"feature distillation needs a 'body' module in the {key} network")
                handles.append(body.register_forward_hook(lambda m, i, o, k=key: feats.__setitem__(k, o)))
        try:
            pred = self(batch)
            with torch.no_grad():
                target = teacher(**{k: batch[k] for k in _INPUTS if k in batch})
        finally:
            for h in handles:
                h.remove()
        task = self._criterion(pred, batch["gt"])
        kd = nn.functional.l1_loss(pred, target)
        loss = task + d["weight"] * kd
        extras = {"task_loss": task.detach(), "distill": kd.detach()}
        if handles:
            if feats["student"].shape != feats["teacher"].shape:
                raise BinsharpError(
                    f"feature distillation: body outputs {tuple(feats['student'].shape)} (student) and "
                    f"{tuple(feats['teacher'].shape)} (teacher) differ"
                )
            feat = nn.functional.l1_loss(feats["student"], feats["teacher"].detach())
            loss = loss + d["feature_weight"] * feat
            extras["distill_feature"] = feat.detach()
        return loss, extras

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Run the optimiser step, then latent clipping and the ``after_optimizer_step`` hooks."""
        optimizer.step(closure=optimizer_closure)
        from binsharp.nn import clip_latent_weights

        clip_latent_weights(self.model)
        for m in self.model.modules():
            fn = getattr(m, "after_optimizer_step", None)
            if callable(fn):
                fn()
        self._call_hooks("after_optimizer_step")

    def configure_optimizers(self) -> Any:
        s = self.stage
        params = [p for p in self.model.parameters() if p.requires_grad]
        cls = torch.optim.Adam if s.optimizer == "adam" else torch.optim.AdamW
        optimizer = cls(params, lr=s.lr, betas=s.betas, weight_decay=s.weight_decay)

        def schedule(step: int) -> float:
            if s.warmup_steps and step < s.warmup_steps:
                return (step + 1) / s.warmup_steps
            t = step - s.warmup_steps
            if s.scheduler == "step":
                return s.gamma ** (t // s.step_size)
            if s.scheduler == "multistep":
                return s.gamma ** sum(1 for m in s.milestones if step >= m)
            if s.scheduler == "cosine":
                span = max(1, s.steps - s.warmup_steps)
                frac = min(1.0, t / span)
                floor = s.eta_min / s.lr
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the torch RNG states (CPU, and CUDA when in use), so that a resumed run draws the same
        random numbers as an uninterrupted one."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["binsharp_rng"] = rng

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("binsharp_rng", {})
        state = rng.get("torch")
        if isinstance(state, Tensor):
            torch.set_rng_state(state.to(torch.uint8).cpu())
        cuda = rng.get("cuda")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8).cpu() for s in cuda])

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_sums = {}
        self._val_count = 0

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        hook = getattr(self.model, "validation_output", None)
        pred = hook(batch, self.stage) if callable(hook) else self(batch)
        gt = batch["gt"]
        n = gt.shape[0]
        sums = {"loss": float(self._criterion(pred, gt).detach()) * n}
        if self.val_metrics:
            scale = float(max_dn(self.bits))
            fused = pred.detach().double().cpu().numpy() * scale
            ref = gt.detach().double().cpu().numpy() * scale
            for i in range(n):
                for key, value in self.reference_indexes(fused[i], ref[i]).items():
                    sums[key] = sums.get(key, 0.0) + value
        for k, v in sums.items():
            self._val_sums[k] = self._val_sums.get(k, 0.0) + v
        self._val_count += n

    def reference_indexes(self, fused: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Q2n, SAM (degrees) and ERGAS of one (C,H,W) DN image against its reference, by
        :mod:`binsharp.metrics` (toolbox-exact). With ``val_dim_cut == 0`` the three indexes are computed
        directly (no border cut); otherwise through :func:`binsharp.metrics.reduced_resolution`."""
        from binsharp import metrics

        if self.val_dim_cut:
            m = metrics.reduced_resolution(
                fused, gt, ratio=self.ratio, bits=self.bits, block=self.val_block, dim_cut=self.val_dim_cut
            )
            return {k: float(m[k]) for k in ("q2n", "sam", "ergas")}
        if min(gt.shape[-2:]) < self.val_block:
            raise BinsharpError(
                f"validation patches {gt.shape[-2]}x{gt.shape[-1]} are smaller than the Q2n block "
                f"{self.val_block}: set validation.block in the config"
            )
        return {
            "q2n": float(metrics.q2n(gt, fused, self.val_block)),
            "sam": float(metrics.sam(gt, fused)),
            "ergas": float(metrics.ergas(gt, fused, self.ratio)),
        }

    def on_validation_epoch_end(self) -> None:
        if self._val_count == 0:
            return
        keys = sorted(self._val_sums)
        vec = torch.tensor([self._val_sums[k] for k in keys] + [float(self._val_count)], dtype=torch.float64)
        if self.trainer.world_size > 1:
            vec = self.trainer.strategy.reduce(vec.to(self.device), reduce_op="sum").cpu()
        count = float(vec[-1])
        for k, total in zip(keys, vec[:-1].tolist(), strict=False):
            value = total / count
            if not np.isfinite(value):
                value = float("nan")
            self.log(f"val/{k}", value, prog_bar=k in ("loss", "q2n"))
        self.last_val = {k: float(t) / count for k, t in zip(keys, vec[:-1].tolist(), strict=False)}
        self.last_val_step = int(self.global_step)
