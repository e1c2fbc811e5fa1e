#!/usr/bin/env python
"""Precompute MSA and template-search alignments for FASTA files (resumable).

Thin wrapper over ``data_pipeline.precompute.main``; run with ``--help`` for the flags.
Example on the small shared databases::

    python scripts/precompute_alignments.py ../shared/data/msas/102m_A/query.fasta \
        -o /tmp/alignments --uniref90_database_path ../shared/data/seqdb/mini_uniref.fasta \
        --pdb70_database_path ../shared/data/templates/hhsuite_db/pdb_mini --n_cpu 2
"""

import sys

from data_pipeline.precompute import main

if __name__ == "__main__":
    sys.exit(main())
