"""Training inputs assembled from loose files, for demos, the overfitting check
(``scripts/overfit_tiny.py``) and the benchmark (``scripts/benchmark_training.py``).

:func:`link_training_inputs` lays out what ``train-uni-fold`` reads: ``mmcif/<pdb id>.cif``
(symbolic links), ``alignments/<pdb id>_<chain id>/`` (links to the given MSA files, or,
for a chain without one, a single-sequence ``query.a3m`` holding its SEQRES) and a chain
list with one chain a line.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.parsers.mmcif import parse_mmcif_file

__all__ = ["ExampleChain", "TrainingInputs", "link_training_inputs"]


@dataclass(frozen=True)
class ExampleChain:
    """One chain: its mmCIF file, chain id and, optionally, MSA files to link."""

    mmcif: Path
    chain_id: str
    msa_files: tuple[Path, ...] = ()

    @property
    def pdb_id(self) -> str:
        return self.mmcif.stem.lower()

    @property
    def name(self) -> str:
        return f"{self.pdb_id}_{self.chain_id}"


@dataclass(frozen=True)
class TrainingInputs:
    mmcif_dir: Path
    alignments_dir: Path
    chain_list: Path


def _link(source: Path, target: Path) -> None:
    if target.is_symlink() or target.exists():
        target.unlink()
    os.symlink(source.resolve(), target)


def link_training_inputs(
    out_dir: str | os.PathLike, chains: Sequence[ExampleChain]
) -> TrainingInputs:
    """Build ``out_dir/{mmcif,alignments,chains.txt}`` for ``chains`` (see module docstring).

    Raises:
        FileNotFoundError: a missing mmCIF or MSA file.
        ValueError: a chain the mmCIF file does not have.
    """
    out = Path(out_dir)
    mmcif_dir, alignments_dir = out / "mmcif", out / "alignments"
    mmcif_dir.mkdir(parents=True, exist_ok=True)
    alignments_dir.mkdir(parents=True, exist_ok=True)
    for chain in chains:
        if not chain.mmcif.is_file():
            raise FileNotFoundError(f"mmCIF file {chain.mmcif} does not exist")
        _link(chain.mmcif, mmcif_dir / f"{chain.pdb_id}.cif")
        folder = alignments_dir / chain.name
        folder.mkdir(exist_ok=True)
        for msa in chain.msa_files:
            if not msa.is_file():
                raise FileNotFoundError(f"MSA file {msa} does not exist")
            _link(msa, folder / msa.name)
        if not chain.msa_files:
            mmcif = parse_mmcif_file(str(chain.mmcif), chain.pdb_id)
            if chain.chain_id not in mmcif.chain_to_seqres:
                raise ValueError(f"{chain.mmcif} has no protein chain {chain.chain_id!r}; it "
                                 f"has {sorted(mmcif.chain_to_seqres)}")
            sequence = mmcif.chain_to_seqres[chain.chain_id]
            (folder / "query.a3m").write_text(f">{chain.name}\n{sequence}\n")
    chain_list = out / "chains.txt"
    chain_list.write_text("".join(f"{c.name}\n" for c in chains))
    return TrainingInputs(mmcif_dir, alignments_dir, chain_list)
