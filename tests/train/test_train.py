"""Training engine: recipes, loss decrease, determinism, resume, validation indexes, multi-stage, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from binsharp.data import PanDataset
from binsharp.data.io import write_h5
from binsharp.errors import BinsharpError
from binsharp.models import PanModel, create, load_checkpoint, register_model
from binsharp.train.engine import train, weights_digest
from binsharp.train.recipe import build_run_config, resolve_stages, scale_steps
from binsharp.weights import load_state, read_meta

TINY = {"model": {"channels": 8}, "recipe": {"batch_size": 4, "lr": 2e-3}, "validation": {"block": 16}}


def make_h5(path: Path, n: int, *, bands: int = 4, size: int = 16, seed: int = 0, bits: int = 11) -> Path:
    """A small reduced-resolution set in PanCollection layout: smooth ``gt``, ``pan`` = band mean, ``ms``
    = 4x4 average of ``gt``, ``lms`` = its bilinear upsampling (DN, within ``2**bits - 1``)."""
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.random((n, bands, size // 4, size // 4)))
    gt = nn.functional.interpolate(base, scale_factor=4, mode="bilinear", align_corners=False).numpy()
    gt = 200 + 1500 * (gt + 0.05 * rng.random(gt.shape))
    ms = nn.functional.avg_pool2d(torch.from_numpy(gt), 4)
    lms = nn.functional.interpolate(ms, scale_factor=4, mode="bilinear", align_corners=False).numpy()
    pan = gt.mean(axis=1, keepdims=True)
    write_h5(
        path, {"gt": gt, "ms": ms.numpy(), "lms": lms, "pan": pan}, {"sensor": "QB", "bits": bits, "ratio": 4}
    )
    return path


@pytest.fixture(scope="module", autouse=True)
def _test_models():
    """Register this module's test networks for its tests only (other modules see the real registry)."""
    from binsharp.models import registry

    register_model("test-hooked", kind="fp")(HookedNet)
    register_model("test-latent", kind="binary")(LatentNet)
    yield
    for name in ("test-hooked", "test-latent"):
        registry._REGISTRY.pop(name, None)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny")
    return {"train": make_h5(d / "train.h5", 16), "val": make_h5(d / "val.h5", 4, seed=1)}


def l1_on(model: nn.Module, path: Path) -> float:
    ds = PanDataset(path)
    batch = {k: v for k, v in ds.data.items()}
    model.eval()
    with torch.no_grad():
        return float(
            nn.functional.l1_loss(model(ms=batch["ms"], lms=batch["lms"], pan=batch["pan"]), batch["gt"])
        )


# ---------------------------------------------------------------------------------------------- recipes
def test_model_recipe_is_resolved_in_the_one_schema():
    stages = resolve_stages(
        {"optimizer": "adam", "lr": 4e-4, "scheduler": "cosine", "eta_min": 1e-6, "steps": 100,
         "batch_size": 16, "loss": "l1", "source": "paper"}
    )  # fmt: skip
    assert len(stages) == 1
    s = stages[0]
    assert (s.name, s.scheduler, s.eta_min, s.lr, s.steps, s.batch_size) == (
        "main",
        "cosine",
        1e-6,
        4e-4,
        100,
        16,
    )
    step = resolve_stages({"scheduler": "step", "step_size": 10, "gamma": 0.1})[0]
    assert (step.scheduler, step.step_size, step.gamma) == ("step", 10, 0.1)
    for other_spelling in ({"schedule": "cosine"}, {"min_lr": 1e-6}, {"scheduler": {"name": "cosine"}}):
        with pytest.raises(BinsharpError, match="recipe"):
            resolve_stages(other_spelling)


def test_multistage_merge_and_inheritance():
    base = {
        "lr": 1e-3,
        "steps": 10,
        "stages": [{"name": "I"}, {"name": "II", "lr": 5e-4, "trainable": "b.*"}],
    }
    cfg = build_run_config(base, {"recipe": {"batch_size": 2, "stages": [{"name": "II", "steps": 30}]}})
    a, b = cfg.stages
    assert (a.name, a.lr, a.steps, a.batch_size) == ("I", 1e-3, 10, 2)
    assert (b.name, b.lr, b.steps, b.batch_size, b.trainable) == ("II", 5e-4, 30, 2, ["b.*"])
    assert b.is_trainable("b.weight") and not b.is_trainable("a.weight")
    # a stage list that does not name existing stages replaces them
    cfg = build_run_config(base, {"recipe": {"stages": [{"name": "only", "steps": 3}]}})
    assert [s.name for s in cfg.stages] == ["only"]
    # command-line overrides reach every stage, even stages that set the key themselves
    cfg = build_run_config(base, stage_overrides={"lr": 1e-2})
    assert [s.lr for s in cfg.stages] == [1e-2, 1e-2]


def test_scale_steps_shares_the_budget():
    stages = resolve_stages({"stages": [{"name": "a", "steps": 300}, {"name": "b", "steps": 100}]})
    assert [s.steps for s in scale_steps(stages, 8)] == [6, 2]
    assert [s.steps for s in scale_steps(stages, 1)] == [1, 1]
    assert sum(s.steps for s in scale_steps(stages, 101)) == 101


@pytest.mark.parametrize(
    "recipe, match",
    [
        ({"lr": -1}, "lr must be"),
        ({"optimizer": "sgd"}, "unknown optimizer"),
        ({"scheduler": "poly"}, "unknown scheduler"),
        ({"loss": "l3"}, "unknown loss"),
        ({"stpes": 3}, "unknown recipe key"),
        ({"stages": [{"name": "a"}, {"name": "a"}]}, "unique"),
        ({"hooks": {"on_epoch": ["x"]}}, "unknown hook event"),
        ({"scheduler": "step"}, "step_size"),
    ],
)
def test_bad_recipes_are_refused(recipe, match):
    with pytest.raises(BinsharpError, match=match):
        resolve_stages(recipe)


def test_bad_config_file_is_refused(tmp_path):
    from binsharp.train.recipe import read_config

    p = tmp_path / "c.yaml"
    p.write_text("recipe: {lr: 1e-3}\ntrainr: {}\n")
    with pytest.raises(BinsharpError, match="unknown config key"):
        read_config(p)
    p.write_text("recipe: [unclosed\n")
    with pytest.raises(BinsharpError, match="not valid YAML"):
        read_config(p)


# ---------------------------------------------------------------------------------------------- training
def test_loss_decreases_and_validation_indexes(tiny_data, tmp_path):
    torch.manual_seed(0)
    before = l1_on(create("pnn", bands=4, channels=8), tiny_data["train"])  # same seed-0 init as the run
    cfg = {**TINY, "recipe": {**TINY["recipe"], "val_every": 10, "scheduler": "cosine"}}
    res = train("pnn", tiny_data["train"], out=tmp_path / "run", val_data=tiny_data["val"], config=cfg,
                max_steps=20, progress=False)  # fmt: skip
    after = l1_on(res.model, tiny_data["train"])
    assert after < 0.7 * before
    val = res.val["main"]
    assert set(val) == {"loss", "q2n", "sam", "ergas"}
    assert 0 < val["q2n"] <= 1 and val["sam"] > 0 and val["ergas"] > 0
    rows = list(csv.DictReader((tmp_path / "run/stages/01-main/logs/metrics.csv").open()))
    assert any(r.get("val/q2n") for r in rows) and any(r.get("train/loss") for r in rows)
    assert len([r for r in rows if r.get("val/q2n")]) == 2  # steps 10 and 20
    meta = read_meta(res.checkpoint)
    assert meta["step"] == 20 and meta["bits"] == 11 and meta["sensor"] == "QB" and meta["bands"] == 4
    assert meta["recipe"][0]["scheduler"] == "cosine"
    assert meta["data_manifest"]["source"] == str(tiny_data["train"])
    # the exported checkpoint reproduces the trained model
    model, _ = load_checkpoint(res.checkpoint)
    x = {k: v[:2] for k, v in PanDataset(tiny_data["val"]).data.items() if k != "gt"}
    with torch.no_grad():
        assert torch.equal(model(**x), res.model(**x))


def test_two_runs_with_one_seed_give_identical_weights(tiny_data, tmp_path):
    kw = dict(config=TINY, max_steps=6, progress=False, seed=3)
    a = train("pnn", tiny_data["train"], out=tmp_path / "a", **kw)
    b = train("pnn", tiny_data["train"], out=tmp_path / "b", **kw)
    c = train("pnn", tiny_data["train"], out=tmp_path / "c", **{**kw, "seed": 4})
    assert weights_digest(a.model) == weights_digest(b.model)
    assert load_state(a.checkpoint).keys() == load_state(b.checkpoint).keys()
    for k, v in load_state(a.checkpoint).items():
        assert torch.equal(v, load_state(b.checkpoint)[k])
    assert weights_digest(a.model) != weights_digest(c.model)


class _Interrupt(L.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            raise KeyboardInterrupt


class _FirstStep(L.Callback):
    def __init__(self) -> None:
        self.first: list[int] = []

    def on_train_start(self, trainer, pl_module):
        self.first.append(trainer.global_step)


def test_resume_continues_from_the_saved_step(tiny_data, tmp_path):
    # 4 batches per epoch: step 3 is mid-epoch
    cfg = {**TINY, "recipe": {**TINY["recipe"], "ckpt_every": 3}, "trainer": {"log_every": 1}}
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        train(
            "pnn",
            tiny_data["train"],
            out=out,
            config=cfg,
            max_steps=7,
            progress=False,
            callbacks=[_Interrupt(5)],
        )
    assert (out / "stages/01-main/checkpoints/last.ckpt").is_file()
    assert not (out / "model.safetensors").exists()
    with pytest.raises(BinsharpError, match="--resume"):
        train("pnn", tiny_data["train"], out=out, config=cfg, max_steps=7, progress=False)
    with pytest.raises(BinsharpError, match="cannot resume"):
        train("pnn", tiny_data["train"], out=out, config={**cfg, "model": {"channels": 16}}, max_steps=7,
              progress=False, resume=True)  # fmt: skip
    first = _FirstStep()
    res = train("pnn", tiny_data["train"], out=out, config=cfg, max_steps=7, progress=False, resume=True,
                callbacks=[first])  # fmt: skip
    assert first.first == [3]  # the last checkpoint before the interruption at step 5
    assert res.steps == {"main": 7} and read_meta(res.checkpoint)["step"] == 7
    # same batches, same random numbers: the resumed run ends exactly where an uninterrupted one does
    ref = train("pnn", tiny_data["train"], out=tmp_path / "ref", config=cfg, max_steps=7, progress=False)
    assert weights_digest(ref.model) == weights_digest(res.model)
    # the stage log holds every step once: the rows before the checkpoint, then the resumed ones

    def losses(run: Path) -> list[tuple[str, str]]:
        rows = csv.DictReader((run / "stages/01-main/logs/metrics.csv").open())
        return [(r["step"], r["train/loss"]) for r in rows if r.get("train/loss")]

    assert [s for s, _ in losses(out)] == [str(i) for i in range(7)]
    assert losses(out) == losses(tmp_path / "ref")
    assert not (out / "stages/01-main/logs/metrics.before-resume.csv").exists()
    # a finished run resumes to the same result without training
    again = _FirstStep()
    res2 = train("pnn", tiny_data["train"], out=out, config=cfg, max_steps=7, progress=False, resume=True,
                 callbacks=[again])  # fmt: skip
    assert again.first == [] and weights_digest(res2.model) == weights_digest(res.model)


# ---------------------------------------------------------------------------------------------- multi-stage
class HookedNet(PanModel):
    """Two-part test network with every optional training hook, recording the calls."""

    kind = "fp"
    inputs = ("lms", "pan")

    def __init__(self, bands: int = 4, width: int = 4) -> None:
        super().__init__(bands)
        self.head = nn.Conv2d(bands + 1, width, 3, padding=1)
        self.tail = nn.Conv2d(width, bands, 3, padding=1)
        self.calls: list[str] = []
        self.steps_seen = 0

    def forward(self, *, ms=None, lms=None, pan=None):
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        return lms + self.tail(torch.relu(self.head(torch.cat([lms, pan], 1))))

    def training_loss(self, batch, stage):
        pred = self(lms=batch["lms"], pan=batch["pan"])
        loss = stage.criterion()(pred, batch["gt"])
        if stage.options.get("extra"):
            return {"loss": loss, "extra": loss.detach() * 0 + 1}
        return None if stage.name == "first" else loss

    def on_stage_start(self, stage):
        self.calls.append(f"start:{stage.name}")

    def on_stage_end(self, stage):
        self.calls.append(f"end:{stage.name}")

    def after_optimizer_step(self):
        self.steps_seen += 1

    def mark(self, stage):
        self.calls.append(f"mark:{stage.name}")


TWO_STAGES = {
    "recipe": {
        "batch_size": 4,
        "lr": 5e-3,
        "stages": [
            {"name": "first", "steps": 4, "trainable": ["head.*"]},
            {"name": "second", "steps": 4, "frozen": ["head.*"], "loss": "mse", "options": {"extra": True},
             "hooks": {"on_stage_start": ["mark"]}, "ckpt_every": 2},
        ],
    },
    "validation": {"block": 16},
    "trainer": {"log_every": 1},
}  # fmt: skip


def test_multistage_recipe_runs_end_to_end(tiny_data, tmp_path, monkeypatch):
    created: list[HookedNet] = []
    import binsharp.models as models

    real_create = models.create

    def spy(*a, **k):
        m = real_create(*a, **k)
        created.append(m)
        return m

    monkeypatch.setattr(models, "create", spy)
    L.seed_everything(0)
    init = HookedNet(4).state_dict()
    out = tmp_path / "run"
    res = train("test-hooked", tiny_data["train"], out=out, val_data=tiny_data["val"], config=TWO_STAGES,
                progress=False)  # fmt: skip
    net = created[0]
    assert net.calls == ["start:first", "end:first", "start:second", "mark:second", "end:second"]
    assert net.steps_seen == 8
    assert res.steps == {"first": 4, "second": 4}
    s1 = load_state(out / "stages/01-first/weights.safetensors")
    s2 = load_state(out / "stages/02-second/weights.safetensors")
    assert torch.equal(s1["tail.weight"], init["tail.weight"])  # stage I trains the head only
    assert not torch.equal(s1["head.weight"], init["head.weight"])
    assert torch.equal(s2["head.weight"], s1["head.weight"])  # stage II freezes it
    assert not torch.equal(s2["tail.weight"], s1["tail.weight"])
    for d in ("01-first", "02-second"):
        rows = list(csv.DictReader((out / "stages" / d / "logs/metrics.csv").open()))
        assert any(r.get("val/q2n") for r in rows)
    rows = list(csv.DictReader((out / "stages/02-second/logs/metrics.csv").open()))
    assert any(r.get("train/extra") for r in rows) and any(r.get("train/loss") for r in rows)
    meta = read_meta(res.checkpoint)
    assert [s["name"] for s in meta["recipe"]] == ["first", "second"] and meta["step"] == 8
    assert meta["recipe"][1]["loss"] == "mse"


def test_multistage_resume_skips_finished_stages(tiny_data, tmp_path):
    out = tmp_path / "run"
    ref = train("test-hooked", tiny_data["train"], out=tmp_path / "ref", config=TWO_STAGES, progress=False)
    with pytest.raises(SystemExit):
        train(
            "test-hooked",
            tiny_data["train"],
            out=out,
            config=TWO_STAGES,
            progress=False,
            callbacks=[_Interrupt(3)],
        )
    # interrupted in stage "first" at step 3, before any of its checkpoints
    assert not (out / "stages/01-first/weights.safetensors").exists()
    first = _FirstStep()
    res = train("test-hooked", tiny_data["train"], out=out, config=TWO_STAGES, progress=False, resume=True,
                callbacks=[first])  # fmt: skip
    assert first.first == [0, 0]  # stage "first" had no checkpoint yet (ckpt_every 100): restarted
    assert res.steps == {"first": 4, "second": 4}
    with pytest.raises(SystemExit):
        train("test-hooked", tiny_data["train"], out=tmp_path / "r2", config=TWO_STAGES, progress=False,
              callbacks=[_StageInterrupt("second", 3)])  # fmt: skip
    assert (tmp_path / "r2/stages/01-first/weights.safetensors").is_file()
    first = _FirstStep()
    res2 = train("test-hooked", tiny_data["train"], out=tmp_path / "r2", config=TWO_STAGES, progress=False,
                 resume=True, callbacks=[first])  # fmt: skip
    assert first.first == [2]  # stage I skipped; stage II continues from its step-2 checkpoint
    assert read_meta(res2.checkpoint)["step"] == 8
    assert weights_digest(ref.model) == weights_digest(res.model)


class _StageInterrupt(L.Callback):
    def __init__(self, stage: str, at: int) -> None:
        self.stage, self.at = stage, at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.stage.name == self.stage and trainer.global_step == self.at:
            raise KeyboardInterrupt


def test_unknown_hook_and_empty_selection_are_refused(tiny_data, tmp_path):
    bad = {"recipe": {"batch_size": 4, "steps": 2, "hooks": {"on_stage_start": ["nope"]}}}
    with pytest.raises(BinsharpError, match="no hook 'nope'"):
        train("test-hooked", tiny_data["train"], out=tmp_path / "a", config=bad, progress=False)
    empty = {"recipe": {"batch_size": 4, "steps": 2, "trainable": ["nothing.*"]}}
    with pytest.raises(BinsharpError, match="no parameter is trainable"):
        train("test-hooked", tiny_data["train"], out=tmp_path / "b", config=empty, progress=False)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_train_writes_a_checkpoint(tiny_data, tmp_path, capsys):
    from binsharp.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {channels: 8}\nrecipe: {batch_size: 4}\nvalidation: {block: 16}\n")
    out = tmp_path / "run"
    argv = ["train", "--model", "pnn", "--data", str(tiny_data["train"]), "--val-data", str(tiny_data["val"]),
            "--config", str(cfg), "--max-steps", "3", "--out", str(out), "--seed", "1", "--no-progress",
            "--lr", "1e-3"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "model.safetensors" in text and "stage main: 3 steps" in text
    model, meta = load_checkpoint(out / "model.safetensors")
    assert meta["model"] == "pnn" and meta["config"]["channels"] == 8 and meta["recipe"][0]["lr"] == 1e-3
    assert json.loads((out / "run.json").read_text())["config"]["seed"] == 1
    assert main(argv) == 2  # the run directory exists and --resume was not given
    assert "--resume" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--model",
                "nonexistent",
                "--data",
                str(tiny_data["train"]),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def test_packaged_template_lists_every_default():
    from importlib import resources

    from binsharp.train.recipe import DEFAULT_RUN, DEFAULT_STAGE, _parse_yaml

    text = resources.files("binsharp.configs").joinpath("_template.yaml").read_text()
    cfg = _parse_yaml(text, "_template.yaml")
    assert cfg["recipe"] == DEFAULT_STAGE
    assert {k: cfg[k] for k in DEFAULT_RUN} == DEFAULT_RUN
    assert build_run_config(None, cfg).stages[0].to_dict() == build_run_config(None).stages[0].to_dict()


def test_epoch_sampler_shards_reshuffles_and_resumes():
    from binsharp.train.data import EpochSampler

    r0, r1 = (EpochSampler(10, 2, seed=5, rank=r, world_size=2) for r in (0, 1))
    a, b = list(r0), list(r1)
    assert len(a) == len(b) == len(r0) == 4 and not set(a) & set(b)  # 5 per rank -> 2 batches of 2
    r0.set_epoch(1)
    assert list(r0) != a and set(r0) <= set(range(10))  # a new permutation every epoch
    full = EpochSampler(12, 3, seed=1)
    run = []
    for epoch in range(3):
        full.set_epoch(epoch)
        run += list(full)
    resumed = EpochSampler(12, 3, seed=1, start_step=5)  # 4 batches per epoch: step 5 = epoch 1, batch 1
    resumed.set_epoch(1)
    tail = list(resumed)
    resumed.set_epoch(2)
    tail += list(resumed)
    assert tail == run[5 * 3 :]
    assert EpochSampler(3, 16).batch_size == 3
    with pytest.raises(BinsharpError, match="cannot be shared"):
        EpochSampler(1, 4, world_size=2)


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"scheduler": "step", "step_size": 2, "gamma": 0.5}, [1, 1, 0.5, 0.5, 0.25, 0.25]),
        ({"scheduler": "multistep", "milestones": [1, 4], "gamma": 0.1}, [1, 0.1, 0.1, 0.1, 0.01, 0.01]),
        (
            {"scheduler": "cosine", "eta_min": 0.1},
            [1, 0.1 + 0.9 * 0.8535533905932737, 0.55, 0.1 + 0.9 * 0.1464466094067262, 0.1, 0.1],
        ),
        ({"scheduler": "none", "warmup_steps": 2}, [0.5, 1, 1, 1, 1, 1]),
    ],
)
def test_schedules_and_optimizers(settings, expected):
    from binsharp.train.task import PanSharpeningTask

    stage = resolve_stages({"lr": 1.0, "steps": 4 if settings["scheduler"] == "cosine" else 6,
                            "optimizer": "adamw", "weight_decay": 0.01, **settings})[0]  # fmt: skip
    task = PanSharpeningTask(create("pnn", bands=4, channels=4), stage)
    conf = task.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.01
    lrs = []
    for _ in expected:
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, expected, atol=1e-12)


class _GradNorm(L.Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        grads = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))


def test_gradient_clipping(tiny_data, tmp_path):
    free, clipped = _GradNorm(), _GradNorm()
    base = {"model": {"channels": 4}, "recipe": {"batch_size": 4, "steps": 2}}
    train("pnn", tiny_data["train"], out=tmp_path / "a", config=base, progress=False, callbacks=[free])
    cfg = {**base, "recipe": {**base["recipe"], "grad_clip": 1e-3}}
    train("pnn", tiny_data["train"], out=tmp_path / "b", config=cfg, progress=False, callbacks=[clipped])
    assert min(free.norms) > 1e-2
    assert max(clipped.norms) <= 1e-3 * (1 + 1e-4)


class LatentNet(PanModel):
    """One BNN-weight convolution (latent weights clipped to [-1, 1] after every step) on cat(lms, pan)."""

    kind = "binary"
    inputs = ("lms", "pan")

    def __init__(self, bands: int = 4) -> None:
        from binsharp.nn import BinaryConv2d, BNNWeight

        super().__init__(bands)
        self.conv = BinaryConv2d(bands + 1, bands, 3, padding=1, kernel_quantizer=BNNWeight())
        self.scale = nn.Parameter(torch.tensor(0.01))

    def forward(self, *, ms=None, lms=None, pan=None):
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        return lms + self.scale * self.conv(torch.cat([lms, pan], 1))


def test_bnn_latent_weights_are_clipped_after_every_step(tiny_data, tmp_path):
    # one Adam step of lr 3 moves every latent weight (|w| < 0.2 at init) by about 3: all end clipped at +-1
    cfg = {"recipe": {"batch_size": 4, "steps": 1, "lr": 3.0, "scheduler": "none"}}
    res = train("test-latent", tiny_data["train"], out=tmp_path / "run", config=cfg, progress=False)
    w = res.model.conv.weight.detach()
    assert torch.equal(w.abs(), torch.ones_like(w))
    assert abs(float(res.model.scale.detach())) > 1.0  # the full-precision parameter took the full step


def test_schedule_settings_merge_across_layers():
    model = {
        "scheduler": "cosine",
        "eta_min": 1e-6,
        "stages": [{"name": "a", "scheduler": "cosine", "eta_min": 1e-5}],
    }
    cfg = build_run_config(
        model, {"recipe": {"stages": [{"name": "a", "scheduler": "step", "step_size": 5}]}}
    )
    s = cfg.stages[0]
    assert (s.scheduler, s.step_size, s.eta_min) == ("step", 5, 1e-5)


def test_packaged_configs_are_found_and_applied():
    from importlib import resources

    from binsharp.train.engine import _layers
    from binsharp.train.recipe import packaged_config, read_config

    files = sorted(resources.files("binsharp.configs").glob("*-wv3-longmont.yaml"))
    assert len(files) == 17
    for f in files:
        cfg = packaged_config(f.name.removesuffix("-wv3-longmont.yaml"), "wv3-longmont")
        assert cfg == read_config(f) and cfg["data"]["name"] == "wv3-longmont", f.name
    assert packaged_config("pnn", "WV3-Longmont ") == packaged_config("pnn", "wv3-longmont")
    assert packaged_config("pnn", "wv2-longmont") == {}  # no packaged file for that dataset
    assert packaged_config("pnn", "train.h5") == {} and packaged_config("pnn", None) == {}
    # the engine's lowest layer: found from --data, or from the data.name of --config
    s2 = packaged_config("s2bnet", "wv3-longmont")
    assert _layers("s2bnet", "wv3-longmont", None, {})[0] == s2
    assert _layers("s2bnet", None, {"data": {"name": "wv3-longmont"}}, {})[0] == s2
    cfg = build_run_config(create("s2bnet").default_recipe(), *_layers("s2bnet", "wv3-longmont", None, {}))
    assert cfg.stages[0].val_every == s2["recipe"]["val_every"] and cfg.model == s2["model"]
