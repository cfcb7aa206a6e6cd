"""``binsharp train``: train a model on a dataset following its (multi-stage) recipe.

Examples::

    binsharp train --model pnn --data wv3-longmont --max-steps 2000 --out runs/pnn
    binsharp train --model bnnpan --data wv3-longmont --config my.yaml --out runs/bnnpan --resume
    binsharp train --model s2bnet --data train_wv3.h5 --val-data valid_wv3.h5 --bits 11 --out runs/s2bnet
    # DDP, Lightning starts the processes:
    binsharp train --model pnn --data wv3-longmont --accelerator gpu --devices 4 --strategy ddp --out runs/pnn
    # DDP, one process per device started by torchrun:
    torchrun --nproc_per_node 4 -m binsharp.cli train --model pnn --data wv3-longmont \\
        --accelerator gpu --devices 4 --strategy ddp --out runs/pnn
    # two nodes of 4 GPUs (run on each node with its --node-rank; the run directory on shared storage):
    torchrun --nnodes 2 --node-rank R --master-addr HOST0 --master-port 29500 --nproc_per_node 4 \\
        -m binsharp.cli train --model pnn --data wv3-longmont --accelerator gpu --devices 4 \\
        --num-nodes 2 --strategy ddp --out /shared/runs/pnn
    # CPU only, two processes with the gloo backend (as in the test suite):
    torchrun --standalone --nproc_per_node 2 -m binsharp.cli train --model pnn --data wv3-longmont \\
        --accelerator cpu --devices 2 --strategy ddp --out runs/pnn-ddp

The run directory receives ``model.safetensors`` + ``model.json`` (the final checkpoint), ``run.json`` and
``stages/<NN>-<stage>/`` with resumable checkpoints and CSV (and TensorBoard) logs. ``--batch-size`` is per
process: the effective batch is ``batch_size * devices * num_nodes``. Build a catalog dataset before a
multi-node run (``binsharp data build NAME``) when the nodes do not share the cache directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class _HelpWithModels(argparse.Action):
    """``-h/--help`` that lists the registered models (loaded only when help is asked for)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        from binsharp.models import list_models

        models = "\n".join(
            f"  {kind:<7} {', '.join(list_models(key))}"
            for key, kind in (("fp", "float"), ("binary", "binary"))
        )
        parser.epilog = f"{parser.epilog}\n\nmodels (--model):\n{models}"
        parser.print_help()
        parser.exit()


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train",
        add_help=False,
        help="train a model (PyTorch Lightning; resumable, multi-stage, DDP)",
        description="Train a binsharp model on a dataset and write a safe checkpoint (model.safetensors).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "config: YAML with keys recipe, model, data, validation, seed, trainer\n"
            "(see binsharp.train.recipe); "
            "merged over the model's default recipe and binsharp/configs/<model>-<dataset>.yaml.\n"
            "DDP: --devices N --strategy ddp (Lightning starts the processes), or under torchrun."
        ),
    )
    p.add_argument(
        "-h", "--help", action=_HelpWithModels, help="show this help message and the models, and exit"
    )
    p.add_argument("--model", required=True, metavar="NAME", help="registered model name (listed below)")
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        default=None,
        help="dataset name (e.g. wv3-longmont), dataset directory or PanCollection h5 file",
    )
    p.add_argument(
        "--val-data", metavar="H5", default=None, help="validation h5 file (default: the val split)"
    )
    p.add_argument(
        "--bits", type=_positive, default=None, help="bit depth of data files that do not state it"
    )
    p.add_argument("--config", metavar="FILE", default=None, help="YAML run configuration")
    p.add_argument(
        "--max-steps",
        type=_positive,
        default=None,
        help="total optimiser steps (shared by the stages in proportion to their recipe steps)",
    )
    p.add_argument("--batch-size", type=_positive, default=None, help="per-process batch size (all stages)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (all stages)")
    p.add_argument("--out", metavar="DIR", default=None, help="run directory (default: runs/<model>-<data>)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument(
        "--accelerator",
        choices=("cpu", "gpu", "cuda", "mps", "auto"),
        default=None,
        help="device type (default: cpu)",
    )
    p.add_argument("--devices", default=None, help="devices per node (an integer, a list like 0,1, or auto)")
    p.add_argument("--num-nodes", type=_positive, default=None, help="number of nodes (DDP)")
    p.add_argument("--strategy", default=None, help="Lightning strategy: auto, ddp, ddp_spawn, ...")
    p.add_argument("--num-workers", type=int, default=None, help="data loader worker processes")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _devices(text: str | None) -> Any:
    if text is None:
        return None
    if text == "auto" or text == "-1":
        return text if text == "auto" else -1
    if "," in text:
        return [int(x) for x in text.split(",") if x.strip()]
    return int(text)


def run(args: argparse.Namespace) -> int:
    """Run ``binsharp train``; prints the checkpoint path and the last validation indexes."""
    from binsharp.errors import BinsharpError
    from binsharp.fileio import check_output_dir
    from binsharp.train.engine import is_global_zero_process, train
    from binsharp.train.recipe import read_config

    config: dict[str, Any] = read_config(args.config) if args.config else {}
    stage_overrides: dict[str, Any] = {}
    if args.batch_size is not None:
        stage_overrides["batch_size"] = args.batch_size
    if args.lr is not None:
        if args.lr <= 0:
            raise BinsharpError(f"--lr must be positive, got {args.lr}")
        stage_overrides["lr"] = args.lr
    data_cfg = dict(config.get("data") or {})
    if args.bits is not None:
        data_cfg["bits"] = args.bits
    if args.num_workers is not None:
        data_cfg["num_workers"] = args.num_workers
    if data_cfg:
        config["data"] = data_cfg
    data = args.data if args.data is not None else data_cfg.get("name")
    if data is None:
        raise BinsharpError("pass --data NAME|PATH (or set data.name in --config)")
    out = Path(args.out) if args.out else Path("runs") / f"{args.model}-{Path(str(data)).stem}"
    check_output_dir(out, replace=True, create_parents=True)  # before loading data or building the model
    result = train(
        args.model,
        data,
        out=out,
        config=config,
        max_steps=args.max_steps,
        stage_overrides=stage_overrides,
        seed=args.seed,
        resume=args.resume,
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        val_data=args.val_data,
        progress=not args.no_progress,
    )
    if is_global_zero_process():
        print(f"checkpoint: {result.checkpoint}")
        for stage, steps in result.steps.items():
            val = result.val.get(stage)
            shown = json.dumps({k: round(v, 6) for k, v in val.items()}) if val else "no validation"
            print(f"stage {stage}: {steps} steps; val {shown}")
    return 0
