"""Parsers for the file formats of the data pipeline (numpy-only side).

Every parser reports malformed input as ``ValueError`` naming the file and line. One
module per format: ``fasta``, ``a3m`` (and the ``Msa`` container), ``stockholm``, ``hhr``
(``TemplateHit``), ``hmmsearch`` and ``mmcif``. Names follow AF2's
``alphafold.data.parsers`` so code written against it reads the same.
"""

from data_pipeline.parsers.a3m import DeletionMatrix, Msa, parse_a3m, read_a3m
from data_pipeline.parsers.fasta import (
    PROTEIN_LETTERS,
    FastaRecord,
    iter_fasta_records,
    parse_fasta,
    read_fasta,
)
from data_pipeline.parsers.hhr import TemplateHit, parse_hhr
from data_pipeline.parsers.hmmsearch import (
    HitMetadata,
    parse_hit_description,
    parse_hmmsearch_a3m,
    parse_hmmsearch_sto,
)
from data_pipeline.parsers.mmcif import (
    MmcifObject,
    MmcifParseError,
    ResidueAtPosition,
    ResiduePosition,
    parse_mmcif_file,
    parse_mmcif_string,
    residue_one_letter,
)
from data_pipeline.parsers.stockholm import (
    StockholmAlignment,
    convert_stockholm_to_a3m,
    deduplicate_stockholm_msa,
    parse_e_values_from_tblout,
    parse_stockholm,
    read_stockholm_alignment,
    remove_empty_columns_from_stockholm_msa,
    truncate_stockholm_msa,
)

__all__ = [
    "DeletionMatrix", "FastaRecord", "HitMetadata", "MmcifObject", "MmcifParseError", "Msa",
    "PROTEIN_LETTERS", "ResidueAtPosition", "ResiduePosition", "StockholmAlignment",
    "TemplateHit", "convert_stockholm_to_a3m", "deduplicate_stockholm_msa",
    "iter_fasta_records", "parse_a3m", "parse_e_values_from_tblout", "parse_fasta",
    "parse_hhr", "parse_hit_description", "parse_hmmsearch_a3m", "parse_hmmsearch_sto",
    "parse_mmcif_file", "parse_mmcif_string", "parse_stockholm", "read_a3m", "read_fasta",
    "read_stockholm_alignment", "remove_empty_columns_from_stockholm_msa",
    "residue_one_letter", "truncate_stockholm_msa",
]
