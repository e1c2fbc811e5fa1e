"""Errors of Uni-Fold's AlphaFold against the AF2 reference, end to end, as a table.

Both models get the same processed features of a real protein from ../shared/data (made by
the reference's own pipeline) and the same random AF2-format parameters (an ``.npz`` that
Uni-Fold loads with ``AlphaFold.from_alphafold_params``); see ``tests/af2_parity.py``.
Exits with status 1 when an error is above the issue's bound.

    python scripts/parity_report.py --preset model_1_ptm --evoformer-blocks 2 \\
        --extra-msa-blocks 1 --template-blocks 1 --num-recycle 1 --case openfold_test_query
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
from af2_parity import CASES, ParitySetup, run_parity  # noqa: E402

# The bounds: absolute (Å, pLDDT points, pTM) or relative to the largest logit.
BOUNDS = {
    "final_atom_positions_max_A": 1e-3,
    "final_atom_mask_mismatch": 0.0,
    "plddt_max_abs": 1e-3,
    "predicted_aligned_error_max_A": 1e-3,
    "max_predicted_aligned_error_abs": 1e-5,
    "ptm_abs": 1e-5,
    "distogram_logits_max_rel": 1e-4,
    "masked_msa_logits_max_rel": 1e-4,
    "experimentally_resolved_logits_max_rel": 1e-4,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="model_1_ptm", help="model_1 ... model_5_ptm")
    p.add_argument("--evoformer-blocks", type=int, default=2)
    p.add_argument("--extra-msa-blocks", type=int, default=1)
    p.add_argument("--template-blocks", type=int, default=1)
    p.add_argument("--num-recycle", type=int, default=1)
    p.add_argument("--case", default="openfold_test_query", choices=sorted(CASES))
    p.add_argument("--seed", type=int, default=0, help="feature sampling and parameters")
    p.add_argument("--max-msa-rows", type=int, default=512, help="rows read from the a3m")
    p.add_argument("--max-msa-clusters", type=int, default=64,
                   help="cluster centres (AF2 preset: 512)")
    p.add_argument("--max-extra-msa", type=int, default=256,
                   help="extra MSA rows (AF2 preset: 1024 or 5120)")
    p.add_argument("--max-templates", type=int, default=2)
    p.add_argument("--per-iteration", action="store_true",
                   help="also run each recycling iteration of ours on the reference's "
                        "recycled state (errors per iteration, recycling-bin flips)")
    p.add_argument("--keep-denormals", action="store_true",
                   help="do not flush float32 denormals in torch (XLA flushes them)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_flush_denormal(not args.keep_denormals)

    setup = ParitySetup(
        preset=args.preset,
        evoformer_num_block=args.evoformer_blocks,
        extra_msa_stack_num_block=args.extra_msa_blocks,
        template_pair_stack_num_block=args.template_blocks,
        num_recycle=args.num_recycle,
        case=args.case,
        max_msa_rows=args.max_msa_rows,
        max_msa_clusters=args.max_msa_clusters,
        max_extra_msa=args.max_extra_msa,
        max_templates=args.max_templates,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as workdir:
        result = run_parity(setup, workdir, per_iteration=args.per_iteration)

    info = result.info
    print(f"preset {args.preset}: {args.evoformer_blocks} Evoformer, {args.extra_msa_blocks} "
          f"extra-MSA, {args.template_blocks} template blocks, {args.num_recycle} recycle(s); "
          f"{args.case}: {info['num_res']} residues, MSA {info['msa_shape']}, extra MSA "
          f"{info['extra_msa_shape']}, {info['num_templates']} template(s); seed {args.seed}")
    print(f"closest recycled pair distance to a recycling-distogram bin edge: "
          f"{info['recycling_bin_margin_A']:.1e} Å (positions closer than that to the "
          f"reference's give the same recycling input)")
    print()
    print("| output | error | bound | ok |")
    print("|---|---|---|---|")
    failed = []
    for name, value in result.errors.items():
        bound = BOUNDS.get(name)
        ok = bound is None or value <= bound
        if not ok:
            failed.append(name)
        shown = "-" if bound is None else f"{bound:.0e}"
        print(f"| {name} | {value:.3e} | {shown} | {'yes' if ok else 'NO'} |")
    if args.per_iteration:
        print()
        print("Each iteration fed the reference's recycled state (errors that do not "
              "accumulate), and bin flips of the recycling distogram between the free-running "
              "models (a flip turns round-off into an O(1) change of one pair input):")
        print()
        print("| iteration | positions (Å) | distogram logits (rel) | free-running positions "
              "(Å) | recycling-bin flips |")
        print("|---|---|---|---|---|")
        for row in info["per_iteration"]:
            print(f"| {row['iteration']} | {row['positions_max_A']:.2e} | "
                  f"{row['distogram_logits_max_rel']:.2e} | "
                  f"{row['free_running_positions_max_A']:.2e} | {row['recycling_bin_flips']} |")
    print()
    print("| stage | seconds |")
    print("|---|---|")
    for name, seconds in result.timings.items():
        print(f"| {name.removesuffix('_s')} | {seconds:.1f} |")
    if failed:
        print(f"\nabove the bound: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
