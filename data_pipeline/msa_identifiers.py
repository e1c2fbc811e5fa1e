"""Species identifiers from MSA row descriptions, for pairing rows across chains.

AF2-Multimer pairs the rows of different chains' UniProt MSAs that come from the same
species. The species is the mnemonic after the underscore of a UniProt entry name::

    tr|A0A146SKV9|A0A146SKV9_FUNHE/12-180 ...   -> FUNHE
    sp|P69905|HBA_HUMAN ...                      -> HUMAN

Descriptions in any other form (UniRef cluster ids, MGnify, BFD) give an empty id.
"""

from __future__ import annotations

import dataclasses
import logging
import re

logger = logging.getLogger(__name__)

_UNIPROT_ENTRY = re.compile(
    r"^(?:tr|sp)\|"                         # TrEMBL or Swiss-Prot
    r"(?P<accession>[A-Za-z0-9]{6,10})"      # primary accession
    r"(?:_\d)?\|"                            # optional isoform suffix
    r"[A-Za-z0-9]+_"                         # accession again (TrEMBL) or mnemonic
    r"(?P<species>[A-Za-z0-9]{1,5})"         # species mnemonic
    r"(?:_\d+)?$"                            # small-BFD numeric suffix
)


@dataclasses.dataclass(frozen=True)
class Identifiers:
    """Identifiers read from one MSA row description (empty strings when absent)."""

    species_id: str = ""


def get_identifiers(description: str) -> Identifiers:
    """Species identifier of an MSA row, from the first word of its description
    (a jackhmmer ``/start-end`` suffix is ignored)."""
    words = description.split()
    if not words:
        return Identifiers()
    entry = words[0].partition("/")[0]
    match = _UNIPROT_ENTRY.search(entry.strip())
    return Identifiers(species_id=match["species"]) if match else Identifiers()
