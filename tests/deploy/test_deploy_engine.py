"""End-to-end tests of the packed engine: export, .bsp round trip, decision-forced parity with the PyTorch
model, inference without torch, CLI export and the engine fuser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from binsharp import models
from binsharp.deploy import bsp
from binsharp.deploy import kernels as K
from binsharp.deploy.export import export_model, lower_model, merge_duplicates
from binsharp.deploy.parity import forced_run, record
from binsharp.deploy.runtime import Engine
from binsharp.errors import BinsharpError
from binsharp.nn import BinaryConv2d

pytestmark = pytest.mark.skipif(not K.have_kernels(), reason="compiled kernels not built")

# small configurations: every op kind and unit, fast
MODELS = {
    "bbcu": {"n_units": 4, "zero_tail": False},
    "bireal": {"n_units": 3, "zero_tail": False},
    "reactnet": {"n_units": 3, "zero_tail": False},
    "bnn": {"n_units": 3, "zero_tail": False},
    "irnet": {"n_units": 3, "zero_tail": False},
    "btm": {"n_units": 3, "zero_tail": False},
    "e2fif": {"n_units": 2, "zero_tail": False},
    "bisrnet": {"dim": 16, "zero_tail": False},
    "fabnet": {"n_low": 2, "n_high": 2, "zero_tail": False},
    "s2bnet": {"dim": 16, "zero_tail": False},
    "bnnpan": {"n_modules": 2, "zero_tail": False},
}


def _randomised(name: str, seed: int = 0, **kw) -> torch.nn.Module:
    """A model with non-trivial per-channel parameters and batch-norm statistics (as after training); the
    tail keeps PyTorch's default initialisation (``zero_tail=False``) so that the body reaches the output."""
    torch.manual_seed(seed)
    m = models.create(name, bands=8, **{**MODELS.get(name, {}), **kw}).eval()
    with torch.no_grad():
        for pname, p in m.named_parameters():
            per_channel = p.dim() == 1 or (p.dim() == 4 and p.shape[0] == 1)
            if per_channel and any(k in pname for k in ("gamma", "zeta", "bias", "scale")):
                p.add_(torch.randn_like(p) * 0.05)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
            if type(mod).__name__ == "LatentPriorModulation":  # identity-initialised
                mod.linear.weight.normal_(0, 0.05)
            if type(mod).__name__ == "DynamicSRM":  # zero-initialised
                mod.fc2.weight.normal_(0, 0.1)
    return m


def _inputs(m, size: int = 36, batch: int = 1) -> dict[str, torch.Tensor]:
    return m.example_inputs(size, batch=batch)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_engine_matches_pytorch_with_forced_decisions(name):
    """Every op kind and unit, batch 2, odd-sized levels and borders: fed PyTorch's decisions the engine
    reproduces PyTorch; its own decisions differ only by rounding ties (the zoo networks on a real tile:
    tests/test_deploy_parity.py)."""
    m = _randomised(name)
    inp = _inputs(m, size=20 if name in ("bisrnet", "s2bnet") else 36, batch=2)
    rec = record(m, inp)
    model = bsp.from_bytes(bsp.to_bytes(lower_model(m), "fp32"))
    n_bconv = sum(op["op"] == "bconv" for op in model.graph)
    assert n_bconv == len(m.binary_layers()) == len(rec.negative) > 0
    out, flips = forced_run(Engine(model), {k: v.numpy() for k, v in inp.items()}, rec)
    assert out.shape == rec.output.shape and out.dtype == np.float32
    assert np.abs(out - rec.output).max() <= 1e-4 * np.abs(rec.output).max()
    assert all(f.in_tie_band for f in flips), flips


def test_forced_parity_detects_export_errors():
    """The parity checks fail on a wrong export: a shifted threshold gives flips outside the tie band, a
    wrong scale a forced-parity error."""
    m = _randomised("bbcu", n_units=3)
    inp = _inputs(m, size=24)
    rec = record(m, inp)
    x = {k: v.numpy() for k, v in inp.items()}
    model = lower_model(m)
    bconv = next(op for op in model.graph if op["op"] == "bconv" and "in_bias" in op["params"])
    model.tensors[bconv["params"]["in_bias"]] = model.tensors[bconv["params"]["in_bias"]] + np.float32(0.05)
    _, flips = forced_run(Engine(model), x, rec)
    assert flips and not all(f.in_tie_band for f in flips)
    model = lower_model(m)
    model.tensors[bconv["params"]["alpha"]] = model.tensors[bconv["params"]["alpha"]] * np.float32(2)
    out, _ = forced_run(Engine(model), x, rec)
    assert np.abs(out - rec.output).max() > 1e-4 * np.abs(rec.output).max()


@pytest.mark.parametrize("name", ["s2bnet", "bisrnet"])
def test_fused_means_and_second_activations(name):
    """The U bodies' RPReLU of (a concatenation of) binary convolutions' outputs is those convolutions'
    second activation, their (a + b) * 0.5 a second addend and a scaling of the second convolution, and
    S2BNet's global means of such outputs (and of their chunks) come from the epilogues' sums: fed
    PyTorch's decisions the engine reproduces PyTorch, its own decisions flip only in the tie band; with the
    halves of a mean swapped the flips leave the tie band."""
    m = _randomised(name)
    inp = _inputs(m, size=20, batch=2)
    rec = record(m, inp)
    x = {k: v.numpy() for k, v in inp.items()}
    model = lower_model(m)
    graph = model.graph
    assert not any(op["op"] in ("rprelu", "mul_scalar") for op in graph)
    assert any("gamma2" in op["params"] for op in graph if op["op"] == "bconv")
    assert any("res2" in op["attrs"].get("in_roles", []) for op in graph if op["op"] == "bconv")
    out, flips = forced_run(Engine(model), x, rec)
    assert np.abs(out - rec.output).max() <= 1e-4 * np.abs(rec.output).max()
    assert all(f.in_tie_band for f in flips), flips
    if name == "bisrnet":  # no dynamic thresholds: no means
        return
    with_mean = [op for op in graph if op["op"] == "bconv" and len(op["out"]) > 2]
    assert with_mean and all(op["attrs"]["outputs"][2] for op in with_mean)
    halves = next(op for op in graph if op["op"] == "chunk" and op["in"][0].endswith(".mean"))
    halves["out"].reverse()
    _, flips = forced_run(Engine(model), x, rec)
    assert flips and not all(f.in_tie_band for f in flips)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_engine_reuses_buffers_without_side_effects(name):
    """Repeated calls (dead arrays reused, elementwise ops in place) give the same output, leave the
    inputs and the previously returned output untouched."""
    m = _randomised(name)
    inp = {k: v.numpy().copy() for k, v in _inputs(m, size=20).items()}
    keep = {k: v.copy() for k, v in inp.items()}
    eng = Engine(lower_model(m))
    first = eng(**inp)
    first_copy = first.copy()
    with torch.no_grad():  # batch 1: binary convolutions write straight into concatenation buffers
        ref = m(**{k: torch.from_numpy(v) for k, v in inp.items()}).numpy()
    assert np.abs(first - ref).max() <= 1e-4 * np.abs(ref).max()
    second = eng(**inp)
    assert second is not first
    np.testing.assert_array_equal(second, first_copy)
    np.testing.assert_array_equal(first, first_copy)
    for k in inp:
        np.testing.assert_array_equal(inp[k], keep[k])
    assert any(eng._pool.values()), "no dead array was kept for reuse"


def test_engine_pools_arrays_once_their_views_die():
    """An array read only through views (the halves of a chunk) goes back to the pool when its last view
    dies, so the next call reuses it instead of faulting in fresh pages; a view that is an output keeps it."""
    meta = {"name": "views", "bands": 1, "inputs": ["pan"]}
    ops = [
        {"op": "mul_scalar", "in": ["pan"], "out": ["a"], "attrs": {"value": 2.0}},
        {"op": "cat", "in": ["a", "pan"], "out": ["c"]},
        {"op": "chunk", "in": ["c"], "out": ["c0", "c1"], "attrs": {"chunks": 2}},
        {"op": "add", "in": ["c0", "c1"], "out": ["y"]},
    ]
    pan = np.random.default_rng(0).random((1, 1, 8, 8), np.float32)
    eng = Engine(bsp.BspModel(meta, ops, ["y"], {}))
    y = eng(pan=pan)
    np.testing.assert_array_equal(y, pan * np.float32(2) + pan)
    pooled = eng._pool.get((1, 2, 8, 8), [])
    assert len(pooled) == 1, "the concatenation was not pooled after its halves died"
    cat_buf = pooled[0]
    assert eng(pan=pan) is not y
    assert [b is cat_buf for b in eng._pool[(1, 2, 8, 8)]] == [True]  # reused, then pooled again
    np.testing.assert_array_equal(y, pan * np.float32(2) + pan)
    eng = Engine(bsp.BspModel(meta, ops[:3], ["c1"], {}))
    out = eng(pan=pan)
    assert not eng._pool.get((1, 2, 8, 8))  # still read through the returned half
    np.testing.assert_array_equal(out, pan)


@pytest.mark.parametrize("path", K.available_paths() if K.have_kernels() else [])
def test_engine_same_on_every_kernel_path(path, monkeypatch):
    m = _randomised("bbcu", n_units=3)
    inp = {k: v.numpy() for k, v in _inputs(m, 24).items()}
    model = lower_model(m)
    base = Engine(model, path="generic")(**inp)
    monkeypatch.setenv(K.ENV_PATH, path)
    np.testing.assert_array_equal(Engine(model, threads=2)(**inp), base)


def test_profile_shares_per_op_kind():
    """``profile=True`` accumulates time per op kind without changing the output (the packing of float
    inputs apart only where it runs apart: decision-forced runs)."""
    m = _randomised("s2bnet")
    inp = {k: v.numpy() for k, v in _inputs(m, 24).items()}
    model = lower_model(m)
    eng = Engine(model, profile=True)
    out = eng(**inp)
    eng(**inp)
    np.testing.assert_array_equal(out, Engine(model)(**inp))
    rows = eng.profile_table()
    kinds = {r["op"] for r in rows}
    assert {"bconv", "layernorm_c"} <= kinds and "bconv.pack" not in kinds
    assert abs(sum(r["share"] for r in rows) - 1) < 1e-9
    n_bconv = sum(op["op"] == "bconv" for op in model.graph)
    assert next(r for r in rows if r["op"] == "bconv")["count"] == n_bconv
    forced = Engine(model, profile=True)
    forced_run(forced, inp, record(m, {k: torch.from_numpy(v) for k, v in inp.items()}))
    assert "bconv.pack" in {r["op"] for r in forced.profile_table()}
    assert [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)
    assert "bconv" in eng.format_profile()
    with pytest.raises(BinsharpError, match="profile=True"):
        Engine(model).profile_table()


def test_engine_runs_blas_on_one_thread(monkeypatch):
    """During a call numpy's BLAS is limited to one thread (its idle workers would spin on the cores the
    kernels' threads need); the caller's setting is restored afterwards."""
    from threadpoolctl import ThreadpoolController, threadpool_limits

    from binsharp.deploy import runtime

    if not ThreadpoolController().select(user_api="blas").lib_controllers:
        pytest.skip("numpy reports no BLAS library")
    seen: list[int] = []
    linear = runtime._OPS["linear"]

    def spy(eng, args, params, attrs):
        seen.append(ThreadpoolController().select(user_api="blas").info()[0]["num_threads"])
        return linear(eng, args, params, attrs)

    monkeypatch.setitem(runtime._OPS, "linear", spy)
    m = _randomised("s2bnet")
    inp = {k: v.numpy() for k, v in _inputs(m, 24).items()}
    eng = Engine(lower_model(m), threads=2)
    with threadpool_limits(limits=2, user_api="blas"):
        eng(**inp)
        after = ThreadpoolController().select(user_api="blas").info()[0]["num_threads"]
    assert seen and set(seen) == {1}
    assert after == 2


def test_binary_weights_are_one_bit(tmp_path):
    m = _randomised("bbcu", n_units=20)
    model = lower_model(m)
    stored_bits = sum(a.nbytes * 8 for a in model.tensors.values() if a.dtype == np.uint8)
    n_binary = sum(mm.weight.numel() for mm in m.modules() if isinstance(mm, BinaryConv2d) and mm.is_binary)
    assert stored_bits == n_binary  # 32 * 32 * 9 per layer: a multiple of 8
    export_model(m, tmp_path / "m.bsp", meta={"bits": 11, "ratio": 4})
    float_bytes = sum(p.numel() * 4 for p in m.parameters())
    assert (tmp_path / "m.bsp").stat().st_size * 8 < float_bytes


def test_inference_does_not_import_torch(tmp_path):
    m = _randomised("bisrnet")
    inp = {k: v.numpy() for k, v in _inputs(m, 20).items()}
    with torch.no_grad():
        ref = m(**{k: torch.from_numpy(v) for k, v in inp.items()}).numpy()
    export_model(m, tmp_path / "m.bsp", meta={"bits": 11}, storage="fp32")
    np.savez(tmp_path / "in.npz", **inp)
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked")
        sys.meta_path.insert(0, Block())
        import numpy as np
        from binsharp.deploy.runtime import Engine
        inp = dict(np.load({str(tmp_path / "in.npz")!r}))
        out = Engine({str(tmp_path / "m.bsp")!r})(**inp)
        np.save({str(tmp_path / "out.npy")!r}, out)
        assert not any(k == "torch" or k.startswith("torch.") for k in sys.modules)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = np.load(tmp_path / "out.npy")
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("name", ["bbcu", "s2bnet", "bnnpan"])
def test_engine_without_compiled_kernels_matches(name, tmp_path):
    """``BINSHARP_NO_EXT=1`` (as an install without a C compiler): a binary model runs on the numpy reference
    kernels with one warning and gives the compiled engine's output (BNNPan at a size whose Haar bands the
    compiled engine calibrates in one pass)."""
    m = _randomised(name)
    inp = {k: v.numpy() for k, v in _inputs(m, 32 if name == "bnnpan" else 20).items()}
    export_model(m, tmp_path / "m.bsp")
    np.savez(tmp_path / "in.npz", **inp)
    ref = Engine(tmp_path / "m.bsp")(**inp)
    code = textwrap.dedent(f"""
        import warnings
        import numpy as np
        from binsharp.deploy import kernels as K
        from binsharp.deploy.runtime import Engine
        assert not K.have_kernels()
        inp = dict(np.load({str(tmp_path / "in.npz")!r}))
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            eng = Engine({str(tmp_path / "m.bsp")!r})
            eng(**inp)
            out = eng(**inp)
        assert len([w for w in rec if "numpy reference" in str(w.message)]) == 1, rec
        np.save({str(tmp_path / "out.npy")!r}, out)
    """)
    env = {**os.environ, K.ENV_NO_EXT: "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = np.load(tmp_path / "out.npy")
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_bnnpan_calibration_runs_on_haar_bands():
    """BNNPan's PIBFs hand their features on as Haar bands: each ``calibrate`` reads its module's sub-bands
    and (but the last) writes the next module's, without interleaved copies (band width a multiple of 4: the
    one-pass kernels); fed PyTorch's decisions the engine reproduces PyTorch, batch 2."""
    m = _randomised("bnnpan", n_modules=3)
    inp = _inputs(m, size=32, batch=2)
    model = bsp.from_bytes(bsp.to_bytes(lower_model(m), "fp32"))
    cal = [i for i, op in enumerate(model.graph) if op["op"] == "calibrate"]
    assert [(model.graph[i]["attrs"]["haar_in"], model.graph[i]["attrs"]["haar_out"]) for i in cal] == [
        (True, True),
        (True, True),
        (True, False),
    ]
    assert not any(op["op"] in ("haar_idwt", "stats", "mean_hw", "div") for op in model.graph[cal[0] :])
    eng = Engine(model)
    assert set(cal[:2]) <= eng._band_plan
    out, flips = forced_run(eng, {k: v.numpy() for k, v in inp.items()}, record(m, inp))
    ref = record(m, inp).output
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    assert all(f.in_tie_band for f in flips), flips


def test_cli_export_and_engine_fuser(tmp_path, capsys):
    from binsharp.cli import main
    from binsharp.inference.engine import engine_fuser

    out = tmp_path / "bbcu.bsp"
    cfg = json.dumps({"n_units": 2})
    assert main(["export", "--model", "bbcu", "--config", cfg, "--bits", "11", "-o", str(out)]) == 0
    assert "binary convolutions" in capsys.readouterr().out
    assert main(["export", "--model", "bbcu", "--config", cfg, "-o", str(out)]) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err
    fuser = engine_fuser(out)
    assert fuser.bands == 8 and fuser.bits == 11 and fuser.ratio == 4
    torch.manual_seed(0)
    m = models.create("bbcu", bands=8, n_units=2).eval()
    rng = np.random.default_rng(0)
    ms = rng.uniform(100, 2000, (8, 6, 7))
    pan = rng.uniform(100, 2000, (1, 24, 28))
    lms = np.repeat(np.repeat(ms, 4, axis=1), 4, axis=2)
    fused = fuser(ms, pan, lms)
    s = 2047.0
    with torch.no_grad():
        ref = m(lms=torch.from_numpy(lms / s).float()[None], pan=torch.from_numpy(pan / s).float()[None])
    ref = ref[0].double().numpy() * s
    assert fused.shape == (8, 24, 28) and fused.dtype == np.float64
    assert np.abs(fused - ref).max() <= 1e-4 * np.abs(ref).max()


def test_engine_fuser_registered():
    from binsharp.cli.fusers import fuser_sources

    assert "engine" in fuser_sources()


@pytest.mark.parametrize(
    "name,kw",
    [
        ("s2bnet", {"dim": 8, "srm": "static"}),
        ("s2bnet", {"dim": 8, "srm": "off", "gsfa": "activation"}),
        ("s2bnet", {"dim": 8, "gsfa": "init"}),
        ("bnnpan", {"n_modules": 1, "prior": False, "zero_tail": False}),
        ("bnnpan", {"n_modules": 1, "dwt": False, "norm": False, "zero_tail": False}),
        ("bbcu", {"body": "unet", "dim": 8}),
    ],
)
def test_ablation_variants_export(name, kw):
    m = _randomised(name, **kw)
    inp = _inputs(m, size=24)
    with torch.no_grad():
        ref = m(**inp).numpy()
    eng = Engine(bsp.from_bytes(bsp.to_bytes(lower_model(m), "fp32")))
    out = eng(**{k: v.numpy() for k, v in inp.items()})
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_lowering_extension_point():
    """A new module type plugs into the exporter with register_lowering, next to its definition; without
    one, a module whose forward pass branches on shapes is refused clearly."""
    from torch import nn

    from binsharp.errors import BinsharpError
    from binsharp.nn.lowering import lowering_for, register_lowering

    class OddDouble(nn.Module):
        def forward(self, x):
            return x * 2 if x.shape[-1] % 2 else x

    class Tiny(nn.Module):
        bands, inputs = 4, ("lms", "pan")

        def __init__(self) -> None:
            super().__init__()
            self.inner = OddDouble()

        def forward(self, lms, pan):
            return self.inner(lms) + pan

    register_lowering(Tiny, lambda lw, m, i: lw.b.op("add", [lw.emit(m.inner, [i[0]], "inner")[0], i[1]]))
    with pytest.raises(BinsharpError, match="cannot export module inner"):
        lower_model(Tiny())
    register_lowering(OddDouble, lambda lw, m, i: lw.b.op("mul_scalar", i, attrs={"value": 2.0}))
    assert lowering_for(OddDouble()) is not None
    lms, pan = np.ones((1, 4, 5, 5), np.float32), np.full((1, 1, 5, 5), 0.5, np.float32)
    np.testing.assert_array_equal(Engine(lower_model(Tiny()))(lms=lms, pan=pan), np.full((1, 4, 5, 5), 2.5))


def test_quantizer_without_export_form_is_refused():
    from binsharp.errors import BinsharpError
    from binsharp.nn import ActivationQuantizer, sign

    class Shifted(ActivationQuantizer):  # sign(x - 0.5): declares no export form
        def forward(self, x):
            return sign(x - 0.5)

    m = _randomised("bbcu", n_units=1)
    conv = next(mm for mm in m.modules() if isinstance(mm, BinaryConv2d) and mm.is_binary)
    conv.input_quantizer.quantizer = Shifted()
    with pytest.raises(BinsharpError, match="non-sign inner quantizer|does not declare an export form"):
        lower_model(m)
    conv.input_quantizer = Shifted()
    with pytest.raises(BinsharpError, match="Shifted does not declare an export form"):
        lower_model(m)


def test_repeated_ops_are_merged():
    """An op that repeats an earlier one (S2BNet's SRMs take the global mean of one tensor twice) is
    dropped at export; its readers read the earlier result, with the same output."""
    m = _randomised("s2bnet")
    model = lower_model(m)
    graph = model.graph
    keys = [
        json.dumps([o["op"], o["in"], o.get("attrs", {}), o.get("params", {})], sort_keys=True) for o in graph
    ]
    assert len(set(keys)) == len(keys)
    i = next(i for i, o in enumerate(graph) if o["op"] == "mean_hw")
    name = graph[i]["out"][0]
    j = next(j for j in range(i + 1, len(graph)) if name in graph[j]["in"])
    again = {**graph[i], "out": [name + ".again"]}
    reader = {**graph[j], "in": [name + ".again" if n == name else n for n in graph[j]["in"]]}
    ops = [*graph[: i + 1], again, *graph[i + 1 : j], reader, *graph[j + 1 :]]
    outputs = list(model.outputs)
    inp = {k: v.numpy() for k, v in _inputs(m, 20).items()}
    repeated = Engine(bsp.BspModel(model.model, ops, outputs, model.tensors))(**inp)
    assert merge_duplicates(ops, outputs) == graph and outputs == model.outputs
    np.testing.assert_array_equal(repeated, Engine(model)(**inp))
