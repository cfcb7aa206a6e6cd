"""Build of the compiled kernels (``binsharp.native._bitkern``); metadata lives in pyproject.toml.

The extension is built for the baseline ISA; on x86 the AVX2 and AVX-512 code paths are compiled with function
target attributes and chosen at run time, so no ``-march`` flag is used (other CPUs get the portable C path).
OpenMP is used unless ``BINSHARP_NO_OPENMP=1``; ``BINSHARP_NO_EXT=1`` skips the extension.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

use_openmp = os.environ.get("BINSHARP_NO_OPENMP", "") in ("", "0")

compile_args = ["-O3", "-std=gnu11", "-ffp-contract=off"]
link_args: list[str] = []
if use_openmp:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

ext_modules = []
if os.environ.get("BINSHARP_NO_EXT", "") in ("", "0"):
    ext_modules.append(
        Extension(
            "binsharp.native._bitkern",
            sources=["src/binsharp/native/_bitkern.c"],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
