"""``train-uni-fold``: train or fine-tune Uni-Fold on mmCIF files and precomputed alignments.

One process::

    train-uni-fold --preset tiny --stage none --mmcif-dir D --alignments-dir A \\
        --chain-list chains.txt --output-dir O --max-steps 100

Many processes (one per GPU; ``scripts/train_slurm.sh`` for SLURM clusters)::

    torchrun --nproc_per_node 8 -m uni_fold.train --preset model_1_ptm ... [--resume]

``O/metrics.jsonl`` gets one JSON object per step (``step``, ``loss``, every loss term by
name with backbone FAPE as ``fape``, ``lddt_ca``, ``lr``, throughput), ``O/checkpoints/``
the checkpoints, ``O/run_config.json`` the full configuration. See ``docs/training.md``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from uni_fold.config import PRESETS
from uni_fold.model.alphafold import AlphaFold
from uni_fold.train.checkpoint import latest_checkpoint
from uni_fold.train.data import DataPaths, build_train_loader, load_validation_chains
from uni_fold.train.distributed import DistributedContext, init_distributed, shutdown
from uni_fold.train.stages import STAGE_NAMES, RunConfig, build_run_config, parse_set_overrides
from uni_fold.train.trainer import Trainer, load_initial_weights

logger = logging.getLogger("uni_fold.train")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train-uni-fold",
        description="Train Uni-Fold (AlphaFold 2 in PyTorch) on PDB chains.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Override any setting with --set, e.g. --set train.learning_rate=5e-4 "
               "--set train_data.crop_size=128 --set model.num_recycle=1 "
               "(keys: model.*, data.*, loss.*, train.*, train_data.*; see docs/training.md).",
    )
    p.add_argument("--preset", required=True, choices=sorted(PRESETS),
                   help="model preset (tiny trains on the CPU)")
    p.add_argument("--stage", default="initial_training", choices=STAGE_NAMES,
                   help="AF2 training stage (Suppl. Table 4); 'none' keeps the preset's sizes")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (repeatable)")
    p.add_argument("--mmcif-dir", required=True, help="folder of <pdb id>.cif files")
    p.add_argument("--alignments-dir", required=True,
                   help="folder of per-chain alignment folders <pdb id>_<chain id>/")
    p.add_argument("--chain-list", required=True,
                   help="training chains, <pdb id>_<chain id> a line, optional cluster id "
                        "after a tab")
    p.add_argument("--output-dir", required=True, help="metrics, checkpoints and logs")
    p.add_argument("--max-steps", type=int, default=None,
                   help="updates to run in total (default: the stage's samples / batch)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in OUTPUT_DIR")
    p.add_argument("--val-chain-list", default=None, help="held-out chains for validation")
    p.add_argument("--template-mmcif-dir", default=None,
                   help="template mmCIF files (templates read from each alignments folder's "
                        "hit file); default: no templates")
    p.add_argument("--feature-cache-dir", default=None,
                   help="cache of raw features (.npz); default OUTPUT_DIR/feature_cache")
    p.add_argument("--distillation-dir", default=None,
                   help="self-distillation structures (pLDDT in the B-factors)")
    p.add_argument("--distillation-alignments-dir", default=None)
    p.add_argument("--distillation-chain-list", default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def _setup_logging(level: str, ctx: DistributedContext, output_dir: Path) -> None:
    fmt = f"%(asctime)s [rank {ctx.rank}] %(levelname)s %(name)s: %(message)s"
    root = logging.getLogger()
    root.setLevel(level if ctx.is_main else "WARNING")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root.handlers = [handler]
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(output_dir / "train.log")
        file_handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(file_handler)
    if level == "INFO":  # one line per example from the data pipeline is too much
        for name in ("data_pipeline", "uni_fold.data"):
            logging.getLogger(name).setLevel("WARNING")


def _max_steps(run: RunConfig, ctx: DistributedContext) -> int:
    if run.train.max_steps is not None:
        return run.train.max_steps
    samples = run.stage_num_samples()
    if samples is None:
        raise ValueError("--stage none has no sample count: pass --max-steps N")
    return max(1, samples // (ctx.world_size * run.train.grad_accum_steps))


def run_training(args: argparse.Namespace) -> int:
    """Set up the process group, data, model and trainer from parsed arguments and train."""
    output_dir = Path(args.output_dir)
    run = build_run_config(args.preset, args.stage, parse_set_overrides(args.overrides))
    if args.max_steps is not None:
        if args.max_steps < 0:
            raise ValueError(f"--max-steps must be >= 0, got {args.max_steps}")
        run.train.max_steps = args.max_steps
    ctx = init_distributed(None if args.device == "auto" else args.device)
    try:
        _setup_logging(args.log_level, ctx, output_dir)
        if not args.resume and latest_checkpoint(output_dir / "checkpoints") is not None:
            raise ValueError(f"{output_dir} already holds checkpoints; pass --resume to "
                             "continue that run or choose a new --output-dir")
        paths = DataPaths(
            args.mmcif_dir, args.alignments_dir, args.chain_list, args.val_chain_list,
            args.template_mmcif_dir, args.feature_cache_dir or output_dir / "feature_cache",
            args.distillation_dir,
            args.distillation_alignments_dir, args.distillation_chain_list,
        )
        torch.manual_seed(run.train.seed)
        model = AlphaFold(run.model)
        if run.train.init_from:
            load_initial_weights(model, run.train.init_from)
        logger.info("%s (%s stage): %.2f M parameters", args.preset, run.stage,
                    sum(p.numel() for p in model.parameters()) / 1e6)
        loader = build_train_loader(run, paths, ctx)
        trainer = Trainer(run, model, loader, output_dir, ctx,
                          val_raw=load_validation_chains(run, paths))
        if args.resume:
            trainer.resume()
        trainer.install_signal_handlers()
        last = trainer.fit(_max_steps(run, ctx))
        logger.info("done at step %d: loss %s", last.get("step"), last.get("loss"))
    finally:
        shutdown(ctx)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train-uni-fold``; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return run_training(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"train-uni-fold: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
