import pytest

from binsharp.errors import BinsharpError
from binsharp.sensors import SENSORS, custom_sensor, get_sensor, list_sensors


def test_table_has_the_field_sensors():
    assert set(list_sensors()) == {"WV3", "WV2", "QB", "IKONOS", "GeoEye1", "WV4", "GF2"}
    for sensor in SENSORS.values():
        assert len(sensor.gnyq_ms) == sensor.n_bands
        assert all(0 <= i < sensor.n_bands for i in sensor.rgb)


def test_toolbox_nyquist_gains():
    assert get_sensor("WV3").gnyq_ms == (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315)
    assert get_sensor("WV3").gnyq_pan == 0.14
    assert get_sensor("wv2").gnyq_ms[-1] == 0.27 and get_sensor("WV2").gnyq_pan == 0.11
    assert get_sensor("QuickBird").gnyq_ms == (0.34, 0.32, 0.30, 0.22)
    assert get_sensor("GF2").bits == 10 and get_sensor("GF2").max_value == 1023
    assert get_sensor("WV3").rgb == (4, 2, 1)


def test_custom_sensor():
    s = custom_sensor(5, bits=12, gnyq_ms=0.25, gnyq_pan=0.12)
    assert s.n_bands == 5 and s.bits == 12 and s.gnyq_ms == (0.25,) * 5 and s.max_value == 4095
    with pytest.raises(BinsharpError, match="Nyquist gains"):
        custom_sensor(2, gnyq_ms=(0.3,))
    with pytest.raises(BinsharpError, match="strictly between"):
        custom_sensor(2, gnyq_ms=1.5)


def test_errors_name_the_problem():
    with pytest.raises(BinsharpError, match="unknown sensor 'XX'"):
        get_sensor("XX")
    with pytest.raises(BinsharpError, match="band count 4 does not match sensor WV3"):
        get_sensor("WV3").check_bands(4)
