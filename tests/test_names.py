"""The name resolver: canonical names, aliases, suggestions; and the command-line sensor builder."""

from __future__ import annotations

import pytest

from binsharp.errors import BinsharpError
from binsharp.names import resolve_name, suggestions
from binsharp.sensors import check_ratio, get_sensor, sensor_from_options


def test_resolve_name_accepts_case_blanks_and_underscores():
    assert resolve_name(" MTF_GLP_FS ", ["mtf-glp-fs", "gs"], what="method") == "mtf-glp-fs"
    assert resolve_name("quickbird", {"QUICKBIRD": "QB", "WORLDVIEW-3": "WV3"}, what="sensor") == "QB"


def test_unknown_names_get_suggestions_and_the_list():
    with pytest.raises(
        BinsharpError, match=r"unknown method 'awpl'; did you mean awlp\? \(known: gs, awlp\)"
    ):
        resolve_name("awpl", ["gs", "awlp"], what="method")
    with pytest.raises(BinsharpError, match=r"unknown model 'zzz' \(known: bbcu\)"):
        resolve_name("zzz", ["bbcu"], what="model")
    assert suggestions("worldview-2", {"WORLDVIEW-2": "WV2", "WORLDVIEW-3": "WV3"})[0] == "WV2"
    with pytest.raises(BinsharpError, match="did you mean bbcu"):
        from binsharp.models import create

        create("bbcuu")


def test_sensor_from_options():
    assert sensor_from_options("wv3") is get_sensor("WV3")
    s = sensor_from_options("custom", n_bands=5, bits=12, ratio=2, gnyq_ms=0.25)
    assert (s.n_bands, s.bits, s.ratio, s.gnyq_ms) == (5, 12, 2, (0.25,) * 5)
    with pytest.raises(BinsharpError, match="band count"):
        sensor_from_options("custom")
    with pytest.raises(BinsharpError, match="bits must be"):
        sensor_from_options("custom", n_bands=4, bits=0)
    for bad in (0, 3, 1, -4):
        with pytest.raises(BinsharpError, match="power of two"):
            sensor_from_options("WV3", ratio=bad)
    assert check_ratio(8) == 8
