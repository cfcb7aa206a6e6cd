"""BNNPan: layers (NBC, BWTC, LDPC, CDC), latent diffusion prior, model switches, three-stage training,
checkpoint reproducibility and complexity split."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from binsharp.errors import BinsharpError
from binsharp.models import create, list_models, model_info
from binsharp.models.bnnpan import (
    PIBF,
    BinaryWaveletConv,
    BNNPan,
    ChannelCalibration,
    LatentPriorModulation,
    NormalizedBinaryConv,
    StatisticsRestandardization,
    bnnpan_recipe,
    complexity_split,
)
from binsharp.models.bnnpan_prior import LatentDiffusionPrior, diffusion_schedule
from binsharp.nn import HaarDWT, HaarIDWT
from binsharp.train.recipe import build_run_config

TINY_MODEL = {
    "dim": 8, "n_modules": 2, "latent_dim": 8, "prior_channels": 8, "denoiser_hidden": 16, "zero_tail": False
}  # fmt: skip


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- wavelets
def test_haar_round_trip_and_identity_wavelet_conv():
    x = torch.randn(2, 6, 10, 14, generator=_gen(), dtype=torch.float64)
    dwt, idwt = HaarDWT().double(), HaarIDWT().double()
    torch.testing.assert_close(idwt(dwt(x)), x, rtol=0, atol=1e-12)
    # orthonormal: energy preserved
    assert math.isclose(float(dwt(x).pow(2).sum()), float(x.pow(2).sum()), rel_tol=1e-12)
    # with the binary convolutions zeroed (alpha = mean|W| = 0) and no re-standardisation every NBC is the
    # identity, so the whole DWT -> four NBCs -> IDWT path reconstructs its input
    bwtc = BinaryWaveletConv(6, dwt=True, norm=False).double()
    with torch.no_grad():
        for nbc in bwtc.bands:
            nbc.conv.weight.zero_()
    assert len(bwtc.bands) == 4
    torch.testing.assert_close(bwtc(x), x, rtol=0, atol=1e-12)


def test_wavelet_conv_bands_are_independent():
    """Each sub-band has its own NBC: perturbing the HH NBC changes only the HH band of the transform."""
    torch.manual_seed(0)
    bwtc = BinaryWaveletConv(4, dwt=True, norm=True)
    x = torch.randn(1, 4, 8, 8)
    before = HaarDWT()(bwtc(x)).view(1, 4, 4, 4, 4)
    with torch.no_grad():
        bwtc.bands[3].restd.eta.add_(1.0)
    after = HaarDWT()(bwtc(x)).view(1, 4, 4, 4, 4)
    torch.testing.assert_close(after[:, :, :3], before[:, :, :3])
    assert not torch.allclose(after[:, :, 3], before[:, :, 3])
    single = BinaryWaveletConv(4, dwt=False)
    assert len(single.bands) == 1 and single.dwt is None and single(x).shape == x.shape


# ---------------------------------------------------------------------------------------------- NBC
def test_nbc_statistics_match_full_precision_input():
    torch.manual_seed(1)
    c, eps = 5, 1e-5
    nbc = NormalizedBinaryConv(c, norm=True, eps=eps).double()
    lam = 0.5 + torch.rand(1, c, 1, 1, dtype=torch.float64)
    eta = torch.randn(1, c, 1, 1, dtype=torch.float64)
    with torch.no_grad():
        nbc.restd.lam.copy_(lam)
        nbc.restd.eta.copy_(eta)
    x = 3.0 * torch.randn(3, c, 12, 12, dtype=torch.float64) + 2.0
    out = nbc.branch(x)
    mu_f, var_f = x.mean((2, 3), keepdim=True), x.var((2, 3), correction=0, keepdim=True)
    xb = nbc.conv(nbc.bias(x))
    var_b = xb.var((2, 3), correction=0, keepdim=True)
    torch.testing.assert_close(out.mean((2, 3), keepdim=True), mu_f + eta, rtol=0, atol=1e-10)
    expected_sd = torch.sqrt(var_f + eps) / lam * torch.sqrt(var_b / (var_b + eps))
    torch.testing.assert_close(out.std((2, 3), correction=0, keepdim=True), expected_sd, rtol=1e-9, atol=0)
    # lambda = 1, eta = 0: the statistics of the full-precision input (up to eps)
    with torch.no_grad():
        nbc.restd.lam.fill_(1.0)
        nbc.restd.eta.zero_()
    out = nbc.branch(x)
    torch.testing.assert_close(out.mean((2, 3), keepdim=True), mu_f, rtol=0, atol=1e-10)
    torch.testing.assert_close(out.std((2, 3), correction=0, keepdim=True), var_f.sqrt(), rtol=1e-3, atol=0)
    # the residual: X' = RPReLU(Xb') + X
    torch.testing.assert_close(nbc(x), nbc.act(out) + x)
    # the binary convolution really is binary (two values per output channel) with sign +1 at 0
    assert nbc.conv.is_binary
    w = nbc.conv.quantized_weight()
    for o in range(c):
        assert torch.unique(w[o].abs()).numel() == 1
    assert NormalizedBinaryConv(c, norm=False).restd is None


def test_restandardization_direct_formula():
    torch.manual_seed(2)
    r = StatisticsRestandardization(3, eps=1e-5)
    xb, xf = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6) * 4 + 1
    mb, vb = xb.mean((2, 3), keepdim=True), xb.var((2, 3), correction=0, keepdim=True)
    mf, vf = xf.mean((2, 3), keepdim=True), xf.var((2, 3), correction=0, keepdim=True)
    ref = torch.sqrt(vf + 1e-5) * (xb - mb) / torch.sqrt(vb + 1e-5) + mf
    torch.testing.assert_close(r(xb, xf), ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- LDPC / CDC
def test_prior_modulation_identity_at_init():
    torch.manual_seed(3)
    y, z = torch.randn(2, 6, 5, 5), 10 * torch.randn(2, 4)
    ident = LatentPriorModulation(4, 6, "identity")
    assert torch.equal(ident(y, z), y)
    assert torch.count_nonzero(ident.linear.weight) == 0 and ident.linear.bias is None
    offset = LatentPriorModulation(4, 6, "offset")
    plain = LatentPriorModulation(4, 6, "plain")
    for m in (offset, plain):
        assert not torch.allclose(m(y, z), y)
    # the formula: z_w, z_b = split(Linear(z)); Y~ = Y * z_w + z_b (plus 1 on z_w unless plain)
    zw, zb = (z @ plain.linear.weight.T).chunk(2, dim=1)
    torch.testing.assert_close(plain(y, z), y * zw[..., None, None] + zb[..., None, None])
    ow, ob = (z @ offset.linear.weight.T).chunk(2, dim=1)
    torch.testing.assert_close(offset(y, z), y * (1 + ow[..., None, None]) + ob[..., None, None])
    with pytest.raises(BinsharpError, match="prior_init"):
        LatentPriorModulation(4, 6, "zeros")
    # gradients reach the zero-initialised weight, so the prior can enter during training
    ident(y, z).sum().backward()
    assert ident.linear.weight.grad is not None and torch.count_nonzero(ident.linear.weight.grad) > 0


def test_channel_calibration_formula():
    torch.manual_seed(4)
    cdc = ChannelCalibration(3)
    y_mod, y = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    stats = torch.cat(
        [y_mod.abs().mean((2, 3)), y_mod.mean((2, 3)), torch.sqrt(y_mod.var((2, 3), correction=0) + 1e-5)], 1
    )
    w = torch.sigmoid(cdc.linear(stats))[..., None, None]
    torch.testing.assert_close(cdc(y_mod, y), w * y_mod + y)
    # constant input: finite gradient (std with eps)
    const = torch.ones(1, 3, 4, 4, requires_grad=True)
    cdc(const, const).sum().backward()
    assert torch.isfinite(const.grad).all()


def test_pibf_without_prior_refuses_nothing_and_with_prior_needs_z():
    x = torch.randn(1, 4, 8, 8)
    assert PIBF(4, 3, prior=False)(x).shape == x.shape
    with pytest.raises(BinsharpError, match="latent"):
        PIBF(4, 3, prior=True)(x)


# ---------------------------------------------------------------------------------------------- diffusion
def test_diffusion_schedule_values():
    s = diffusion_schedule(4)
    betas = np.linspace(np.sqrt(0.1), np.sqrt(0.99), 4) ** 2
    np.testing.assert_allclose(s["betas"].numpy(), betas, rtol=0, atol=1e-15)
    np.testing.assert_allclose(s["betas"].numpy()[[0, -1]], [0.1, 0.99], rtol=0, atol=1e-15)
    ac = np.cumprod(1 - betas)
    np.testing.assert_allclose(s["alphas_cumprod"].numpy(), ac, rtol=1e-15)
    np.testing.assert_allclose(
        s["alphas_cumprod"].numpy(), [0.9, 0.6351429, 0.2598038, 0.002598038], rtol=1e-6
    )
    acp = np.concatenate([[1.0], ac[:-1]])
    np.testing.assert_allclose(s["posterior_mean_coef1"].numpy(), betas * np.sqrt(acp) / (1 - ac), rtol=1e-14)
    np.testing.assert_allclose(
        s["posterior_mean_coef2"].numpy(), (1 - acp) * np.sqrt(1 - betas) / (1 - ac), rtol=1e-14, atol=1e-15
    )
    # the last reverse step returns the x0 prediction
    assert s["posterior_mean_coef1"][0] == pytest.approx(1.0) and s["posterior_mean_coef2"][0] == 0
    assert diffusion_schedule(1)["betas"].tolist() == pytest.approx([0.1])
    with pytest.raises(BinsharpError):
        diffusion_schedule(0)


class _ConstDenoiser(nn.Module):
    """Predicts x0 = target whatever the input; records the time inputs."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target
        self.times: list[float] = []

    def forward(self, c, t, z):
        self.times.append(float(t[0, 0]))
        return self.target.expand_as(z)


def test_reverse_process_is_deterministic_posterior_mean():
    prior = LatentDiffusionPrior(3, latent_dim=5, timesteps=4, noise_seed=7)
    target = torch.randn(1, 5, generator=_gen(1))
    prior.denoiser = _ConstDenoiser(target)
    c = torch.randn(2, 5)
    z_t = torch.randn(2, 5, generator=_gen(2))
    out = prior.reverse(c, z_t)
    torch.testing.assert_close(out, target.expand(2, 5))
    assert prior.denoiser.times == [1.0, 0.75, 0.5, 0.25]
    # hand-rolled chain with a learnt-like denoiser
    prior2 = LatentDiffusionPrior(3, latent_dim=5, timesteps=3)
    s = diffusion_schedule(3)
    z = z_t.clone()
    with torch.no_grad():
        for i in (2, 1, 0):
            x0 = prior2.denoiser(c, torch.full((2, 1), (i + 1) / 3), z)
            z = float(s["posterior_mean_coef1"][i]) * x0 + float(s["posterior_mean_coef2"][i]) * z
        torch.testing.assert_close(prior2.reverse(c, z_t), z)


def test_seeded_inference_noise():
    p0 = LatentDiffusionPrior(3, latent_dim=6, noise_seed=0)
    p0b = LatentDiffusionPrior(3, latent_dim=6, noise_seed=0)
    p1 = LatentDiffusionPrior(3, latent_dim=6, noise_seed=1)
    kw = {"device": torch.device("cpu"), "dtype": torch.float32}
    torch.manual_seed(123)
    a = p0.initial_noise(3, **kw)
    torch.manual_seed(456)
    assert torch.equal(a, p0b.initial_noise(3, **kw))  # not the global generator
    assert torch.equal(a[0], a[2])  # one vector shared by the batch
    assert not torch.equal(a, p1.initial_noise(3, **kw))
    # training start: the target diffused to the last step
    z, n = torch.randn(2, 6), torch.randn(2, 6)
    ac = float(diffusion_schedule(4)["alphas_cumprod"][-1])
    torch.testing.assert_close(p0.diffuse(z, n), math.sqrt(ac) * z + math.sqrt(1 - ac) * n)


# ---------------------------------------------------------------------------------------------- model
def test_registered_with_three_stage_recipe():
    assert "bnnpan" in list_models("binary")
    info = model_info("bnnpan")
    stages = info["recipe"]["stages"]
    assert [s["name"] for s in stages] == ["I", "II", "III"]
    assert sum(s["steps"] for s in stages) == 100_000
    d = info["defaults"]
    assert (d["dim"], d["n_modules"], d["latent_dim"], d["timesteps"], d["dwt"], d["norm"], d["prior"]) == (
        32, 4, 64, 4, True, True, True
    )  # fmt: skip
    cfg = build_run_config(create("bnnpan", bands=4, **TINY_MODEL).default_recipe())
    s1, s2, s3 = cfg.stages
    assert s1.is_trainable("body.0.bwtc.bands.0.conv.weight") and s1.is_trainable(
        "prior.encoder.mlp.0.weight"
    )
    assert not s1.is_trainable("prior.denoiser.net.0.weight") and not s1.is_trainable("prior.condition.pool")
    assert s2.is_trainable("prior.denoiser.net.0.weight") and s2.is_trainable("prior.condition.mlp.0.bias")
    assert not s2.is_trainable("head.weight") and not s2.is_trainable("prior.encoder.mlp.0.weight")
    assert s3.is_trainable("head.weight") and s3.is_trainable("prior.denoiser.net.0.weight")
    assert not s3.is_trainable("prior.encoder.mlp.0.weight")
    assert [s["name"] for s in bnnpan_recipe(prior=False)["stages"]] == ["I"]
    assert create("bnnpan", bands=4, prior=False).default_recipe()["stages"][0]["steps"] == 100_000


@pytest.mark.parametrize("bands", [4, 8])
def test_forward_backward(bands):
    torch.manual_seed(5)
    m = create("bnnpan", bands=bands, **TINY_MODEL)
    x = m.example_inputs(32, batch=2)
    gt = torch.rand_like(x["lms"])
    out = m(**x)
    assert out.shape == x["lms"].shape and torch.isfinite(out).all()
    loss = (m(**x, gt=gt) - gt).abs().mean() + out.mean()
    loss.backward()
    conv = m.body[0].bwtc.bands[0].conv
    assert conv.is_binary and conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert m.body[1].bwtc.bands[3].restd.lam.grad is not None
    assert m.head.weight.grad.abs().sum() > 0
    assert len(m.binary_layers()) == 2 * 4
    # sizes that are not multiples of 4 are padded and cropped back
    odd = {"lms": torch.rand(1, bands, 30, 22), "pan": torch.rand(1, 1, 30, 22)}
    assert m(**odd).shape == (1, bands, 30, 22)
    with pytest.raises(BinsharpError, match="gt"):
        m(**x, gt=gt[:, :1])


def test_switches():
    x = create("bnnpan", bands=4).example_inputs(16)
    full = create("bnnpan", bands=4, **TINY_MODEL)
    assert full.prior is not None and len(full.body[0].bwtc.bands) == 4
    no_dwt = create("bnnpan", bands=4, **TINY_MODEL, dwt=False)
    assert len(no_dwt.body[0].bwtc.bands) == 1 and no_dwt.body[0].bwtc.dwt is None
    no_norm = create("bnnpan", bands=4, **TINY_MODEL, norm=False)
    assert all(not b.norm for p in no_norm.body for b in p.bwtc.bands)
    no_prior = create("bnnpan", bands=4, **TINY_MODEL, prior=False)
    assert no_prior.prior is None and all(p.ldpc is None for p in no_prior.body)
    assert not any(n.startswith("prior") for n, _ in no_prior.named_parameters())
    for n in (2, 4, 6):
        m = create("bnnpan", bands=4, **{**TINY_MODEL, "n_modules": n})
        assert len(m.body) == n and m.config["n_modules"] == n
    for m in (no_dwt, no_norm, no_prior):
        assert m(**x).shape == x["lms"].shape
    m = create("bnnpan", bands=4, **{**TINY_MODEL, "latent_dim": 5, "timesteps": 2})
    assert m.prior.latent_dim == 5 and m.prior.timesteps == 2 and m(**x).shape == x["lms"].shape
    zero = create("bnnpan", bands=4)
    assert torch.count_nonzero(zero.tail.weight) == 0 and torch.equal(
        zero(**x), x["lms"]
    )  # SR = M_up at init
    with pytest.raises(BinsharpError):
        create("bnnpan", bands=4, n_modules=0)
    with pytest.raises(BinsharpError):
        create("bnnpan", bands=4, prior_init="nope")


def test_identity_init_makes_the_latent_irrelevant_and_inference_reproducible():
    torch.manual_seed(6)
    m = create("bnnpan", bands=4, **TINY_MODEL).eval()
    x = m.example_inputs(16, batch=3)
    gt = torch.rand_like(x["lms"])
    with torch.no_grad():
        a, b = m(**x), m(**x, gt=gt)
        assert torch.equal(a, b)  # LDPC is the identity at init: z has no effect yet
        for p in m.body:
            nn.init.normal_(p.ldpc.linear.weight, std=0.5)
        c, d, e = m(**x), m(**x), m(**x, gt=gt)
        assert torch.equal(c, d) and not torch.equal(c, e)
        # the fused image of one sample does not depend on the rest of the batch
        single = m(lms=x["lms"][1:2], pan=x["pan"][1:2])
        torch.testing.assert_close(single, c[1:2], rtol=1e-5, atol=1e-6)


def test_complexity_split():
    m = create("bnnpan", bands=8)
    r = complexity_split(m, 32)
    t, n, p = r["total"], r["network"], r["prior"]
    for k in ("bops", "flops", "params_binary", "params_float"):
        assert t[k] == n[k] + p[k]
    assert p["bops"] == 0 and p["params_binary"] == 0 and p["flops"] > 0
    # 4 PIBF x 4 sub-band 3x3 binary convs, D = 32, on 16 x 16 sub-bands
    assert t["bops"] == 16 * 16 * 16 * 32 * 32 * 9 and t["params_binary"] == 16 * 32 * 32 * 9
    assert r["encoder_params"] > 0 and "prior.encoder.mlp.0" in r["report"].unused
    off = complexity_split(create("bnnpan", bands=8, prior=False), 32)
    assert off["prior"]["ops"] == 0 and off["total"]["bops"] == t["bops"]
    assert off["total"]["params"] < n["params"]  # no LDPC linears
    nodwt = complexity_split(create("bnnpan", bands=8, dwt=False), 32)
    assert nodwt["total"]["bops"] == t["bops"]  # one full-resolution conv = four quarter-resolution ones


# ---------------------------------------------------------------------------------------------- training
def _write_panc_h5(path: Path, n: int, *, bands: int = 4, size: int = 16, seed: int = 0) -> Path:
    """A tiny reduced-resolution set in PanCollection layout (N, C, H, W float64 DN; attrs), with h5py."""
    rng = np.random.default_rng(seed)
    low = rng.random((n, bands, size // 4, size // 4))
    gt = np.kron(low, np.ones((1, 1, 4, 4))) + 0.05 * rng.random((n, bands, size, size))
    gt = 200.0 + 1500.0 * gt
    ms = gt.reshape(n, bands, size // 4, 4, size // 4, 4).mean(axis=(3, 5))
    lms = np.kron(ms, np.ones((1, 1, 4, 4)))
    pan = gt.mean(axis=1, keepdims=True)
    with h5py.File(path, "w") as f:
        for k, v in (("gt", gt), ("ms", ms), ("lms", lms), ("pan", pan)):
            f.create_dataset(k, data=v)
        f.attrs["sensor"] = "QB"
        f.attrs["bits"] = 11
        f.attrs["ratio"] = 4
    return path


TINY_RUN = {
    "model": TINY_MODEL,
    "recipe": {
        "batch_size": 4,
        "lr": 5e-3,
        "ckpt_every": 1,
        "stages": [
            {"name": "I", "steps": 3},
            {"name": "II", "steps": 3, "lr": 5e-3},
            {"name": "III", "steps": 3, "lr": 5e-3},
        ],
    },
    "validation": {"block": 16},
    "trainer": {"log_every": 1},
}


def _changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


@pytest.fixture(scope="module")
def three_stage_run(tmp_path_factory) -> dict:
    """One run of the three-stage recipe through the training engine on a tiny generated data set."""
    from binsharp.train.engine import train

    d = tmp_path_factory.mktemp("bnnpan")
    data = {"train": _write_panc_h5(d / "train.h5", 12), "val": _write_panc_h5(d / "val.h5", 4, seed=1)}
    torch.manual_seed(0)  # the engine seeds the run the same way before building the model
    init = {k: v.clone() for k, v in create("bnnpan", bands=4, **TINY_MODEL).state_dict().items()}
    out = d / "run"
    res = train(
        "bnnpan", data["train"], out=out, val_data=data["val"], config=TINY_RUN, progress=False, seed=0
    )
    return {"data": data, "init": init, "out": out, "res": res}


def test_three_stage_recipe_end_to_end_and_checkpoint(three_stage_run):
    from binsharp.models import load_checkpoint
    from binsharp.train.engine import train
    from binsharp.weights import load_state, read_meta

    data, init, out, res = (three_stage_run[k] for k in ("data", "init", "out", "res"))
    train_h5, val_h5 = data["train"], data["val"]
    assert res.steps == {"I": 3, "II": 3, "III": 3}
    s = {n: load_state(out / f"stages/{d}/weights.safetensors") for n, d in
         (("I", "01-I"), ("II", "02-II"), ("III", "03-III"))}  # fmt: skip
    # stage I: network + encoder; the denoiser and the condition encoder untouched
    assert not any(k.startswith(("prior.denoiser", "prior.condition")) for k in _changed(init, s["I"]))
    assert any(k.startswith("prior.encoder") for k in _changed(init, s["I"]))
    assert any(k.startswith("body.") for k in _changed(init, s["I"]))
    # stage II: only the denoiser and the condition encoder
    ch2 = _changed(s["I"], s["II"])
    assert ch2 and all(k.startswith(("prior.denoiser", "prior.condition")) for k in ch2)
    # stage III: everything but the stage-I encoder
    ch3 = _changed(s["II"], s["III"])
    assert not any(k.startswith("prior.encoder") for k in ch3)
    assert any(k.startswith("body.") for k in ch3) and any(k.startswith("prior.denoiser") for k in ch3)
    # per-stage logs with the stage's losses
    logs = {n: list(csv.DictReader((out / f"stages/{d}/logs/metrics.csv").open())) for n, d in
            (("I", "01-I"), ("II", "02-II"), ("III", "03-III"))}  # fmt: skip
    assert any(r.get("train/sr_loss") for r in logs["I"])
    assert any(r.get("train/latent_l1") for r in logs["II"])
    assert any(r.get("train/latent_l1") for r in logs["III"]) and any(
        r.get("train/sr_loss") for r in logs["III"]
    )
    assert all(any(r.get("val/q2n") for r in rows) for rows in logs.values())
    assert (out / "stages/03-III/checkpoints/last.ckpt").is_file()
    meta = read_meta(res.checkpoint)
    assert [st["name"] for st in meta["recipe"]] == ["I", "II", "III"] and meta["step"] == 9
    assert meta["config"]["noise_seed"] == 0 and meta["config"]["n_modules"] == 2

    # checkpoint round trip: identical outputs (seeded inference noise)
    loaded, _ = load_checkpoint(res.checkpoint)
    x = loaded.example_inputs(16, batch=2)
    res.model.eval()
    with torch.no_grad():
        a = res.model(**x)
        torch.manual_seed(999)  # the global generator is not used at inference
        b = loaded(**x)
    assert torch.equal(a, b)

    # resume of a finished run skips every stage and gives the same weights
    again = train("bnnpan", train_h5, out=out, val_data=val_h5, config=TINY_RUN, progress=False, seed=0,
                  resume=True)  # fmt: skip
    assert again.steps == res.steps
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in res.model.state_dict().items())


def test_no_prior_variant_trains_single_stage(tmp_path):
    from binsharp.train.engine import train

    train_h5 = _write_panc_h5(tmp_path / "train.h5", 8)
    cfg = {"model": {**TINY_MODEL, "prior": False}, "recipe": {"batch_size": 4}, "validation": {"block": 16}}
    res = train("bnnpan", train_h5, out=tmp_path / "run", config=cfg, progress=False, max_steps=3)
    assert res.steps == {"I": 3}
    assert (tmp_path / "run/stages/01-I/weights.safetensors").is_file()


def test_bad_phase_is_refused():
    m = create("bnnpan", bands=4, **TINY_MODEL)

    class S:
        name = "warmup"
        options: dict = {}

    with pytest.raises(BinsharpError, match="phase"):
        m.on_stage_start(S())
    assert isinstance(m, BNNPan)


class _StopInStage(L.Callback):
    def __init__(self, stage: str, at: int) -> None:
        self.stage, self.at = stage, at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.stage.name == self.stage and trainer.global_step == self.at:
            raise KeyboardInterrupt


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint")
def test_interrupted_stage_ii_resumes_to_the_same_weights(three_stage_run, tmp_path):
    """Stage II draws training noise from the global generator; a resumed run must reproduce it exactly."""
    from binsharp.train.engine import train, weights_digest

    data, ref = three_stage_run["data"], three_stage_run["res"]
    out = tmp_path / "run"
    kw = {"val_data": data["val"], "config": TINY_RUN, "progress": False, "seed": 0}
    with pytest.raises(SystemExit):
        train("bnnpan", data["train"], out=out, callbacks=[_StopInStage("II", 2)], **kw)
    assert (out / "stages/01-I/weights.safetensors").is_file()
    assert not (out / "stages/02-II/weights.safetensors").exists()
    res = train("bnnpan", data["train"], out=out, resume=True, **kw)
    assert res.steps == {"I": 3, "II": 3, "III": 3}
    assert weights_digest(res.model) == weights_digest(ref.model)


def test_training_loss_per_phase_and_validation_output():
    from binsharp.train.recipe import resolve_stages

    torch.manual_seed(7)
    m = create("bnnpan", bands=4, **{**TINY_MODEL, "prior_init": "offset"})
    stages = {s.name: s for s in resolve_stages(m.default_recipe())}
    x = m.example_inputs(16, batch=2)
    batch = {**x, "gt": torch.rand_like(x["lms"])}
    for name, keys in (("I", {"loss", "sr_loss"}), ("II", {"loss", "latent_l1"}),
                       ("III", {"loss", "sr_loss", "latent_l1"})):  # fmt: skip
        m.zero_grad(set_to_none=True)
        out = m.training_loss(batch, stages[name])
        assert set(out) == keys and out["loss"].dim() == 0 and torch.isfinite(out["loss"])
        out["loss"].backward()
        grads = {n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        enc = any(n.startswith("prior.encoder") for n in grads)
        den = any(n.startswith("prior.denoiser") for n in grads)
        body = any(n.startswith("body.") for n in grads)
        assert (enc, den, body) == {"I": (True, False, True), "II": (False, True, False),
                                    "III": (False, True, True)}[name]  # fmt: skip
    torch.testing.assert_close(out["loss"].detach(), out["sr_loss"] + out["latent_l1"])  # latent_weight 1
    m.eval()
    with torch.no_grad():
        assert torch.equal(m.validation_output(batch, stages["I"]), m(**x, gt=batch["gt"]))
        assert torch.equal(m.validation_output(batch, stages["III"]), m(**x))
        assert not torch.equal(m(**x, gt=batch["gt"]), m(**x))
