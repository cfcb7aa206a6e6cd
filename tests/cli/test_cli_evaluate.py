"""``binsharp evaluate`` end to end on small generated PanCollection h5 files.

The JSON written by the command is checked against the metrics API called directly on the same images.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from binsharp import __version__
from binsharp.cli import main
from binsharp.data import write_h5, write_mat
from binsharp.inference.fuser import method_fuser
from binsharp.metrics import full_resolution, reduced_resolution
from binsharp.protocol import interp23tap, reduced_resolution_triplet
from binsharp.sensors import get_sensor

WV3 = get_sensor("WV3")


def _scene(h: int, w: int, seed: int, bands: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Smooth synthetic 11-bit scene: ms (C,h,w) and pan (1,4h,4w) in DN."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : 4 * h, 0 : 4 * w] / 4.0
    base = 900 + 300 * np.sin(yy / (4 + seed)) * np.cos(xx / 6.0) + rng.normal(0, 15, size=yy.shape)
    pan = np.clip(base, 1, 2047)[None]
    lr = pan[0].reshape(h, 4, w, 4).mean(axis=(1, 3))
    ms = np.stack([np.clip(lr * (0.5 + 0.1 * b) + rng.normal(0, 5, lr.shape), 1, 2047) for b in range(bands)])
    return np.rint(ms), np.rint(pan)


def _rr_h5(path: Path, n: int = 3, size: int = 96, attrs: dict | None = None) -> dict[str, np.ndarray]:
    items = [reduced_resolution_triplet(*_scene(size, size, seed=i), WV3) for i in range(n)]
    arrays = {k: np.stack([it[k] for it in items]) for k in ("gt", "ms", "lms", "pan")}
    write_h5(path, arrays, {"sensor": "WV3", "bits": 11, "ratio": 4} if attrs is None else attrs)
    return arrays


def _fr_h5(path: Path, n: int = 2, size: int = 64, attrs: dict | None = None) -> dict[str, np.ndarray]:
    items = [_scene(size // 4, size // 4, seed=10 + i) for i in range(n)]
    arrays = {
        "ms": np.stack([m for m, _ in items]),
        "lms": np.stack([interp23tap(m, 4) for m, _ in items]),
        "pan": np.stack([p for _, p in items]),
    }
    write_h5(path, arrays, {"sensor": "WV3", "bits": 11, "ratio": 4} if attrs is None else attrs)
    return arrays


def _stats(per_image: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = per_image[0].keys()
    return {k: float(np.mean([p[k] for p in per_image])) for k in keys}, {
        k: float(np.std([p[k] for p in per_image], ddof=1)) for k in keys
    }


def _assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), k


@pytest.fixture(scope="module")
def rr(tmp_path_factory):
    path = tmp_path_factory.mktemp("rr") / "test_rr.h5"
    return path, _rr_h5(path)


@pytest.fixture(scope="module")
def fr(tmp_path_factory):
    path = tmp_path_factory.mktemp("fr") / "test_fr.h5"
    return path, _fr_h5(path)


def test_reduced_resolution_json_matches_the_metrics_api(rr, tmp_path, capsys):
    path, arrays = rr
    out = tmp_path / "r.json"
    assert main(["evaluate", "--method", "gs,mtf-glp-hpm", "--data", str(path), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "reduced resolution" in table and "±" in table and "mtf-glp-hpm" in table and "q2n" in table
    report = json.loads(out.read_text())
    s = report["settings"]
    assert (s["sensor"], s["ratio"], s["bits"], s["block"], s["dim_cut"]) == ("WV3", 4, 11, 32, 21)
    assert s["binsharp_version"] == __version__ and s["data_manifest_id"].startswith("sha256:")
    assert list(report["results"]) == ["rr"]
    for name in ("gs", "mtf-glp-hpm"):
        fuser = method_fuser(name, "WV3")
        want = [
            reduced_resolution(fuser(arrays["ms"][i], arrays["pan"][i], arrays["lms"][i]), arrays["gt"][i])
            for i in range(3)
        ]
        res = report["results"]["rr"][name]
        assert len(res["per_image"]) == 3
        for got, exp in zip(res["per_image"], want, strict=True):
            _assert_close(got, exp)
        mean, std = _stats(want)
        _assert_close(res["mean"], mean)
        _assert_close(res["std"], std)


def test_full_resolution_json_and_csv(fr, tmp_path):
    path, arrays = fr
    js, cs = tmp_path / "f.json", tmp_path / "f.csv"
    argv = ["evaluate", "--method", "mtf-glp-fs", "--data", str(path), "--json", str(js), "--csv", str(cs)]
    assert main(argv) == 0
    report = json.loads(js.read_text())
    assert list(report["results"]) == ["fr"]
    fuser = method_fuser("mtf-glp-fs", "WV3")
    want = [
        full_resolution(
            fuser(arrays["ms"][i], arrays["pan"][i], arrays["lms"][i]),
            arrays["ms"][i],
            arrays["pan"][i],
            sensor=WV3,
            ms_up=arrays["lms"][i],
        )
        for i in range(2)
    ]
    res = report["results"]["fr"]["mtf-glp-fs"]
    for got, exp in zip(res["per_image"], want, strict=True):
        _assert_close(got, exp)
    assert {"d_lambda_k", "d_s", "hqnr"} <= set(res["mean"])
    rows = list(csv.DictReader(cs.open()))
    assert {r["image"] for r in rows} == {"0", "1", "mean", "std"}
    hq = [r for r in rows if r["index"] == "hqnr" and r["image"] == "1"]
    assert len(hq) == 1 and float(hq[0]["value"]) == pytest.approx(want[1]["hqnr"], rel=1e-12)


def test_limit_all_methods_and_rr_file_as_fr(rr, tmp_path):
    path, _ = rr
    out = tmp_path / "a.json"
    argv = [
        "evaluate",
        "--method",
        "all",
        "--data",
        str(path),
        "--limit",
        "1",
        "--split",
        "both",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    methods = ("exp", "bt-h", "gs", "gsa", "bdsd-pc", "mtf-glp-hpm", "mtf-glp-fs", "awlp")
    assert set(report["results"]) == {"rr", "fr"}
    assert tuple(report["results"]["rr"]) == methods
    assert all(len(r["per_image"]) == 1 for r in report["results"]["rr"].values())


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("kind", ["npy", "mat", "tif", "h5"])
def test_fused_outputs_of_an_external_model(rr, tmp_path, kind):
    path, arrays = rr
    fuser = method_fuser("awlp", "WV3")
    fused = np.stack([fuser(arrays["ms"][i], arrays["pan"][i]) for i in range(3)])
    if kind == "h5":
        import h5py

        src = tmp_path / "fused.h5"
        with h5py.File(src, "w") as f:
            f["sr"] = fused
    else:
        src = tmp_path / "fused"
        src.mkdir()
        for i, img in enumerate(fused):
            name = src / f"img_{i:02d}.{kind}"
            if kind == "npy":
                np.save(name, img)
            elif kind == "mat":
                write_mat(name, {"sr": img})
            else:
                import rasterio

                with rasterio.open(
                    name, "w", driver="GTiff", width=96, height=96, count=8, dtype="float64"
                ) as d:
                    d.write(img)
    out = tmp_path / "x.json"
    assert main(["evaluate", "--fused", str(src), "--data", str(path), "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]["rr"]
    (name,) = res
    want = [reduced_resolution(fused[i], arrays["gt"][i]) for i in range(3)]
    for got, exp in zip(res[name]["per_image"], want, strict=True):
        _assert_close(got, exp)


def test_sensor_from_option_when_the_file_has_none(tmp_path, capsys):
    path = tmp_path / "bare.h5"
    _fr_h5(path, n=1, attrs={})
    assert main(["evaluate", "--method", "exp", "--data", str(path)]) == 2
    assert "does not record its sensor" in capsys.readouterr().err
    assert main(["evaluate", "--method", "exp", "--data", str(path), "--sensor", "WV3"]) == 0
    assert main(["evaluate", "--method", "exp", "--data", str(path), "--sensor", "QB"]) == 2
    assert "band count 8" in capsys.readouterr().err


def test_dataset_directory_evaluates_both_splits(tmp_path):
    d = tmp_path / "mydata"
    d.mkdir()
    _rr_h5(d / "test_rr.h5", n=2)
    _fr_h5(d / "test_fr.h5", n=2)
    manifest = {
        "name": "mydata",
        "splits": {"test_rr": {"file": "test_rr.h5"}, "test_fr": {"file": "test_fr.h5"}},
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "d.json"
    assert main(["evaluate", "--method", "exp", "--data", str(d), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"rr", "fr"}
    assert report["data"]["splits"]["rr"]["n_images"] == 2
    # the manifest identifies the data
    ids = {s["manifest_id"] for s in report["data"]["splits"].values()}
    assert ids == {report["settings"]["data_manifest_id"]}


def test_json_of_a_perfect_fusion_is_strict_json(rr, tmp_path):
    """A fusion equal to the reference has non-finite indexes (e.g. PSNR); the JSON stays parseable by strict
    readers: they are written as the strings "inf", "-inf" or "nan"."""
    path, arrays = rr
    src = tmp_path / "fused.h5"
    import h5py

    with h5py.File(src, "w") as f:
        f["sr"] = arrays["gt"]
    out = tmp_path / "perfect.json"
    assert main(["evaluate", "--fused", str(src), "--data", str(path), "--json", str(out)]) == 0

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON literal {token}")

    report = json.loads(out.read_text(), parse_constant=refuse)
    (res,) = report["results"]["rr"].values()
    values = [v for img in res["per_image"] for v in img.values()]
    assert any(v in ("inf", "-inf", "nan") for v in values)  # the non-finite values are kept, as strings
    assert res["per_image"][0]["q2n"] == pytest.approx(1.0)
