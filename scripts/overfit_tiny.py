"""Overfit the ``tiny`` preset on one real protein on the CPU and print the training curve.

The check of DESIGN.md "Training works": with dropout off and a constant learning rate,
backbone FAPE and the total loss fall and lDDT-Ca rises within a few hundred steps. The
run goes through ``train-uni-fold`` (``uni_fold.train.cli.main``) like any other.

    python scripts/overfit_tiny.py [--pdb-id 1l2y --chain A] [--steps 300] [--output-dir O]

The default protein is the Trp-cage miniprotein 1L2Y (20 residues, NMR) from
../shared/data; a chain without an MSA there trains on its sequence alone.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from uni_fold.train.cli import main as train_main
from uni_fold.train.example_inputs import ExampleChain, link_training_inputs
from uni_fold.train.metrics import read_metrics

SHARED = Path(os.environ.get("UNI_FOLD_SHARED_DATA", Path(__file__).resolve().parents[2]
                             / "shared" / "data"))
_EVO = "model.embeddings_and_evoformer.evoformer"


def overfit_overrides(learning_rate: float, crop_size: int) -> list[str]:
    """``--set`` values of the recipe: no dropout, no warm-up, no violation loss (as AF2's
    initial training), every residue in the crop, one example per step."""
    sets = [f"{_EVO}.{name}.dropout_rate=0" for name in (
        "msa_row_attention_with_pair_bias", "triangle_multiplication_outgoing",
        "triangle_multiplication_incoming", "triangle_attention_starting_node",
        "triangle_attention_ending_node")]
    sets += [
        "model.heads.structure_module.dropout=0",
        "loss.model.heads.structure_module.structural_violation_loss_weight=0",
        f"train.learning_rate={learning_rate}",
        "train.warmup_steps=0",
        "train.checkpoint_blocks=false",
        "train.num_workers=0",
        "train.log_every=25",
        "train.checkpoint_every=100000",
        f"train_data.crop_size={crop_size}",
    ]
    return sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pdb-id", default="1l2y")
    p.add_argument("--chain", default="A")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--crop-size", type=int, default=20)
    p.add_argument("--every", type=int, default=20, help="print every this many steps")
    p.add_argument("--output-dir", default=None, help="default: a temporary folder")
    p.add_argument("--shared-data", default=str(SHARED))
    args = p.parse_args(argv)

    shared = Path(args.shared_data)
    out = Path(args.output_dir or tempfile.mkdtemp(prefix="overfit_tiny_"))
    msa_dir = shared / "msas" / f"{args.pdb_id}_{args.chain}"
    msas = tuple(sorted(msa_dir.glob("*.a3m"))[:1]) if msa_dir.is_dir() else ()
    chain = ExampleChain(shared / "structures" / "mmcif" / f"{args.pdb_id}.cif", args.chain, msas)
    inputs = link_training_inputs(out / "inputs", [chain])
    argv_train = [
        "--preset", "tiny", "--stage", "none",
        "--mmcif-dir", str(inputs.mmcif_dir), "--alignments-dir", str(inputs.alignments_dir),
        "--chain-list", str(inputs.chain_list), "--output-dir", str(out / "run"),
        "--max-steps", str(args.steps), "--log-level", "WARNING",
    ]
    for item in overfit_overrides(args.learning_rate, args.crop_size):
        argv_train += ["--set", item]
    status = train_main(argv_train)
    if status:
        return status
    records = read_metrics(out / "run" / "metrics.jsonl")
    print(f"{chain.name}: {args.steps} steps of the tiny preset, output in {out}")
    print(f"{'step':>6} {'loss':>9} {'fape':>7} {'lddt_ca':>8}")
    window = max(1, args.every // 2)
    for i in range(0, len(records), args.every):
        chunk = records[max(0, i - window + 1): i + 1]
        mean = {k: sum(r[k] for r in chunk) / len(chunk) for k in ("loss", "fape", "lddt_ca")}
        print(f"{records[i]['step']:>6} {mean['loss']:>9.3f} {mean['fape']:>7.3f} "
              f"{mean['lddt_ca']:>8.3f}")
    last = records[-window:]
    print(f"{records[-1]['step']:>6} " + " ".join(
        f"{sum(r[k] for r in last) / len(last):>{w}.3f}"
        for k, w in (("loss", 9), ("fape", 7), ("lddt_ca", 8))))
    print(f"(values averaged over the preceding {window} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
