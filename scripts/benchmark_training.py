"""Training step time and peak memory per crop size, as a table.

Each crop size runs in its own process (so the peak memory is that size's): the real
trainer (:class:`uni_fold.train.trainer.Trainer`) takes ``--steps`` timed updates after
``--warmup`` untimed ones on a real chain from ../shared/data (default 102M_A, sperm-whale
myoglobin, 154 residues, with its real MSA; crops longer than the chain are padded, which
costs the same as a chain that long). The examples are made before the clock starts (in
training, loader workers make them meanwhile); their cost is the last column. Peak memory
is ``torch.cuda.max_memory_allocated`` on a GPU and the process's peak resident set size
on the CPU.

    python scripts/benchmark_training.py --preset tiny --crop-sizes 32 64 128
    python scripts/benchmark_training.py --preset model_1_ptm --stage initial_training \\
        --crop-sizes 128 256 384 --precision bf16          # on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("UNI_FOLD_SHARED_DATA", Path(__file__).resolve().parents[2]
                             / "shared" / "data"))


def _one(args: argparse.Namespace) -> dict:
    """Benchmark one crop size in this process; returns the row."""
    import torch

    from uni_fold.model.alphafold import AlphaFold
    from uni_fold.train.data import DataPaths, build_train_loader
    from uni_fold.train.distributed import init_distributed
    from uni_fold.train.example_inputs import ExampleChain, link_training_inputs
    from uni_fold.train.stages import build_run_config
    from uni_fold.train.trainer import Trainer

    ctx = init_distributed(None if args.device == "auto" else args.device)
    sets = {
        "train_data.crop_size": args.one_crop,
        "train.num_workers": 0,
        "train.precision": args.precision,
        "train.checkpoint_blocks": args.checkpoint_blocks,
        "train.chunk_size": args.chunk_size,
        "train.tensorboard": False,
        "train.warmup_steps": 0,
    }
    if args.num_recycle is not None:
        sets["model.num_recycle"] = args.num_recycle
    run = build_run_config(args.preset, args.stage, sets)
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    msa_dir = Path(args.shared_data) / "msas" / f"{args.pdb_id}_{args.chain}"
    msas = tuple(sorted(msa_dir.glob("*.a3m"))[:1]) if msa_dir.is_dir() else ()
    chain = ExampleChain(Path(args.shared_data) / "structures" / "mmcif" / f"{args.pdb_id}.cif",
                         args.chain, msas)
    inputs = link_training_inputs(work / "inputs", [chain])
    paths = DataPaths(inputs.mmcif_dir, inputs.alignments_dir, inputs.chain_list,
                      feature_cache_dir=work / "cache")
    # The examples are made first (in training, worker processes make them meanwhile).
    loader = iter(build_train_loader(run, paths, ctx))
    start = time.perf_counter()
    examples = [next(loader) for _ in range(args.warmup + args.steps)]
    data_s = (time.perf_counter() - start) / len(examples)
    torch.manual_seed(0)
    model = AlphaFold(run.model)
    trainer = Trainer(run, model, examples, work / "run", ctx)
    times = []
    for i in range(args.warmup + args.steps):
        if ctx.device.type == "cuda" and i == args.warmup:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        record = trainer.train_step()
        if i >= args.warmup:
            times.append(record["step_time_s"])
    if ctx.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {
        "crop": args.one_crop,
        "device": str(ctx.device),
        "precision": trainer.runtime.precision,
        "checkpoint_blocks": trainer.runtime.checkpoint_blocks,
        "step_s": statistics.median(times),
        "residues_per_s": args.one_crop / statistics.median(times),
        "peak_gib": peak,
        "data_s": data_s,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--stage", default="none",
                   choices=("none", "initial_training", "finetune"),
                   help="MSA / extra-MSA / template sizes of an AF2 stage (none: preset's)")
    p.add_argument("--crop-sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--steps", type=int, default=3, help="timed updates per crop size")
    p.add_argument("--warmup", type=int, default=1, help="untimed updates first")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--checkpoint-blocks", action=argparse.BooleanOptionalAction, default=True,
                   help="activation checkpointing of each Evoformer block")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--num-recycle", type=int, default=None,
                   help="override the preset's number of recycles")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--pdb-id", default="102m")
    p.add_argument("--chain", default="A")
    p.add_argument("--shared-data", default=str(SHARED))
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--one-crop", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.one_crop is not None:
        print(json.dumps(_one(args)))
        return 0
    rows = []
    for crop in args.crop_sizes:
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
               "--one-crop", str(crop)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"crop {crop}: failed\n{result.stderr[-3000:]}", file=sys.stderr)
            return result.returncode
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    first = rows[0]
    print(f"{args.preset} ({first['params_m']:.2f} M parameters), stage {args.stage}, "
          f"{first['device']}, {first['precision']}, activation checkpointing "
          f"{'on' if first['checkpoint_blocks'] else 'off'}, {args.pdb_id}_{args.chain}")
    print(f"{'crop':>6} {'step (s)':>10} {'residues/s':>11} {'peak memory (GiB)':>18} "
          f"{'data (s/example)':>17}")
    for row in rows:
        print(f"{row['crop']:>6} {row['step_s']:>10.3f} {row['residues_per_s']:>11.1f} "
              f"{row['peak_gib']:>18.3f} {row['data_s']:>17.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
