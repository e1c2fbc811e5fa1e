"""Restrained Amber minimisation with violation-driven repeats (AF2's relax protocol).

One *outer iteration*:

1. complete the structure with pdbfixer (heavy atoms, termini, hydrogens; `cleanup`);
2. build an OpenMM system with the Amber99SB force field in vacuum (no cutoff, no implicit
   solvent, bonds to hydrogen constrained) plus a harmonic restraint
   `0.5 k |x - x0|^2` on every heavy atom (or CA only) at its starting position,
   except in the residues excluded so far;
3. minimise with L-BFGS until the RMS force is below `tolerance` (AF2: 2.39 kcal/mol/A,
   no iteration limit);
4. check the heavy atoms for stereochemical violations (`violations`); the residues
   that violate lose their restraints in the next iteration.

Iterations repeat, each starting from the previous result, until no violation is left or
`max_outer_iterations` is reached (AF2's `run_alphafold.py` uses 3). Units at the API are
AF2's: kcal/mol, Angstrom.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Collection, Sequence

import numpy as np

from data_pipeline import residue_constants as rc
from data_pipeline.protein import Protein
from uni_fold.relax import MISSING_EXTRA
from uni_fold.relax import violations as violations_lib
from uni_fold.relax.cleanup import CleanedStructure, clean_protein

try:
    import openmm
    from openmm import app as openmm_app
    from openmm import unit
except ImportError as e:  # pragma: no cover - only without the extra
    raise ImportError(MISSING_EXTRA) from e

logger = logging.getLogger(__name__)

ENERGY = unit.kilocalories_per_mole
LENGTH = unit.angstroms
FORCE_FIELD = "amber99sb.xml"
RESTRAINT_SETS = ("non_hydrogen", "c_alpha")


@functools.lru_cache(maxsize=1)
def _force_field() -> openmm_app.ForceField:
    return openmm_app.ForceField(FORCE_FIELD)


def platform_name(use_gpu: bool, platform: str | None = None) -> str:
    """The OpenMM platform to run on: `platform` if given, else CUDA or CPU.

    Raises:
        ValueError: if that platform is not available in this OpenMM installation.
    """
    name = platform or ("CUDA" if use_gpu else "CPU")
    available = [openmm.Platform.getPlatform(i).getName()
                 for i in range(openmm.Platform.getNumPlatforms())]
    if name not in available:
        hint = (" install OpenMM's CUDA plugin (`pip install 'openmm[cuda12]'`) or relax on"
                " the CPU (use_gpu=False)" if name == "CUDA" else " choose one of those")
        raise ValueError(f"OpenMM platform {name!r} is not available (have {available});{hint}")
    return name


def _restrained_atoms(topology: openmm_app.Topology, residue_rows: np.ndarray,
                      restraint_set: str, exclude_rows: Collection[int]) -> list[int]:
    """Topology indices of the atoms to restrain."""
    chosen = []
    for atom in topology.atoms():
        if int(residue_rows[atom.residue.index]) in exclude_rows:
            continue
        is_heavy = atom.element is not None and atom.element.symbol != "H"
        if (restraint_set == "non_hydrogen" and is_heavy) or (
                restraint_set == "c_alpha" and atom.name == "CA"):
            chosen.append(atom.index)
    return chosen


def _energy_and_positions(context: openmm.Context) -> tuple[float, np.ndarray]:
    """Potential energy (kcal/mol) and positions [N_atoms, 3] (Angstrom) of `context`."""
    state = context.getState(energy=True, positions=True)
    energy = state.getPotentialEnergy().value_in_unit(ENERGY)
    return energy, np.asarray(state.getPositions(asNumpy=True).value_in_unit(LENGTH))


def minimize(
    structure: CleanedStructure,
    *,
    max_iterations: int = 0,
    tolerance: float = 2.39,
    stiffness: float = 10.0,
    restraint_set: str = "non_hydrogen",
    exclude_residues: Collection[int] = (),
    platform: str = "CPU",
) -> dict[str, object]:
    """One restrained minimisation of `structure`.

    Args:
        max_iterations: L-BFGS iteration limit, 0 for none.
        tolerance: kcal/mol/A, RMS force at which to stop.
        stiffness: kcal/mol/A^2, restraint spring constant k; 0 for no restraints.
        restraint_set: "non_hydrogen" or "c_alpha".
        exclude_residues: `Protein` rows whose atoms are not restrained.
        platform: OpenMM platform name.

    Returns:
        dict with `einit`, `efinal` (kcal/mol, restraint energy included), `posinit`,
        `pos` ([N_atoms, 3] Angstrom), `num_restrained`.
    """
    if restraint_set not in RESTRAINT_SETS:
        raise ValueError(f"restraint_set must be one of {RESTRAINT_SETS}, got {restraint_set!r}")
    system = _force_field().createSystem(structure.topology, constraints=openmm_app.HBonds)
    num_restrained = 0
    if stiffness > 0:
        restraint = openmm.CustomExternalForce("0.5 * k * ((x-x0)^2 + (y-y0)^2 + (z-z0)^2)")
        k = (stiffness * ENERGY / LENGTH**2).value_in_unit(
            unit.kilojoules_per_mole / unit.nanometer**2)
        restraint.addGlobalParameter("k", k)
        for name in ("x0", "y0", "z0"):
            restraint.addPerParticleParameter(name)
        x0_nm = structure.positions / 10.0
        for index in _restrained_atoms(structure.topology, structure.residue_rows,
                                       restraint_set, set(exclude_residues)):
            restraint.addParticle(index, x0_nm[index].tolist())
        num_restrained = restraint.getNumParticles()
        system.addForce(restraint)
    logger.info("restraining %d of %d atoms", num_restrained, system.getNumParticles())

    integrator = openmm.VerletIntegrator(0.001)  # never stepped: the minimiser needs one
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(structure.positions / 10.0)  # nm

    einit, posinit = _energy_and_positions(context)
    tolerance_md = (tolerance * ENERGY / LENGTH).value_in_unit(
        unit.kilojoules_per_mole / unit.nanometer)
    openmm.LocalEnergyMinimizer.minimize(context, tolerance_md, max_iterations)
    efinal, pos = _energy_and_positions(context)
    if not (np.isfinite(efinal) and np.all(np.isfinite(pos))):
        raise FloatingPointError(f"minimisation gave a non-finite energy ({efinal})")
    return {"einit": einit, "efinal": efinal, "posinit": posinit, "pos": pos,
            "num_restrained": num_restrained}


def relaxed_protein(prot: Protein, structure: CleanedStructure) -> Protein:
    """`prot` with the heavy atoms of `structure` put in (atoms pdbfixer added, such as a
    terminal OXT, are added to the mask); residues left out of the minimisation keep their
    input coordinates. B-factors of added atoms are those of the residue's CA (or of its
    first atom)."""
    positions = prot.atom_positions.copy()
    mask = prot.atom_mask.copy()
    bfactors = prot.b_factors.copy()
    for atom in structure.topology.atoms():
        if atom.element is None or atom.element.symbol == "H" or atom.name not in rc.atom_order:
            continue
        row = int(structure.residue_rows[atom.residue.index])
        slot = rc.atom_order[atom.name]
        if mask[row, slot] < 0.5:
            bfactors[row, slot] = residue_bfactor(prot, row)
            mask[row, slot] = 1.0
        positions[row, slot] = structure.positions[atom.index]
    return dataclasses.replace(prot, atom_positions=positions, atom_mask=mask,
                               b_factors=bfactors)


def residue_bfactor(prot: Protein, row: int) -> float:
    """The per-residue B-factor (pLDDT for predictions): the CA's, else the first atom's."""
    ca = rc.atom_order["CA"]
    if prot.atom_mask[row, ca] > 0.5:
        return float(prot.b_factors[row, ca])
    return float(prot.b_factors[row, np.flatnonzero(prot.atom_mask[row] > 0.5)[0]])


@dataclasses.dataclass
class RelaxResult:
    """Outcome of `run_pipeline`.

    Attributes:
        protein: the relaxed heavy atoms (input residues, chains and numbering).
        structure: the final OpenMM structure with hydrogens, at the relaxed positions.
        einit, efinal: energies (kcal/mol) before / after the last minimisation.
        rmsd: AF2's `rmsd`: over all atoms (hydrogens included) between the start and the
            end of the last minimisation, Angstrom.
        attempts: minimisation attempts of the last iteration.
        violations: `violations.find_structural_violations` of `protein`.
        metrics: `violations.violation_metrics` of those.
        iterations: per outer iteration: einit, efinal, time_s, num_residue_violations,
            num_exclusions, num_restrained.
    """

    protein: Protein
    structure: CleanedStructure
    einit: float
    efinal: float
    rmsd: float
    attempts: int
    violations: dict[str, np.ndarray]
    metrics: dict[str, object]
    iterations: list[dict[str, float]]


def _minimize_with_retries(structure: CleanedStructure, max_attempts: int,
                           **kwargs: object) -> tuple[dict[str, object], int]:
    """`minimize`, retried on OpenMM failures or non-finite results (seen on GPUs)."""
    for attempt in range(1, max_attempts + 1):
        try:
            return minimize(structure, **kwargs), attempt
        except (openmm.OpenMMException, FloatingPointError) as e:
            logger.warning("minimisation attempt %d of %d failed: %s", attempt, max_attempts, e)
    raise RuntimeError(f"Amber minimisation failed {max_attempts} times in a row")


def run_pipeline(
    prot: Protein,
    *,
    stiffness: float = 10.0,
    use_gpu: bool = False,
    platform: str | None = None,
    max_outer_iterations: int = 1,
    place_hydrogens_every_iteration: bool = True,
    max_iterations: int = 0,
    tolerance: float = 2.39,
    restraint_set: str = "non_hydrogen",
    max_attempts: int = 100,
    exclude_residues: Sequence[int] | None = None,
) -> RelaxResult:
    """Relax `prot`: restrained minimisations until no violation remains.

    Args:
        prot: the structure (standard residues; missing heavy atoms are added).
        stiffness: kcal/mol/A^2, restraint spring constant.
        use_gpu: run on CUDA instead of the CPU; `platform` names another OpenMM platform.
        max_outer_iterations: most minimise-and-check rounds (>= 1).
        place_hydrogens_every_iteration: redo pdbfixer (fresh hydrogens) before each round,
            as AF2; otherwise continue from the minimised hydrogens.
        max_iterations, tolerance, restraint_set: see `minimize`.
        max_attempts: tries per minimisation.
        exclude_residues: `Protein` rows (0-based) never restrained.
    """
    if max_outer_iterations < 1:
        raise ValueError(f"max_outer_iterations must be >= 1, got {max_outer_iterations}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if stiffness < 0 or tolerance <= 0 or max_iterations < 0:
        raise ValueError("need stiffness >= 0, tolerance > 0 and max_iterations >= 0; got "
                         f"{stiffness}, {tolerance}, {max_iterations}")
    excluded = {int(i) for i in (exclude_residues or ())}
    bad = [i for i in excluded if not 0 <= i < prot.num_res]
    if bad:
        raise ValueError(f"exclude_residues {bad} are not rows of the {prot.num_res}-residue "
                         "Protein (0-based)")
    name = platform_name(use_gpu, platform)
    structure = clean_protein(prot)
    iterations: list[dict[str, float]] = []
    current = prot
    for iteration in range(max_outer_iterations):
        start = time.perf_counter()
        out, attempts = _minimize_with_retries(
            structure, max_attempts, max_iterations=max_iterations, tolerance=tolerance,
            stiffness=stiffness, restraint_set=restraint_set, exclude_residues=excluded,
            platform=name)
        structure = structure.with_positions(out["pos"])
        current = relaxed_protein(prot, structure)
        found = violations_lib.find_structural_violations(current)
        metrics = violations_lib.violation_metrics(found)
        iterations.append({
            "einit": out["einit"], "efinal": out["efinal"],
            "time_s": time.perf_counter() - start,
            "num_residue_violations": metrics["num_residue_violations"],
            "num_exclusions": len(excluded), "num_restrained": out["num_restrained"],
        })
        logger.info("relax iteration %d: E %.2f -> %.2f kcal/mol in %.2f s, %d residue(s) "
                    "violating, %d excluded", iteration, out["einit"], out["efinal"],
                    iterations[-1]["time_s"], metrics["num_residue_violations"], len(excluded))
        excluded |= {int(i) for i in metrics["residue_violations"]}
        if metrics["num_residue_violations"] == 0 or iteration == max_outer_iterations - 1:
            break
        if place_hydrogens_every_iteration:
            structure = clean_protein(current)
    rmsd = float(np.sqrt(np.sum((out["pos"] - out["posinit"]) ** 2) / out["pos"].shape[0]))
    return RelaxResult(protein=current, structure=structure, einit=out["einit"],
                       efinal=out["efinal"], rmsd=rmsd, attempts=attempts, violations=found,
                       metrics=metrics, iterations=iterations)
