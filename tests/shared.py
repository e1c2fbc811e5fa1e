"""Where the tests find the real data in ../shared/data (see its PROVENANCE.md).

Set ``UNI_FOLD_SHARED_DATA`` to point elsewhere. The data is required: a missing folder
fails the tests that need it rather than silently skipping them.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("UNI_FOLD_SHARED_DATA")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not (path / "INDEX.tsv").is_file():
        raise FileNotFoundError(
            f"shared test data not found at {path}; check out ../shared next to the repository "
            "or set UNI_FOLD_SHARED_DATA to the folder holding INDEX.tsv"
        )
    return path


SHARED_DATA = shared_data_dir()
MMCIF_FILES = sorted((SHARED_DATA / "structures" / "mmcif").glob("*.cif"))
PDB_FILES = sorted((SHARED_DATA / "structures" / "pdb").glob("*.pdb"))
STRUCTURE_FILES = MMCIF_FILES + PDB_FILES
