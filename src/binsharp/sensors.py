"""Sensor table: band names, RGB display bands, bit depth and MTF Nyquist gains.

The Nyquist gains (GNyq) are those of the reference toolbox (``genMTF``/``MTF``): the amplitude of the
sensor's modulation transfer function at the Nyquist frequency, one value per MS band and one for PAN.
Any sensor the toolbox does not know uses 0.3 per MS band and 0.15 for PAN (GF2 included), as there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from binsharp.errors import BinsharpError
from binsharp.names import resolve_name

_VNIR8 = ("coastal", "blue", "green", "yellow", "red", "red_edge", "nir1", "nir2")
_BGRN = ("blue", "green", "red", "nir")


def max_dn(bits: int) -> int:
    """Largest DN of ``bits``-bit data, ``2**bits - 1``: the normalisation constant of the networks."""
    return 2 ** int(bits) - 1


@dataclass(frozen=True)
class Sensor:
    """Static description of a multispectral/panchromatic sensor pair.

    Attributes:
        name: canonical name (``"WV3"``, ``"QB"``, ..., ``"custom"``).
        bands: MS band names, in file order.
        rgb: 0-based indexes of the red, green and blue bands used for display.
        bits: radiometric depth; DN values lie in ``0 .. 2**bits - 1``.
        gnyq_ms: MTF gain at Nyquist for each MS band.
        gnyq_pan: MTF gain at Nyquist for the PAN band.
        ratio: PAN/MS resolution ratio.
    """

    name: str
    bands: tuple[str, ...]
    rgb: tuple[int, int, int]
    bits: int
    gnyq_ms: tuple[float, ...]
    gnyq_pan: float
    ratio: int = 4
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def max_value(self) -> int:
        """Largest DN, ``2**bits - 1`` (the normalisation constant of the networks, :func:`max_dn`)."""
        return max_dn(self.bits)

    def ratio_or(self, ratio: int | None) -> int:
        """``ratio`` when given, else this sensor's PAN/MS resolution ratio."""
        return self.ratio if ratio is None else ratio

    def check_bands(self, n: int) -> None:
        """Raise :class:`BinsharpError` if an image with ``n`` bands cannot come from this sensor."""
        if n != self.n_bands:
            names = ", ".join(self.bands)
            raise BinsharpError(
                f"band count {n} does not match sensor {self.name} ({self.n_bands} bands: {names})"
            )


SENSORS: dict[str, Sensor] = {
    s.name: s
    for s in (
        Sensor(
            "WV3",
            _VNIR8,
            (4, 2, 1),
            11,
            (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315),
            0.14,
            aliases=("WORLDVIEW3", "WORLDVIEW-3"),
        ),
        Sensor(
            "WV2", _VNIR8, (4, 2, 1), 11, (0.35,) * 7 + (0.27,), 0.11, aliases=("WORLDVIEW2", "WORLDVIEW-2")
        ),
        Sensor("QB", _BGRN, (2, 1, 0), 11, (0.34, 0.32, 0.30, 0.22), 0.15, aliases=("QUICKBIRD",)),
        Sensor("IKONOS", _BGRN, (2, 1, 0), 11, (0.26, 0.28, 0.29, 0.28), 0.17),
        Sensor("GeoEye1", _BGRN, (2, 1, 0), 11, (0.23,) * 4, 0.16, aliases=("GEOEYE1", "GEOEYE-1", "GE1")),
        Sensor("WV4", _BGRN, (2, 1, 0), 11, (0.23,) * 4, 0.16, aliases=("WORLDVIEW4", "WORLDVIEW-4")),
        Sensor("GF2", _BGRN, (2, 1, 0), 10, (0.3,) * 4, 0.15, aliases=("GAOFEN2", "GAOFEN-2")),
    )
}


def custom_sensor(
    n_bands: int,
    *,
    bits: int = 11,
    ratio: int = 4,
    gnyq_ms: float | tuple[float, ...] = 0.3,
    gnyq_pan: float = 0.15,
    rgb: tuple[int, int, int] | None = None,
) -> Sensor:
    """A sensor the table does not list: band count, bit depth, ratio and Nyquist gains given explicitly."""
    if n_bands < 1:
        raise BinsharpError(f"custom sensor needs at least one band, got {n_bands}")
    gains = (float(gnyq_ms),) * n_bands if isinstance(gnyq_ms, (int, float)) else tuple(map(float, gnyq_ms))
    if len(gains) != n_bands:
        raise BinsharpError(f"custom sensor: {len(gains)} MS Nyquist gains for {n_bands} bands")
    if not all(0.0 < g < 1.0 for g in (*gains, gnyq_pan)):
        raise BinsharpError("custom sensor: Nyquist gains must lie strictly between 0 and 1")
    if rgb is None:
        rgb = (2, 1, 0) if n_bands >= 3 else (0, 0, 0)
    return Sensor(
        "custom", tuple(f"band{i + 1}" for i in range(n_bands)), rgb, bits, gains, float(gnyq_pan), ratio
    )


def get_sensor(name: str | Sensor) -> Sensor:
    """Look a sensor up by name or alias (case-insensitive); a :class:`Sensor` is returned unchanged."""
    if isinstance(name, Sensor):
        return name
    table = {alias: s.name for s in SENSORS.values() for alias in (s.name, *s.aliases)}
    return SENSORS[resolve_name(name, table, what="sensor")]


def check_ratio(ratio: int, what: str = "ratio") -> int:
    """Return ``ratio`` as ``int`` if it is a power of two of at least 2, else raise :class:`BinsharpError`.

    The 23-tap interpolation and the decimation phase of the protocol are defined for such ratios only.
    """
    if isinstance(ratio, bool) or int(ratio) != ratio or ratio < 2 or int(ratio) & (int(ratio) - 1):
        raise BinsharpError(f"{what} must be a power of two (2, 4, 8, ...), got {ratio}")
    return int(ratio)


def sensor_from_options(
    name: str | Sensor,
    *,
    n_bands: int | None = None,
    bits: int | None = None,
    ratio: int | None = None,
    gnyq_ms: float | tuple[float, ...] | None = None,
    gnyq_pan: float | None = None,
) -> Sensor:
    """The sensor a user named (command-line options or file attributes): a table sensor or ``custom``.

    ``custom`` is built from ``n_bands`` (required), ``bits`` (default 11), ``ratio`` (default 4) and the
    Nyquist gains (defaults 0.3 and 0.15); ``bits`` and ``ratio`` are validated for any sensor.

    Raises:
        BinsharpError: unknown sensor name (with suggestions), a ratio that is not a power of two, a bit
            depth outside 1..32, or ``custom`` without a band count.
    """
    if ratio is not None:
        check_ratio(ratio)
    if bits is not None and (isinstance(bits, bool) or int(bits) != bits or not 1 <= bits <= 32):
        raise BinsharpError(f"bits must be an integer from 1 to 32, got {bits}")
    if isinstance(name, Sensor) or name.strip().lower() != "custom":
        return get_sensor(name)
    if n_bands is None:
        raise BinsharpError("--sensor custom needs the band count of the data")
    return custom_sensor(
        n_bands,
        bits=int(bits) if bits is not None else 11,
        ratio=int(ratio) if ratio is not None else 4,
        gnyq_ms=0.3 if gnyq_ms is None else gnyq_ms,
        gnyq_pan=0.15 if gnyq_pan is None else gnyq_pan,
    )


def list_sensors() -> list[str]:
    """Names of the sensors in the table."""
    return list(SENSORS)
