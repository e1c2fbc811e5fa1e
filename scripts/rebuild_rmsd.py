"""Rebuild every shared structure with ideal geometry from its own torsions; print a table.

For each structure in ``../shared/data/structures`` (or ``$UNI_FOLD_SHARED_DATA``): read all
protein chains (``data_pipeline.protein``), take the backbone frames from N, CA, C and the
psi / chi1-4 torsions from the deposited atoms, place idealised atoms
(``uni_fold.geometry.all_atom.rebuild_from_torsions``), and report

* ``atoms``: atoms compared (present in the deposit and placed from defined torsions),
* ``rmsd`` / ``max_dev``: all-atom RMSD and largest deviation in Angstrom, no superposition
  (the rebuild lives in the deposit's own backbone frames),
* ``psi_chi_err``: largest difference between the torsions of the rebuilt and the deposited
  atoms over psi and chi1-4 (rad, modulo pi for pi-periodic chis),
* ``omega_med`` / ``phi_med``: median change of omega and phi in degrees across peptide
  bonds (not placed by the rebuild, see the all_atom docs),
* ``load_s`` / ``rebuild_ms``: time to read the file and to rebuild + measure.

Usage: ``python scripts/rebuild_rmsd.py [--data DIR]``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from data_pipeline import protein
from data_pipeline import residue_constants as rc
from uni_fold.geometry import all_atom

_N, _C = rc.atom_order["N"], rc.atom_order["C"]


def _angles(sin_cos: torch.Tensor) -> np.ndarray:
    return torch.atan2(sin_cos[..., 0], sin_cos[..., 1]).numpy()


def measure(prot: protein.Protein) -> dict[str, float]:
    """Rebuild ``prot`` from its torsions and compare with the deposited atoms."""
    aatype = torch.from_numpy(prot.aatype.astype(np.int64))
    positions = torch.from_numpy(prot.atom_positions)
    mask = torch.from_numpy(prot.atom_mask)
    rebuilt = all_atom.rebuild_from_torsions(aatype, positions, mask)
    placed = all_atom.rebuild_atom37_mask(aatype, mask)
    sq = ((rebuilt - positions) ** 2).sum(-1) * placed

    exists = all_atom.make_atom14_masks(aatype)["atom37_atom_exists"]
    t_in = all_atom.atom37_to_torsion_angles(aatype, positions, mask)
    t_out = all_atom.atom37_to_torsion_angles(aatype, rebuilt, exists)
    diff = _angles(t_in["torsion_angles_sin_cos"]) - _angles(t_out["torsion_angles_sin_cos"])
    err = np.abs(np.arctan2(np.sin(diff), np.cos(diff)))
    pi_periodic = np.asarray(rc.chi_pi_periodic, dtype=bool)[prot.aatype]
    err[:, 3:] = np.where(pi_periodic, np.minimum(err[:, 3:], np.pi - err[:, 3:]), err[:, 3:])
    standard = prot.aatype < rc.restype_num
    defined = (t_in["torsion_angles_mask"].numpy() > 0) & standard[:, None]

    pos = prot.atom_positions
    bonded = np.zeros(len(pos), bool)
    bonded[1:] = (
        (prot.chain_index[1:] == prot.chain_index[:-1])
        & (np.diff(prot.residue_index) == 1)
        & (np.linalg.norm(pos[1:, _N] - pos[:-1, _C], axis=-1) < 2.0)
        & standard[1:] & standard[:-1]
    )
    omega = err[:, 0][defined[:, 0] & bonded]
    phi = err[:, 1][defined[:, 1] & bonded]
    return {
        "atoms": int(placed.sum()),
        "rmsd": float(torch.sqrt(sq.sum() / placed.sum())),
        "max_dev": float(sq.max().sqrt()),
        "psi_chi_err": float(err[:, 2:][defined[:, 2:]].max(initial=0.0)),
        "omega_med": float(np.degrees(np.median(omega))) if omega.size else float("nan"),
        "phi_med": float(np.degrees(np.median(phi))) if phi.size else float("nan"),
    }


def main() -> None:
    default = os.environ.get("UNI_FOLD_SHARED_DATA") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=default, help="folder holding structures/ (shared data)")
    args = parser.parse_args()
    root = Path(args.data) / "structures"
    files = sorted((root / "mmcif").glob("*.cif")) + sorted((root / "pdb").glob("*.pdb"))
    if not files:
        raise SystemExit(f"no structures under {root}; pass --data pointing at the shared data")

    header = ("id", "residues", "atoms", "rmsd_A", "max_dev_A", "psi_chi_err_rad",
              "omega_med_deg", "phi_med_deg", "load_s", "rebuild_ms")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rmsds = []
    for path in files:
        t0 = time.perf_counter()
        prot = protein.from_file(path)
        t1 = time.perf_counter()
        m = measure(prot)
        t2 = time.perf_counter()
        rmsds.append(m["rmsd"])
        print(
            f"| {path.stem} | {prot.num_res} | {m['atoms']} | {m['rmsd']:.3f} | "
            f"{m['max_dev']:.2f} | {m['psi_chi_err']:.1e} | {m['omega_med']:.2f} | "
            f"{m['phi_med']:.2f} | {t1 - t0:.2f} | {1000 * (t2 - t1):.0f} |"
        )
    print(f"\n{len(files)} structures; RMSD median {np.median(rmsds):.3f} A, "
          f"max {max(rmsds):.3f} A")


if __name__ == "__main__":
    main()
