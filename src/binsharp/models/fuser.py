"""The ``--model NAME --pretrained DATASET`` fuser source (implemented in :mod:`binsharp.zoo.fuser`).

Importing this module registers the source; see :func:`binsharp.zoo.fuser.pretrained_fuser`.
"""

from __future__ import annotations

from binsharp.zoo.fuser import DEFAULT_PRETRAINED, pretrained_fuser

__all__ = ["DEFAULT_PRETRAINED", "pretrained_fuser"]
