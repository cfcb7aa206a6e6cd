"""Model registry, full-precision and binary baselines: build, run, config round trip, counting."""

from __future__ import annotations

import importlib.resources
import json
import math

import numpy as np
import pytest
import torch
import yaml
from scipy import ndimage

from binsharp import models
from binsharp.errors import BinsharpError
from binsharp.models import bodies, units
from binsharp.models.base import example_inputs, strip_quantizers
from binsharp.models.fp_baselines import HighPass, variance_scaling_init_
from binsharp.models.recipes import check_recipe
from binsharp.nn import BinaryConv2d, set_progress
from binsharp.nn.complexity import count

FP_MODELS = ["dicnn", "fusionnet", "msdcnn", "pannet", "pnn"]
BINARY_MODELS = [
    "bbcu",
    "biconnect",
    "bireal",
    "bisrnet",
    "bnn",
    "btm",
    "e2fif",
    "fabnet",
    "irnet",
    "reactnet",
]
ALL = FP_MODELS + BINARY_MODELS


def _inputs(bands: int, size: int = 16, batch: int = 2) -> dict[str, torch.Tensor]:
    return example_inputs(bands, size, batch=batch, seed=1)


# ------------------------------------------------------------------------------------------ registry
def test_registry_lists_all_baselines():
    assert set(ALL) <= set(models.list_models())
    assert set(models.list_models("fp")) >= set(FP_MODELS)
    assert set(models.list_models("binary")) >= set(BINARY_MODELS)
    assert not set(models.list_models("fp")) & set(models.list_models("binary"))
    with pytest.raises(BinsharpError, match="kind"):
        models.list_models("int8")


def test_create_rejects_bad_requests():
    with pytest.raises(BinsharpError, match="unknown model 'nope'"):
        models.create("nope")
    with pytest.raises(BinsharpError, match="unknown argument.*width"):
        models.create("bnn", width=3)
    with pytest.raises(BinsharpError, match="no pretrained weights exist for model 'bisrnet'"):
        models.create("bisrnet", pretrained="no-such-dataset")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(BinsharpError, match="bands"):
            models.create("pnn", bands=bad)
    with pytest.raises(BinsharpError, match="body"):
        models.create("bnn", body="ring")


def test_create_is_case_insensitive_and_sets_attributes():
    m = models.create("BiSRNet", bands=4)
    assert m.model_name == "bisrnet" and m.bands == 4 and m.kind == "binary"
    assert m.config["bands"] == 4 and m.config["body"] == "unet"
    json.dumps(m.config)


@pytest.mark.parametrize("name", ALL)
def test_model_info_and_recipe(name):
    info = models.model_info(name)
    assert info["name"] == name and info["kind"] in ("fp", "binary") and info["paper"]
    rec = info["recipe"]
    check_recipe(rec)
    json.dumps(rec)
    assert rec["loss"] == "l1" and rec["steps"] > 0 and rec["batch_size"] > 0
    assert set(info["inputs"]) <= {"ms", "lms", "pan"}
    m = models.create(name)
    assert m.default_recipe() == rec
    rec["lr"] = 123.0  # a copy: the registry is not modified
    assert models.model_info(name)["recipe"]["lr"] != 123.0


def test_binary_models_share_one_recipe():
    recipes = {json.dumps(models.model_info(n)["recipe"], sort_keys=True) for n in BINARY_MODELS}
    assert len(recipes) == 1


# ------------------------------------------------------------------------------ build / run / backward
@pytest.mark.parametrize("bands", [8, 4])
@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name, bands):
    torch.manual_seed(0)
    # binary models: a non-zero tail, so that the gradient reaches the body and head at the first step
    kw = {"zero_tail": False} if models.model_info(name)["kind"] == "binary" else {}
    m = models.create(name, bands=bands, **kw)
    inp = _inputs(bands)
    out = m(**inp)
    assert out.shape == inp["lms"].shape == (2, bands, 16, 16)
    assert torch.isfinite(out).all()
    out.abs().mean().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # the head (first layer) receives gradient through the binary body and the long skip
    first = next(p for p in m.parameters())
    assert float(first.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip_rebuilds_the_architecture(name):
    m = models.create(name, bands=4)
    cfg = json.loads(json.dumps(m.config))
    twin = models.create(m.model_name, **cfg)
    assert twin.config == m.config
    sd, sd2 = m.state_dict(), twin.state_dict()
    assert list(sd) == list(sd2)
    assert all(sd[k].shape == sd2[k].shape for k in sd)
    twin.load_state_dict(sd)
    m.eval()
    twin.eval()
    inp = _inputs(4, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(m(**inp), twin(**inp))


def test_non_default_config_round_trip():
    m = models.create("reactnet", bands=3, dim=8, n_units=2, body="unet", num_blocks=[1, 2, 1])
    assert m.config["num_blocks"] == [1, 2, 1] and m.config["dim"] == 8
    twin = models.create(m.model_name, **m.config)
    assert [p.shape for p in m.parameters()] == [p.shape for p in twin.parameters()]
    assert sum(p.numel() for p in m.parameters()) != sum(
        p.numel() for p in models.create("reactnet", bands=3, dim=8, body="unet").parameters()
    )


# --------------------------------------------------------------------------------- input validation
def test_input_validation():
    m = models.create("bnn", bands=8)
    inp = _inputs(8)
    with pytest.raises(BinsharpError, match="needs input 'pan'"):
        m(lms=inp["lms"])
    with pytest.raises(BinsharpError, match="expects 8 bands"):
        m(lms=inp["lms"][:, :4], pan=inp["pan"])
    with pytest.raises(BinsharpError, match="1 channel"):
        m(lms=inp["lms"], pan=inp["lms"])
    with pytest.raises(BinsharpError, match="spatial size"):
        m(lms=inp["lms"], pan=inp["pan"][..., :8])
    with pytest.raises(BinsharpError, match="batch"):
        m(lms=inp["lms"], pan=inp["pan"][:1])
    pannet = models.create("pannet", bands=8)
    with pytest.raises(BinsharpError, match="needs input 'ms'"):
        pannet(lms=inp["lms"], pan=inp["pan"])
    with pytest.raises(BinsharpError, match="ratio of 4"):
        pannet(ms=inp["ms"][..., :2, :2], lms=inp["lms"], pan=inp["pan"])
    # the lms variant works without ms
    lms_pannet = models.create("pannet", bands=8, upsample="lms")
    assert lms_pannet(lms=inp["lms"], pan=inp["pan"]).shape == inp["lms"].shape


def test_models_ignore_inputs_they_do_not_read():
    m = models.create("dicnn", bands=4).eval()
    inp = _inputs(4)
    with torch.no_grad():
        a = m(lms=inp["lms"], pan=inp["pan"])
        b = m(ms=torch.zeros(7, 3, 1, 1), lms=inp["lms"], pan=inp["pan"])
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["bisrnet", "fabnet"])
def test_bodies_with_downsampling_accept_any_size(name):
    m = models.create(name, bands=4, dim=8).eval()
    lms, pan = torch.rand(1, 4, 18, 22), torch.rand(1, 1, 18, 22)
    with torch.no_grad():
        assert m(lms=lms, pan=pan).shape == (1, 4, 18, 22)


# ------------------------------------------------------------------------------ binary bookkeeping
@pytest.mark.parametrize("name", BINARY_MODELS)
def test_binary_models_declare_binary_layers_and_count_bops(name):
    m = models.create(name, bands=8)
    quantized = m.quantized_layers()
    assert quantized, name
    report = count(m, example_inputs(8, 16))
    if name == "biconnect":
        assert m.binary_layers() == []
        assert report.bops == 0
        assert report.params_binary > 0  # 1-bit weights, float MACs
    else:
        assert m.binary_layers() == quantized
        assert report.bops > 0
        modules = dict(m.named_modules())
        assert all(isinstance(modules[n], BinaryConv2d) and modules[n].is_binary for n in m.binary_layers())
    # head and tail stay full precision
    assert not isinstance(m.head, BinaryConv2d) and not isinstance(m.tail, BinaryConv2d)


def test_biconnect_counted_as_float_convolutions():
    size = 32
    r_bnn = count(models.create("bnn"), example_inputs(8, size))
    r_bic = count(models.create("biconnect"), example_inputs(8, size))
    # same architecture: the binary MACs of BNN are float MACs in BinaryConnect
    assert r_bic.flops == r_bnn.flops + r_bnn.bops
    assert r_bic.params_binary == r_bnn.params_binary


@pytest.mark.parametrize("name", FP_MODELS)
def test_fp_models_have_no_bops(name):
    m = models.create(name, bands=8)
    assert m.binary_layers() == [] and m.quantized_layers() == []
    r = count(m, example_inputs(8, 32))
    assert r.bops == 0 and r.params_binary == 0 and r.flops > 0


def test_binary_bodies_have_comparable_binary_macs():
    bops = {n: count(models.create(n), example_inputs(8, 16)).bops for n in BINARY_MODELS if n != "biconnect"}
    ref = bops["bisrnet"]
    for n, b in bops.items():
        assert abs(b - ref) / ref < 0.05, (n, b, ref)


def test_pnn_parameter_count_matches_the_paper_layout():
    c = 8
    expected = (c + 1) * 64 * 81 + 64 + 64 * 32 * 25 + 32 + 32 * c * 25 + c
    assert sum(p.numel() for p in models.create("pnn", bands=c).parameters()) == expected


def test_strip_quantizers_gives_the_float_twin():
    m = models.create("bireal", bands=4, n_units=2, zero_tail=False)  # the body reaches the output
    twin = strip_quantizers(m)
    assert m.binary_layers() and twin.binary_layers() == [] and twin.quantized_layers() == []
    assert m.binary_layers() == m.quantized_layers()  # the original is untouched
    inp = _inputs(4)
    m.eval()
    twin.eval()
    with torch.no_grad():
        assert not torch.allclose(m(**inp), twin(**inp))
    assert count(twin, example_inputs(4, 16)).bops == 0


def test_binary_convolutions_see_plus_minus_one():
    m = models.create("bbcu", bands=4, n_units=2).eval()
    seen = []

    def hook(mod, args, out):
        seen.append(out)

    for name in m.binary_layers():
        dict(m.named_modules())[name].input_quantizer.register_forward_hook(hook)
    with torch.no_grad():
        m(**_inputs(4))
    assert len(seen) == 2
    for a in seen:
        assert set(torch.unique(a).tolist()) <= {-1.0, 1.0}


def test_bbcu_residual_alignment_default():
    m = models.create("bbcu", dim=16)
    assert m.input_scale == pytest.approx(130 * 16 / 64)
    assert models.create("bbcu", k=1.0).input_scale == 1.0


# ------------------------------------------------------------------------------------ units / bodies
@pytest.mark.parametrize("unit", sorted(units.UNITS))
@pytest.mark.parametrize("kernel_size,groups", [(3, 1), (1, 1), (3, 4)])
def test_units_keep_shape(unit, kernel_size, groups):
    u = units.UNITS[unit](8, kernel_size, groups)
    x = torch.randn(2, 8, 6, 5, requires_grad=True)
    y = u(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_unet_body_takes_any_unit_factory():
    made = []

    def factory(channels: int, kernel_size: int = 3, groups: int = 1):
        made.append((channels, kernel_size, groups))
        return units.BiRealUnit(channels, kernel_size, groups)

    body = bodies.BinaryUNetBody(8, factory, stages=2, num_blocks=(1, 1, 1))
    x = torch.randn(1, 8, 12, 20)
    assert body(x).shape == x.shape
    kinds = {(k, g) for _, k, g in made}
    assert (3, 1) in kinds and (1, 1) in kinds  # 3x3 units (embedding, Down/Up) and 1x1 fusion units
    assert any(g > 1 for _, _, g in made)  # grouped 3x3 unit of the feed-forward
    assert max(c for c, _, _ in made) == 8 * 4 * 4  # bottleneck 4D, expanded x4 in its feed-forward
    with pytest.raises(BinsharpError):
        bodies.BinaryUNetBody(8, "bisr", stages=2, num_blocks=(1, 1))


def test_unet_modules_change_channels_as_documented():
    make = units.UNITS["bisr"]
    x = torch.randn(1, 8, 8, 8)
    assert bodies.Down(8, make)(x).shape == (1, 16, 4, 4)
    assert bodies.Up(8, make)(x).shape == (1, 4, 16, 16)
    assert bodies.FusionIncrease(8, make)(x).shape == (1, 16, 8, 8)
    assert bodies.FusionDecrease(8, make)(x).shape == (1, 4, 8, 8)
    assert bodies.Block(8, make, n=2)(x).shape == x.shape


def test_progress_schedules_reach_the_units():
    irnet = models.create("irnet", bands=4, n_units=1)
    fab = models.create("fabnet", bands=4, dim=4, n_low=1, n_high=1)
    assert set_progress(irnet, 0, 10) > 0
    q = irnet.body.units[0].conv.input_quantizer
    t0 = float(q.t)
    set_progress(irnet, 10, 10)
    assert float(q.t) > t0 and float(q.t) == pytest.approx(10.0)
    low = fab.body.low[0].conv1.input_quantizer
    high = fab.body.high[0].conv1.input_quantizer
    assert (float(low.interval), float(high.interval)) == (1.0, 2.0)
    set_progress(fab, 0.5, 1.0)
    assert (float(low.interval), float(high.interval)) == (2.0, 2.0)
    set_progress(fab, 1.0, 1.0)
    assert (float(low.interval), float(high.interval)) == (4.0, 4.0)
    # the interval is saved with the weights
    twin = models.create("fabnet", bands=4, dim=4, n_low=1, n_high=1)
    twin.load_state_dict(fab.state_dict())
    assert float(twin.body.low[0].conv1.input_quantizer.interval) == 4.0


def test_progressive_approx_sign_gradient():
    q = units.ProgressiveApproxSign(intervals=(4.0,), milestones=())
    x = torch.tensor([-1.0, -0.4, -0.1, 0.0, 0.2, 0.6], requires_grad=True)
    y = q(x)
    assert y.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    v = 4.0
    expected = [max(0.0, v - v * v * abs(float(t)) / 2) for t in x.detach()]
    torch.testing.assert_close(x.grad, torch.tensor(expected))


# ------------------------------------------------------------------------------ full-precision details
def test_pannet_highpass_is_box_filter_with_reflect101_borders():
    x = torch.rand(1, 2, 9, 7, dtype=torch.float64)
    ref = x.numpy() - ndimage.uniform_filter(x.numpy(), size=(1, 1, 5, 5), mode="mirror")
    np.testing.assert_allclose(HighPass(5)(x).numpy(), ref, atol=1e-12)


def test_variance_scaling_init_std():
    conv = torch.nn.Conv2d(64, 64, 3)
    torch.manual_seed(0)
    variance_scaling_init_(conv)
    fan_in = 64 * 9
    w = conv.weight.detach()
    assert float(w.abs().max()) <= 2 * math.sqrt(2.6 / fan_in) + 1e-6
    assert float(w.std()) == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.08)
    assert float(conv.bias.detach().abs().max()) == 0.0


def test_residual_models_start_near_lms():
    """DiCNN/FusionNet/PanNet and every binary backbone add the network output to lms."""
    inp = _inputs(4)
    for name in ("dicnn", "fusionnet", "bisrnet"):
        m = models.create(name, bands=4).eval()
        for p in m.parameters():
            torch.nn.init.zeros_(p)
        with torch.no_grad():
            torch.testing.assert_close(m(**inp), inp["lms"])


@pytest.mark.parametrize("name", models.list_models(kind="binary"))
def test_binary_models_start_at_lms_with_a_zero_tail_switch(name):
    """Every binary model starts from ``out = lms`` (zero tail); ``zero_tail=False`` restores PyTorch's
    default tail initialisation, and the switch is part of the saved configuration."""
    torch.manual_seed(0)
    inp = _inputs(4)
    m = models.create(name, bands=4).eval()
    assert m.config["zero_tail"] is True
    with torch.no_grad():
        torch.testing.assert_close(m(**inp), inp["lms"])
    torch.manual_seed(0)
    m = models.create(name, bands=4, zero_tail=False).eval()
    assert m.config["zero_tail"] is False
    with torch.no_grad():
        assert float((m(**inp) - inp["lms"]).abs().max()) > 1e-3


@pytest.mark.parametrize("name", [*ALL, "s2bnet", "bnnpan"])
def test_every_model_has_a_wv3_longmont_config_with_its_default_architecture(name):
    """``configs/<model>-wv3-longmont.yaml`` exists for every registered model, parses, names the dataset
    and writes out exactly the registered default architecture."""
    text = importlib.resources.files("binsharp.configs").joinpath(f"{name}-wv3-longmont.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert cfg["data"]["name"] == "wv3-longmont" and cfg["seed"] == 0
    assert models.create(name, **cfg["model"]).config == models.create(name).config
