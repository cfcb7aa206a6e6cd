"""Run a (multi-stage) training recipe with Lightning: resumable stages, logs, safe final checkpoint.

Run directory layout (``out``)::

    run.json                       resolved run: model, data, stages, seed (written when the run starts)
    model.safetensors, model.json  the final model (binsharp checkpoint, see binsharp.weights)
    stages/01-<name>/
        checkpoints/last.ckpt      resumable Lightning checkpoint (every ``ckpt_every`` steps)
        logs/metrics.csv           per-stage CSV log (train/loss, train/lr, val/q2n, val/sam, val/ergas, ...);
                                   a resumed stage keeps the rows logged before its checkpoint
        logs/events.*              TensorBoard events, when tensorboard is installed
        weights.safetensors        the weights at the end of the stage (marks the stage as done)
        ddp_sync.json              under DDP: each rank's weight digest at the end of the stage

Resume (``resume=True``): stages with ``weights.safetensors`` are skipped (their weights are loaded), the
first unfinished stage continues from its ``last.ckpt`` (weights, optimiser, scheduler, step, torch RNG
state and the position in the data order restored: the result equals that of an uninterrupted run), later
stages run normally. Without ``resume`` the run
directory must not exist or be empty.

Distributed training uses Lightning's DDP: ``devices``/``num_nodes``/``strategy="ddp"``. Either let
Lightning start the processes (``binsharp train ... --devices 4 --strategy ddp``) or launch one process per
device with ``torchrun --nproc_per_node 4 -m binsharp.cli train ... --devices 4 --strategy ddp``. Only global
rank 0 writes the run directory; every rank reads it on ``--resume``, so on several nodes it must be on shared
storage. ``batch_size`` is per process. Local rank 0 of each node builds a catalog dataset when needed, the
other ranks wait for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger

from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output
from binsharp.progress import show_progress
from binsharp.train.data import DataInfo, PanDataModule, resolve_data
from binsharp.train.recipe import DEFAULT_RUN, RunConfig, Stage, build_run_config, deep_merge, packaged_config
from binsharp.train.resume import SafeCheckpointIO, load_resume_checkpoint
from binsharp.train.task import PanSharpeningTask
from binsharp.weights import load_state, read_meta, save_checkpoint

log = logging.getLogger(__name__)


class _DropAdverts(logging.Filter):
    """Drop Lightning's advertising tips from the console output (all other messages pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())

RUN_FILE = "run.json"
FINAL_NAME = "model.safetensors"
STAGE_WEIGHTS = "weights.safetensors"


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        out: run directory.
        checkpoint: path of the final ``model.safetensors``.
        model: the trained model (eval mode).
        meta: the checkpoint metadata.
        stages: the stages that were run (resolved).
        steps: optimiser steps per stage name.
        val: last validation indexes per stage name (``loss``, ``q2n``, ``sam``, ``ergas``), when validated.
    """

    out: Path
    checkpoint: Path
    model: torch.nn.Module
    meta: dict[str, Any]
    stages: list[Stage]
    steps: dict[str, int] = field(default_factory=dict)
    val: dict[str, dict[str, float]] = field(default_factory=dict)


def is_global_zero_process() -> bool:
    """Whether this process is global rank 0 (True outside distributed launches)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    return int(os.environ.get("NODE_RANK", 0) or 0) == 0 and int(os.environ.get("LOCAL_RANK", 0) or 0) == 0


def _wait_for_named_dataset(data: str | Path, timeout_s: float = 6 * 3600.0) -> None:
    """On a non-zero local rank, wait until local rank 0 has built the named dataset ``data`` (if it is one).

    Every process of a DDP launch runs :func:`train`; only local rank 0 may build a catalog dataset in the
    cache, the others wait for the complete build (no process group exists yet at this point).
    """
    if int(os.environ.get("LOCAL_RANK", 0) or 0) == 0:
        return
    from binsharp.data import catalog

    name = str(data).strip().lower()
    if name not in catalog.list_datasets() or Path(str(data)).exists():
        return
    start = time.monotonic()
    while not catalog.is_built(name):
        if time.monotonic() - start > timeout_s:
            raise BinsharpError(f"timed out waiting for dataset {name} to be built by local rank 0")
        time.sleep(2.0)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's state dict (names, dtypes, shapes and raw bytes, in order)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class WeightSyncCheck(Callback):
    """Under DDP, check at the end of training that every rank holds the same weights.

    Gathers :func:`weights_digest` from all ranks; rank 0 writes ``{"world_size", "digests"}`` to ``path``
    (when given) and every rank raises :class:`BinsharpError` if the digests differ.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (
            trainer.world_size < 2
            or not torch.distributed.is_available()
            or not torch.distributed.is_initialized()
        ):
            return
        digest = weights_digest(pl_module.model)  # type: ignore[arg-type]
        digests: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(digests, digest)
        if trainer.is_global_zero and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(
                json.dumps({"world_size": trainer.world_size, "digests": digests}, indent=2) + "\n",
                encoding="utf-8",
            )
        if len(set(digests)) != 1:
            raise BinsharpError(f"DDP ranks ended with different weights: {digests}")


class StderrProgressBar(TQDMProgressBar):
    """Lightning's progress bar drawn on stderr, so that stdout holds only the results."""

    def init_sanity_tqdm(self) -> Any:
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_sanity_tqdm()

    def init_train_tqdm(self) -> Any:
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_train_tqdm()

    def init_validation_tqdm(self) -> Any:
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_validation_tqdm()


def _loggers(stage_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(save_dir=str(stage_dir), name="logs", version="")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loggers.append(
                TensorBoardLogger(save_dir=str(stage_dir), name="logs", version="", default_hp_metric=False)
            )
    except (ImportError, ModuleNotFoundError):
        pass
    return loggers


def _csv_log_path(stage_dir: Path) -> Path:
    return stage_dir / "logs" / "metrics.csv"


def _stash_csv_log(stage_dir: Path) -> Path | None:
    """Before resuming a stage, move its CSV log aside (Lightning's CSV logger would delete it)."""
    path = _csv_log_path(stage_dir)
    if not path.is_file():
        stash = path.with_name("metrics.before-resume.csv")
        return stash if stash.is_file() else None  # left by an earlier resume that was interrupted
    stash = path.with_name("metrics.before-resume.csv")
    if stash.is_file():  # an earlier resume was interrupted before merging: merge it first
        _merge_csv_log(stage_dir, stash, None)
    os.replace(path, stash)
    return stash


def _merge_csv_log(stage_dir: Path, earlier: Path, resume_step: int | None) -> None:
    """Write ``metrics.csv`` = the earlier rows logged before ``resume_step`` + the rows of this attempt.

    Rows the interrupted attempt logged at or after the resumed step are dropped: the resumed run logs them
    again. ``resume_step=None`` keeps every earlier row.
    """
    import csv

    path = _csv_log_path(stage_dir)

    def rows_of(p: Path) -> tuple[list[dict[str, str]], list[str]]:
        if not p.is_file():
            return [], []
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader), list(reader.fieldnames or [])

    old, old_keys = rows_of(earlier)
    new, new_keys = rows_of(path)

    def step_of(row: dict[str, str]) -> float:
        try:
            return float(row.get("step") or 0)
        except ValueError:
            return 0.0

    if resume_step is not None:
        old = [r for r in old if step_of(r) < resume_step]
    keys = sorted(set(old_keys) | set(new_keys), key=lambda k: (k not in ("epoch", "step"), k))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(old + new)
    earlier.unlink()


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _layers(
    model: str,
    data: str | Path | None,
    config: str | Path | Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
) -> list[dict]:
    """The configuration layers, lowest first: the packaged ``configs/<model>-<dataset>.yaml`` of the data
    (``data``, else the ``data.name`` of the other layers), ``config``, ``overrides``."""
    from binsharp.train.recipe import read_config

    layers: list[dict[str, Any]] = []
    if isinstance(config, Mapping):
        layers.append(dict(config))
    elif config is not None:
        layers.append(read_config(config))
    layers.append(dict(overrides))
    if data is None:
        names = [(layer.get("data") or {}).get("name") for layer in layers]
        data = next((n for n in reversed(names) if n), None)
    return [packaged_config(model, data), *layers]


def _check_resume(out: Path, run: Mapping[str, Any]) -> None:
    saved_path = out / RUN_FILE
    if not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BinsharpError(f"cannot resume: {saved_path} is corrupt ({exc})") from exc
    for key in ("model", "model_config", "data"):
        if saved.get(key) != run.get(key):
            raise BinsharpError(
                f"cannot resume {out}: it was started with {key}={saved.get(key)!r}, now {run.get(key)!r}"
            )
    old = [s["name"] for s in saved.get("config", {}).get("stages", [])]
    new = [s["name"] for s in run["config"]["stages"]]
    if old != new:
        raise BinsharpError(f"cannot resume {out}: its stages are {old}, the recipe now has {new}")


def train(
    model: str,
    data: str | Path | None,
    *,
    out: str | Path,
    config: str | Path | Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    stage_overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
    resume: bool = False,
    accelerator: str | None = None,
    devices: int | str | None = None,
    num_nodes: int | None = None,
    strategy: str | None = None,
    val_data: str | Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train model ``model`` on dataset ``data`` following its recipe; write the run directory ``out``.

    Args:
        model: registered model name (``binsharp.models.list_models()``).
        data: dataset name (e.g. ``"wv3-longmont"``, built on first use), dataset directory, or a
            PanCollection h5 file (reduced resolution, with ``gt``).
        out: run directory (see the module docstring).
        config: run configuration: YAML file path or mapping (see :mod:`binsharp.train.recipe`), merged over
            the packaged ``configs/<model>-<dataset>.yaml`` and the model's default recipe.
        max_steps: total optimiser steps, shared by the stages in proportion to their own steps.
        stage_overrides: recipe settings forced in every stage (e.g. ``{"lr": 1e-4, "batch_size": 8}``).
        seed: overrides the config's seed.
        resume: continue an interrupted run in ``out``.
        accelerator, devices, num_nodes, strategy: Lightning trainer settings (override ``trainer`` config).
        val_data: validation h5 file (default: the dataset's ``val`` split; none for a bare h5 file).
        progress: show the progress bar.
        callbacks: extra Lightning callbacks added to every stage.

    Returns:
        A :class:`TrainResult`. Raises :class:`BinsharpError` for bad input (unknown model, missing data,
        bad config, an existing run directory without ``resume``, an unsafe resume checkpoint).
    """
    from binsharp import models

    out = Path(out)
    rank_zero = is_global_zero_process()
    overrides: dict[str, Any] = {"trainer": {}}
    if seed is not None:
        overrides["seed"] = int(seed)
    for key, value in (
        ("accelerator", accelerator),
        ("devices", devices),
        ("num_nodes", num_nodes),
        ("strategy", strategy),
    ):
        if value is not None:
            overrides["trainer"][key] = value
    layers = _layers(model, data, config, overrides)
    pre = DEFAULT_RUN
    for layer in layers:
        pre = deep_merge(pre, {k: v for k, v in layer.items() if k != "recipe"})
    dcfg = pre["data"]
    if data is None:
        data = dcfg.get("name")
    if data is None:
        raise BinsharpError("no training data: pass --data NAME|PATH or set data.name in the config")
    _wait_for_named_dataset(data)
    info = resolve_data(
        data,
        val=val_data if val_data is not None else dcfg.get("val"),
        bits=dcfg.get("bits"),
        sensor=dcfg.get("sensor"),
    )
    run_seed = int(pre["seed"])
    L.seed_everything(run_seed, workers=True, verbose=False)
    kwargs = dict(pre.get("model") or {})
    kwargs.pop("bands", None)
    net = models.create(model, bands=info.bands, **kwargs)
    recipe = (
        net.default_recipe()
        if callable(getattr(net, "default_recipe", None))
        else getattr(net, "recipe", None)
    )
    cfg: RunConfig = build_run_config(recipe, *layers, max_steps=max_steps, stage_overrides=stage_overrides)
    run_record = {
        "model": model,
        "model_config": json.loads(json.dumps(getattr(net, "config", {}), default=str)),
        "data": str(data),
        "data_info": {
            "train": str(info.train),
            "val": str(info.val) if info.val else None,
            "bands": info.bands,
            "bits": info.bits,
            "ratio": info.ratio,
            "sensor": info.sensor,
        },
        "config": cfg.to_dict(),
    }
    if rank_zero:
        if out.exists() and any(out.iterdir()):
            if not resume:
                raise BinsharpError(
                    f"run directory {out} exists and is not empty (pass --resume to continue it)"
                )
            _check_resume(out, run_record)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / RUN_FILE, run_record)

    tcfg = cfg.trainer
    vcfg = cfg.validation
    result = TrainResult(out=out, checkpoint=out / FINAL_NAME, model=net, meta={}, stages=cfg.stages)
    total = 0
    trainable_at_start = {n: p.requires_grad for n, p in net.named_parameters()}
    base_meta = {
        "sensor": info.sensor,
        "bits": info.bits,
        "ratio": info.ratio,
        "data_manifest": info.manifest,
        "recipe": [s.to_dict() for s in cfg.stages],
        "seed": cfg.seed,
    }
    for stage in cfg.stages:
        stage_dir = out / "stages" / stage.dirname
        done = stage_dir / STAGE_WEIGHTS
        if resume and done.is_file():
            meta = read_meta(done)
            net.load_state_dict(load_state(done), strict=True)
            result.steps[stage.name] = int(meta.get("stage_steps", stage.steps))
            if meta.get("val"):
                result.val[stage.name] = meta["val"]
            total = int(meta.get("step", total + stage.steps))
            log.info("stage %s already done (%d steps): skipped", stage.name, result.steps[stage.name])
            continue
        ckpt_path = None
        resume_step = 0
        last = stage_dir / "checkpoints" / "last.ckpt"
        if resume and last.is_file():
            # refuses unsafe or corrupt files with a clear message
            resume_step = int(load_resume_checkpoint(last)["global_step"])
            ckpt_path = str(last)
        steps_done, val = _run_stage(
            net,
            stage,
            info,
            cfg,
            stage_dir,
            ckpt_path=ckpt_path,
            resume_step=resume_step,
            base_step=total,
            progress=progress,
            callbacks=callbacks,
            trainable_at_start=trainable_at_start,
            tcfg=tcfg,
            vcfg=vcfg,
        )
        total += steps_done
        result.steps[stage.name] = steps_done
        if val:
            result.val[stage.name] = val
        if rank_zero:
            save_checkpoint(
                done,
                net,
                {**base_meta, "step": total, "stage": stage.name, "stage_steps": steps_done, "val": val},
                overwrite=True,
            )
    for name, p in net.named_parameters():
        p.requires_grad_(trainable_at_start[name])
    net.eval()
    final_meta = {**base_meta, "step": total, "stages": result.steps, "val": result.val}
    if rank_zero:
        save_checkpoint(result.checkpoint, net, final_meta, overwrite=True)
        result.meta = read_meta(result.checkpoint)
    else:
        result.meta = final_meta
    return result


def stage_teacher(net: torch.nn.Module, stage: Stage, info: DataInfo) -> torch.nn.Module | None:
    """The frozen teacher of a stage's ``distill`` setting (None without one): ``float_twin`` = ``net`` with
    its quantizers removed, as it is at the start of the stage; ``zoo:<model>[/<dataset>]`` = a zoo
    checkpoint (dataset default: the training data's name); anything else = a checkpoint file."""
    if stage.distill is None:
        return None
    name = stage.distill["teacher"]
    if name == "float_twin":
        from binsharp.models import strip_quantizers

        return strip_quantizers(net)
    if name.startswith("zoo:"):
        from binsharp.models import load_pretrained

        model, _, dataset = name[4:].partition("/")
        dataset = dataset or str(info.manifest.get("name") or "")
        return load_pretrained(model, dataset, bands=info.bands)[0]
    from binsharp.models import load_checkpoint

    return load_checkpoint(name)[0]


def _run_stage(
    net: torch.nn.Module,
    stage: Stage,
    info: DataInfo,
    cfg: RunConfig,
    stage_dir: Path,
    **kwargs: Any,
) -> tuple[int, dict[str, float]]:
    """Fit one stage (see :func:`_fit_stage`); a ``float_twin`` stage trains ``net`` with its quantizers
    removed."""
    if stage.float_twin:
        from binsharp.models import quantizers_removed

        with quantizers_removed(net):
            return _fit_stage(net, stage, info, cfg, stage_dir, **kwargs)
    return _fit_stage(net, stage, info, cfg, stage_dir, **kwargs)


def _fit_stage(
    net: torch.nn.Module,
    stage: Stage,
    info: DataInfo,
    cfg: RunConfig,
    stage_dir: Path,
    *,
    ckpt_path: str | None,
    resume_step: int,
    base_step: int,
    progress: bool,
    callbacks: Sequence[Callback],
    trainable_at_start: Mapping[str, bool],
    tcfg: Mapping[str, Any],
    vcfg: Mapping[str, Any],
) -> tuple[int, dict[str, float]]:
    L.seed_everything(cfg.seed + stage.index, workers=True, verbose=False)
    accelerator = str(tcfg.get("accelerator", "cpu"))
    on_cpu = accelerator == "cpu"
    pin = cfg.data.get("pin_memory")
    deterministic = tcfg.get("deterministic")
    dm = PanDataModule(
        info,
        batch_size=stage.batch_size,
        val_batch_size=cfg.data.get("val_batch_size"),
        num_workers=int(cfg.data.get("num_workers") or 0),
        seed=cfg.seed + stage.index,
        augment=bool(cfg.data.get("augment", False)),
        pin_memory=(not on_cpu) if pin is None else bool(pin),
    )
    task = PanSharpeningTask(
        net,
        stage,
        bits=info.bits,
        ratio=info.ratio,
        val_metrics=bool(vcfg.get("metrics", True)),
        val_block=int(vcfg.get("block", 32)),
        val_dim_cut=int(vcfg.get("dim_cut", 0)),
        base_step=base_step,
        trainable_at_start=trainable_at_start,
        channels_last=bool(tcfg.get("channels_last", False)),
        teacher=stage_teacher(net, stage, info),
    )
    has_val = info.val is not None
    val_every = stage.val_every if stage.val_every > 0 else stage.steps
    cbs: list[Callback] = [
        ModelCheckpoint(
            dirpath=str(stage_dir / "checkpoints"),
            filename="step-{step}",
            every_n_train_steps=max(1, stage.ckpt_every or stage.steps),
            save_top_k=1,
            save_last=True,
            auto_insert_metric_name=False,
        ),
        WeightSyncCheck(stage_dir / "ddp_sync.json"),
        *([StderrProgressBar()] if show_progress(progress) else []),
        *callbacks,
    ]
    vmax = cfg.data.get("val_max_batches")
    trainer = L.Trainer(
        max_steps=stage.steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=tcfg.get("devices", 1),
        num_nodes=int(tcfg.get("num_nodes", 1)),
        strategy=tcfg.get("strategy", "auto"),
        precision=tcfg.get("precision", "32-true"),
        deterministic=(on_cpu or "warn") if deterministic is None else deterministic,
        gradient_clip_val=stage.grad_clip,
        gradient_clip_algorithm="norm" if stage.grad_clip else None,
        check_val_every_n_epoch=None,
        val_check_interval=val_every,
        limit_val_batches=(int(vmax) if vmax else 1.0) if has_val else 0,
        num_sanity_val_steps=0,
        logger=_loggers(stage_dir),
        callbacks=cbs,
        enable_progress_bar=show_progress(progress),
        enable_model_summary=False,
        log_every_n_steps=max(1, int(tcfg.get("log_every", 10))),
        plugins=[SafeCheckpointIO()],
        default_root_dir=str(stage_dir),
        benchmark=False,
        use_distributed_sampler=False,  # EpochSampler shards by rank itself
    )
    earlier_log = _stash_csv_log(stage_dir) if ckpt_path and is_global_zero_process() else None
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            # the task's on_after_batch_transfer (channels-last batches) is the one meant to run
            warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
            # validation indexes are reduced across ranks explicitly (on_validation_epoch_end)
            warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
            warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
            # resume: the sampler is positioned by the restored step (EpochSampler), the log merged afterwards
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
            warnings.filterwarnings(
                "ignore", message=".*Experiment logs directory .* exists and is not empty.*"
            )
            trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
            if trainer.interrupted:
                raise BinsharpError(f"stage {stage.name!r} was interrupted; rerun with --resume to continue")
            # spawn-based strategies train in child processes: the main process keeps step 0
            spawned = trainer.global_step == 0 and trainer.state.finished
            steps_done = stage.steps if spawned else int(trainer.global_step)
            validated = getattr(task, "last_val_step", None) == trainer.global_step or (
                spawned and stage.steps % val_every == 0
            )
            if has_val and not validated:
                trainer.validate(task, datamodule=dm, verbose=False)
    finally:  # Trainer(deterministic=True) switches torch to deterministic algorithms process-wide
        torch.use_deterministic_algorithms(deterministic_before)
        if earlier_log is not None:
            _merge_csv_log(stage_dir, earlier_log, resume_step)
    val = dict(getattr(task, "last_val", {}) or {})
    if not val:  # ddp_spawn: the task of the main process did not validate; use the reduced metrics
        val = {k[4:]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return steps_done, val
