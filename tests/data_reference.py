"""Helpers for the input-processing tests: raw features of real proteins made by the AF2
reference's data pipeline, the reference's feature processing run live, and a recorder
that captures the reference's random choices so ours can replay them.

The reference (``alphafold-colabfold``) runs AF2's TensorFlow input pipeline on a NumPy
backend (``alphafold.model.tf.np_backend``) whose random ops are module attributes; the
recorder wraps them for the duration of one run.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from alphafold.data import parsers, pipeline, templates  # noqa: E402
from alphafold.model import config as af2_config  # noqa: E402
from alphafold.model import features as af2_features  # noqa: E402
from alphafold.model.tf import input_pipeline, np_backend, proteins_dataset  # noqa: E402
from shared import SHARED_DATA  # noqa: E402

from data_pipeline import protein as protein_io  # noqa: E402
from uni_fold.config import Config  # noqa: E402

MMCIF_DIR = SHARED_DATA / "structures" / "mmcif"


# ----------------------------------------------------------------------------------------
# Raw features (reference data pipeline on real files)


@functools.cache
def _raw_features_cached(
    a3m: str, hhr: str | None, max_rows: int, max_templates: int
) -> dict[str, np.ndarray]:
    msa = parsers.parse_a3m((SHARED_DATA / a3m).read_text())
    msa = parsers.Msa(msa.sequences[:max_rows], msa.deletion_matrix[:max_rows],
                      msa.descriptions[:max_rows])
    sequence = msa.sequences[0]
    feats = {
        **pipeline.make_sequence_features(sequence, "query", len(sequence)),
        **pipeline.make_msa_features([msa]),
    }
    if hhr is not None:
        hits = parsers.parse_hhr((SHARED_DATA / hhr).read_text())
        hits = [h for h in hits if (MMCIF_DIR / f"{h.name[:4].lower()}.cif").is_file()]
        featurizer = templates.HhsearchHitFeaturizer(
            mmcif_dir=str(MMCIF_DIR), max_template_date="2100-01-01", max_hits=max_templates,
            kalign_binary_path="kalign", release_dates_path=None, obsolete_pdbs_path=None,
        )
        feats.update(featurizer.get_templates(sequence, hits).features)
    return feats


def raw_features(
    a3m: str = "msas/openfold_test_query/bfd_uniclust_hits.a3m",
    hhr: str | None = "msas/openfold_test_query/pdb70_hits.hhr",
    max_rows: int = 300,
    max_templates: int = 4,
) -> dict[str, np.ndarray]:
    """Raw features of a real query by AF2's ``make_sequence_features`` /
    ``make_msa_features`` / ``HhsearchHitFeaturizer`` (a fresh copy each call)."""
    feats = _raw_features_cached(a3m, hhr, max_rows, max_templates)
    return {k: np.array(v, copy=True) for k, v in feats.items()}


def structure_raw_features(
    pdb_id: str = "102m", chain: str = "A", a3m: str = "msas/102m_A/non_pairing.a3m",
    max_rows: int = 64,
) -> dict[str, np.ndarray]:
    """Raw features of a real chain with its MSA and its mmCIF coordinates."""
    feats = raw_features(a3m, None, max_rows)
    prot = protein_io.from_mmcif(MMCIF_DIR / f"{pdb_id}.cif", chain)
    query = feats["sequence"][0].decode()
    if prot.sequence() != query:
        raise AssertionError(f"{pdb_id}_{chain} sequence differs from the MSA query")
    feats["all_atom_positions"] = prot.atom_positions.astype(np.float32)
    feats["all_atom_mask"] = prot.atom_mask.astype(np.float32)
    feats["resolution"] = np.array([1.5], np.float32)
    return feats


# ----------------------------------------------------------------------------------------
# Reference processing with recorded random draws


@dataclass
class Draws:
    """The reference's random draws, by kind, in call order."""

    permutations: list[np.ndarray] = field(default_factory=list)
    uniforms: list[np.ndarray] = field(default_factory=list)
    categoricals: list[np.ndarray] = field(default_factory=list)


@contextlib.contextmanager
def record_reference_draws() -> Iterator[Draws]:
    """Wrap the NumPy backend's random ops; yields the :class:`Draws` they make."""
    draws = Draws()
    shuffle, uniform, categorical = (
        np_backend.random_shuffle, np_backend.random.uniform, np_backend.random.categorical
    )

    def rec_shuffle(value, seed=None, name=None):
        out = shuffle(value, seed=seed, name=name)
        value = np.asarray(value)
        start = int(value[0]) if value.size else 0
        draws.permutations.append(np.asarray(out, np.int64) - start)
        return out

    def rec_uniform(shape, minval=0, maxval=None, dtype=np_backend.float32, seed=None,
                    name=None):
        out = uniform(shape, minval=minval, maxval=maxval, dtype=dtype, seed=seed, name=name)
        if np.asarray(out).dtype == np.float32 and np.asarray(out).ndim >= 2:
            draws.uniforms.append(np.asarray(out))
        return out

    def rec_categorical(logits, num_samples, dtype=np_backend.int64, seed=None, name=None):
        out = categorical(logits, num_samples, dtype=dtype, seed=seed, name=name)
        draws.categoricals.append(np.asarray(out)[:, 0].astype(np.int64))
        return out

    np_backend.random_shuffle = rec_shuffle
    np_backend.random.uniform = rec_uniform
    np_backend.random.categorical = rec_categorical
    try:
        yield draws
    finally:
        np_backend.random_shuffle = shuffle
        np_backend.random.uniform = uniform
        np_backend.random.categorical = categorical


class ReplaySampler:
    """A :class:`uni_fold.data.Sampler` that hands back recorded draws in order."""

    def __init__(self, draws: Draws) -> None:
        self.permutations = list(draws.permutations)
        self.uniforms = list(draws.uniforms)
        self.categoricals = list(draws.categoricals)

    def permutation(self, n: int) -> torch.Tensor:
        perm = self.permutations.pop(0)
        assert perm.shape == (n,), f"replayed permutation of {perm.shape}, asked for {n}"
        return torch.from_numpy(perm)

    def uniform(self, shape: Sequence[int]) -> torch.Tensor:
        u = self.uniforms.pop(0)
        assert u.shape == tuple(shape), f"replayed uniform {u.shape}, asked for {shape}"
        return torch.from_numpy(u)

    def categorical(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.categoricals.pop(0)).reshape(probs.shape[:-1])

    def randint(self, low: int, high: int) -> int:
        raise AssertionError("the reference made no such draw")

    def exhausted(self) -> bool:
        return not (self.permutations or self.uniforms or self.categoricals)


def reference_config(cfg: Config) -> ml_collections.ConfigDict:
    """AF2's config with the data settings of our ``cfg``."""
    ref = copy.deepcopy(af2_config.model_config("model_1_ptm"))
    d = cfg.data
    ref.data.common.use_templates = d.use_templates
    ref.data.common.reduce_msa_clusters_by_max_templates = d.reduce_msa_clusters_by_max_templates
    ref.data.common.max_extra_msa = d.max_extra_msa
    ref.data.common.resample_msa_in_recycling = d.resample_msa_in_recycling
    ref.data.common.num_recycle = cfg.model.num_recycle
    ref.data.common.msa_cluster_features = d.msa_cluster_features
    for key in ("profile_prob", "same_prob", "uniform_prob"):
        ref.data.common.masked_msa[key] = getattr(d.masked_msa, key)
    ref.data.eval.masked_msa_replace_fraction = d.masked_msa.replace_fraction
    ref.data.eval.max_msa_clusters = d.max_msa_clusters
    ref.data.eval.max_templates = d.max_templates
    ref.data.eval.num_ensemble = d.num_ensemble
    ref.data.eval.subsample_templates = d.subsample_templates
    return ref


def reference_process(
    raw: dict[str, np.ndarray], cfg: Config, seed: int = 0
) -> tuple[dict[str, np.ndarray], Draws]:
    """The reference's processed features of ``raw`` and the random draws it made."""
    with record_reference_draws() as draws:
        feats = af2_features.np_example_to_features(dict(raw), reference_config(cfg), seed)
    num_slices = feats["aatype"].shape[0]
    if num_slices > 1:
        # With several slices the reference first runs slice 0 alone (to learn the output
        # signature, result unused), then every slice: drop that first run's draws.
        assert len(draws.uniforms) == num_slices + 1, "unexpected reference draw count"
        draws.uniforms = draws.uniforms[1:]
        draws.categoricals = draws.categoricals[1:]
        per_slice = len(draws.permutations) // (num_slices + 1)
        draws.permutations = draws.permutations[per_slice:]
    return feats, draws


def reference_nonensembled(raw: dict[str, np.ndarray], cfg: Config) -> dict[str, np.ndarray]:
    """The reference's once-per-example transforms of ``raw`` (before MSA sampling)."""
    example = dict(raw)
    example["deletion_matrix"] = example.pop("deletion_matrix_int").astype(np.float32)
    data_cfg, names = af2_features.make_data_config(reference_config(cfg), len(raw["aatype"]))
    np_backend.set_random_seed(0)
    tensors = proteins_dataset.np_to_tensor_dict(example, names)
    return input_pipeline.compose(input_pipeline.nonensembled_map_fns(data_cfg))(tensors)


def to_torch(feats: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Numeric reference features as tensors: integers int64, reals float32."""
    out = {}
    for k, v in feats.items():
        v = np.asarray(v)
        if v.dtype.kind in "iub":
            out[k] = torch.from_numpy(v.astype(np.int64))
        elif v.dtype.kind == "f":
            out[k] = torch.from_numpy(v.astype(np.float32))
    return out
