"""``binsharp export``: write a trained (or randomly initialised) network as a ``.bsp`` engine model.

Examples::

    binsharp export --checkpoint runs/bbcu/model.safetensors -o bbcu.bsp
    binsharp export --model bbcu --pretrained wv3-longmont -o bbcu.bsp   # model-zoo weights
    binsharp export --model bbcu --bands 8 -o bbcu-random.bsp      # random weights, for testing
    binsharp export --model s2bnet --pretrained wv3-longmont --storage int8 -o s2bnet.bsp

The file holds the graph, the binary weights packed one bit per weight and the float layers in float16
(``--storage fp32``: as trained; ``--storage int8``: convolution and linear weights in int8 with one scale per
output channel), with checksums (format: :mod:`binsharp.deploy.bsp`). ``binsharp fuse --engine MODEL.bsp``
runs it.
"""

from __future__ import annotations

import argparse
import json
import os

from binsharp.deploy.bsp import DEFAULT_STORAGE, STORAGE
from binsharp.errors import BinsharpError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="export a binary network to the packed engine format (.bsp)",
        description="Export a trained binsharp checkpoint (or a registered model with random weights) to a "
        ".bsp file run by the bit-packed XNOR-popcount engine without PyTorch.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="binsharp checkpoint written by 'binsharp train'")
    src.add_argument(
        "--model", metavar="NAME", help="registered model name (random weights unless --pretrained)"
    )
    p.add_argument("--pretrained", metavar="DATASET", default=None, help="with --model: model-zoo weights")
    p.add_argument("--bands", type=int, default=8, help="MS bands for --model (default 8)")
    p.add_argument("--bits", type=int, default=None, help="bit depth of the data to store (--model only)")
    p.add_argument("--ratio", type=int, default=4, help="PAN/MS ratio to store (--model only, default 4)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed for --model (default 0)")
    p.add_argument("--config", default=None, help="JSON object of model keyword arguments for --model")
    p.add_argument(
        "--storage",
        choices=STORAGE,
        default=DEFAULT_STORAGE,
        help=f"storage of the float tensors (default {DEFAULT_STORAGE}; fp32: as trained; int8: convolution "
        "and linear weights in int8 with per-channel scales, the rest fp16; thresholds stay fp32)",
    )
    p.add_argument("-o", "--output", required=True, metavar="MODEL.bsp", help="output file")
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from binsharp.deploy.export import export_model
    from binsharp.fileio import check_output_path

    check_output_path(args.output, overwrite=args.overwrite, inputs=(args.checkpoint,))
    if args.checkpoint:
        from binsharp.models import load_checkpoint

        model, meta = load_checkpoint(args.checkpoint)
    elif args.pretrained:
        from binsharp.models import load_pretrained

        model, meta = load_pretrained(args.model, args.pretrained)
    else:
        from binsharp import models

        try:
            config = json.loads(args.config) if args.config else {}
        except json.JSONDecodeError as exc:
            raise BinsharpError(f"--config is not valid JSON: {exc}") from None
        if not isinstance(config, dict):
            raise BinsharpError("--config must be a JSON object")
        torch.manual_seed(args.seed)
        model = models.create(args.model, bands=args.bands, **config)
        meta = {"bits": args.bits, "ratio": args.ratio}
    m = export_model(model, args.output, meta=meta, storage=args.storage, overwrite=args.overwrite)
    nbin = sum(1 for op in m.graph if op["op"] == "bconv")
    size = os.path.getsize(args.output)
    print(f"wrote {args.output}: model {m.model['name']}, {len(m.graph)} ops ({nbin} binary convolutions), "
          f"{size / 1024:.1f} KiB, float tensors {args.storage}")  # fmt: skip
    return 0
