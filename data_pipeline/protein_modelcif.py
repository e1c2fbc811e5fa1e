"""ModelCIF output for `data_pipeline.protein.Protein` (through the ``modelcif`` package).

ModelCIF is the mmCIF dialect for computed models (used by ModelArchive and the AlphaFold
DB): besides `atom_site` it names the software, the model and its quality metrics. This
module is what `data_pipeline.protein.to_mmcif` calls; gemmi and our `from_mmcif` read its
output back.
"""
from __future__ import annotations

import io

import modelcif
import modelcif.data
import modelcif.dumper
import modelcif.model
import modelcif.protocol
import modelcif.qa_metric
import numpy as np

from data_pipeline import __version__, residue_constants
from data_pipeline.protein import Protein, check_writable


def to_modelcif(
    prot: Protein,
    *,
    plddt: np.ndarray | None = None,
    entry_id: str = "model",
    model_name: str = "Uni-Fold model",
    title: str | None = None,
    software_name: str = "Uni-Fold",
    software_version: str = __version__,
    software_url: str = "https://github.com/dptech-corp/Uni-Fold",
) -> str:
    """ModelCIF text of `prot`, written with the ``modelcif`` package.

    Each chain becomes an asym unit (label and author chain id = `prot.chain_ids`);
    chains with identical sequences share one entity. The entity sequence holds exactly
    the residues of the chain, numbered 1..n (`label_seq_id`), with `prot.residue_index`
    and `prot.insertion_code` as author numbering. `atom_site.B_iso_or_equiv` holds
    `prot.b_factors`. When `plddt` [N_res] is given it is also stored as ModelCIF's
    local (per-residue) pLDDT metric, with its mean as the global pLDDT.

    Args:
        entry_id: the data block / entry id (no whitespace).
        model_name, title: names of the model and of the system.
        software_name, software_version, software_url: the software credited with the model.
    """
    check_writable(prot)
    if not entry_id or any(c.isspace() for c in entry_id):
        raise ValueError(f"entry_id must be a non-empty id without whitespace, got {entry_id!r}")
    if plddt is not None:
        plddt = np.asarray(plddt, np.float64)
        if plddt.shape != (prot.num_res,):
            raise ValueError(
                f"plddt must have shape [N_res={prot.num_res}], got {list(plddt.shape)}"
            )
        if not np.all(np.isfinite(plddt)):
            raise ValueError("plddt holds NaN/inf")

    software = modelcif.Software(
        name=software_name, classification="model building",
        description="protein structure prediction (AlphaFold 2 reproduction)",
        location=software_url, type="package", version=software_version,
    )
    system = modelcif.System(title=title or f"{model_name} ({entry_id})", id=entry_id)
    codes = residue_constants.restypes + ["UNK"]  # LPeptideAlphabet keys; X is "UNK"

    chains = prot.present_chain_ids()
    rows_of_asym = [np.flatnonzero(prot.chain_index == prot.chain_ids.index(c)) for c in chains]
    chains_of_seq: dict[tuple[int, ...], list[str]] = {}
    for cid, rows in zip(chains, rows_of_asym, strict=True):
        chains_of_seq.setdefault(tuple(prot.aatype[rows].tolist()), []).append(cid)
    entities = {
        seq: modelcif.Entity([codes[a] for a in seq],
                             description=f"protein chain {', '.join(ids)}")
        for seq, ids in chains_of_seq.items()
    }
    asyms: list[modelcif.AsymUnit] = []
    for cid, rows in zip(chains, rows_of_asym, strict=True):
        seq_key = tuple(prot.aatype[rows].tolist())
        auth_map = {
            k + 1: (int(prot.residue_index[r]), prot.insertion_code[r] or None)
            for k, r in enumerate(rows)
        }
        asyms.append(modelcif.AsymUnit(entities[seq_key], details=f"chain {cid}", id=cid,
                                       strand_id=cid, auth_seq_id_map=auth_map))

    assembly = modelcif.Assembly(asyms, name="modelled assembly")

    class _AtomicModel(modelcif.model.AbInitioModel):
        def get_atoms(self):
            for asym, rows in zip(asyms, rows_of_asym, strict=True):
                for seq_id, r in enumerate(rows, start=1):
                    for slot in np.flatnonzero(prot.atom_mask[r] > 0.5):
                        name = residue_constants.atom_types[slot]
                        x, y, z = prot.atom_positions[r, slot].tolist()
                        yield modelcif.model.Atom(
                            asym_unit=asym, seq_id=seq_id, atom_id=name, type_symbol=name[0],
                            x=x, y=y, z=z, het=False,
                            biso=float(prot.b_factors[r, slot]), occupancy=1.0,
                        )

    model = _AtomicModel(assembly=assembly, name=model_name)

    if plddt is not None:
        class _GlobalPLDDT(modelcif.qa_metric.Global, modelcif.qa_metric.PLDDT):
            """Mean of the per-residue predicted lDDT-Ca."""

            name = "pLDDT"

        class _LocalPLDDT(modelcif.qa_metric.Local, modelcif.qa_metric.PLDDT):
            """Predicted lDDT-Ca of each residue."""

            name = "pLDDT"

        _GlobalPLDDT.software = _LocalPLDDT.software = software
        model.qa_metrics.append(_GlobalPLDDT(round(float(plddt.mean()), 2)))
        for asym, rows in zip(asyms, rows_of_asym, strict=True):
            for seq_id, r in enumerate(rows, start=1):
                model.qa_metrics.append(
                    _LocalPLDDT(asym.residue(seq_id), round(float(plddt[r]), 2))
                )

    group = modelcif.model.ModelGroup([model], name=model_name)
    system.model_groups.append(group)
    protocol = modelcif.protocol.Protocol()
    protocol.steps.append(modelcif.protocol.ModelingStep(
        input_data=modelcif.data.DataGroup(list(entities.values())),
        output_data=model, software=software, name="structure prediction",
    ))
    system.protocols.append(protocol)

    handle = io.StringIO()
    modelcif.dumper.write(handle, [system])
    return handle.getvalue()
