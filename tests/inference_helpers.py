"""Shared helpers of the prediction tests (test_outputs, test_predict, test_api).

Tiny networks are built from the ``tiny`` preset without templates (fast on the CPU),
with every parameter moved away from its initial value so that the final layers, which
AF2 initialises to zero, change the outputs (pLDDT, PAE and coordinates then differ from
residue to residue and from model to model), and stored as Uni-Fold checkpoints
(``<params_dir>/<name>/``), which ``predict-structure`` loads like AF2 parameter files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from shared import SHARED_DATA

from data_pipeline import protein
from data_pipeline import residue_constants as rc

MSAS = SHARED_DATA / "msas"
#: Real short sequences with their (ColabFold test) a3m files.
SHORT_CASES = {
    "5AWL_1": MSAS / "edge_cases" / "5AWL1.a3m",
    "6A5J": MSAS / "edge_cases" / "6A5J.a3m",
}
#: A real protein with an AF2-style alignments folder (UniRef90, MGnify, BFD).
CASE_2Q2K = "2q2k_A"

NO_TEMPLATES = {
    "model.embeddings_and_evoformer.template.enabled": False,
    "model.embeddings_and_evoformer.template.embed_torsion_angles": False,
    "data.use_templates": False,
    "data.reduce_msa_clusters_by_max_templates": False,
}


def tiny_checkpoint(params_dir: Path, name: str, seed: int, noise: float = 0.1,
                    no_templates: bool = True) -> Path:
    """A random tiny network (no recycling; no templates unless ``no_templates=False``)
    saved as ``params_dir/name``."""
    from uni_fold.config import model_config
    from uni_fold.model.alphafold import AlphaFold, save_checkpoint

    torch.manual_seed(seed)
    net = AlphaFold(model_config("tiny", NO_TEMPLATES if no_templates else None, num_recycle=0))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(noise * torch.randn_like(p))
    return save_checkpoint(net, params_dir / name)


def query_of(a3m: Path) -> str:
    """The first sequence of an a3m file (the query)."""
    lines = [ln.strip() for ln in a3m.read_text().splitlines() if ln.strip()]
    return lines[1]


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    return path


def short_alignments(root: Path) -> Path:
    """An alignments directory with ``<id>.a3m`` (ColabFold layout) for SHORT_CASES."""
    root.mkdir(parents=True, exist_ok=True)
    for name, a3m in SHORT_CASES.items():
        (root / f"{name}.a3m").write_text(a3m.read_text())
    return root


def assert_png(path: Path, min_size: int = 50) -> tuple[int, int]:
    """``path`` is a complete PNG image of a sensible size; returns (width, height)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        assert min(image.size) >= min_size, image.size
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 0, f"{path} is a blank image"
    return image.size


def per_residue_bfactors(prot: protein.Protein) -> np.ndarray:
    """``[N_res]`` B-factor of each residue (all its atoms must agree)."""
    b = np.where(prot.atom_mask > 0, prot.b_factors, np.nan)
    lo, hi = np.nanmin(b, axis=1), np.nanmax(b, axis=1)
    np.testing.assert_array_equal(lo, hi)
    return lo


def sequence_of(prot: protein.Protein) -> str:
    return "".join(rc.restypes_with_x[a] for a in prot.aatype)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
