"""Wald reduced-resolution protocol, exact to the reference MATLAB toolbox.

Arrays are channel-first float64 numpy arrays, (C, H, W), in digital numbers (DN).

* :func:`gen_mtf` -- ``genMTF`` filter design (41 x 41, fwind1/kaiser, not renormalised).
* :func:`mtf_filter` -- per-band MTF low-pass (``imfilter`` correlation, replicate borders).
* :func:`imresize` -- MATLAB ``imresize`` (antialiased bicubic a = -0.5, symmetric borders; nearest).
* :func:`decimate` -- nearest decimation with the toolbox phase (``x[..., 2::4, 2::4]`` for ratio 4).
* :func:`interp23tap` -- the 23-tap interpolator (LR pixel k lands on HR index 4k + 2 for ratio 4).
* :func:`resize_images`, :func:`reduced_resolution_triplet` -- the reduced-resolution simulation.
"""

from binsharp.protocol.interp import interp23tap, kernel23
from binsharp.protocol.mtf import gen_mtf, mtf_filter
from binsharp.protocol.resize import decimate, imresize
from binsharp.protocol.wald import reduced_resolution_triplet, resize_images

__all__ = [
    "decimate",
    "gen_mtf",
    "imresize",
    "interp23tap",
    "kernel23",
    "mtf_filter",
    "reduced_resolution_triplet",
    "resize_images",
]
