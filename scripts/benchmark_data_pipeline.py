"""Wall time of each search and featurisation stage of the data pipeline, as a table.

By default it searches the small real databases in ../shared/data (mini UniRef as UniRef90,
the HMMER globins as MGnify, the mini PDB70 as both the HH-suite "BFD/UniRef30" pair and the
template database, the shared mmCIF files as template structures) for a few real queries.
Point the ``--*-db`` options at real databases for production numbers.

    python scripts/benchmark_data_pipeline.py [--queries 102m_A 1k1a_A] [--n-cpu 2]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from data_pipeline import DatabaseConfig, DataPipeline

SHARED = Path(os.environ.get("UNI_FOLD_SHARED_DATA", Path(__file__).resolve().parents[2]
                             / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", nargs="+", default=["102m_A", "1k1a_A"],
                   help="folders of shared/data/msas holding query.fasta, or FASTA paths")
    p.add_argument("--uniref90-db", default=str(SHARED / "seqdb" / "mini_uniref.fasta"))
    p.add_argument("--mgnify-db", default=str(SHARED / "seqdb" / "hmmer_tutorial" / "globins45.fa"))
    p.add_argument("--hhsuite-db", default=str(SHARED / "templates" / "hhsuite_db" / "pdb_mini"),
                   help="HH-suite prefix used for BFD, UniRef30 and PDB70")
    p.add_argument("--mmcif-dir", default=str(SHARED / "structures" / "mmcif"))
    p.add_argument("--n-cpu", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    dbs = DatabaseConfig(
        uniref90_database_path=args.uniref90_db, mgnify_database_path=args.mgnify_db,
        bfd_database_path=args.hhsuite_db, uniref30_database_path=args.hhsuite_db,
        pdb70_database_path=args.hhsuite_db, template_mmcif_dir=args.mmcif_dir,
        n_cpu=args.n_cpu,
    )
    rows = []
    for query in args.queries:
        fasta = Path(query)
        if not fasta.is_file():
            fasta = SHARED / "msas" / query / "query.fasta"
        with tempfile.TemporaryDirectory() as out:
            pipeline = DataPipeline(dbs, msa_mode="search")
            feats = pipeline.process(fasta, out)
            n_res = int(feats["seq_length"][0])
            for stage, seconds in pipeline.timings.items():
                rows.append((fasta.parent.name, n_res, stage, seconds,
                             int(feats["num_alignments"][0]),
                             int(feats["template_aatype"].shape[0])))

    header = ("query", "length", "stage", "wall (s)", "MSA rows", "templates")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for q, n, stage, sec, rows_msa, n_t in rows:
        print(f"| {q} | {n} | {stage} | {sec:.2f} | {rows_msa} | {n_t} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
