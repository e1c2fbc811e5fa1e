"""Training data on real entries of ../shared/data: chain lists, ground truth from mmCIF,
crops, recycling draws, MSA block deletion, filters, sampling weights, determinism (0 vs 2
workers), resuming, DDP sharding, self-distillation masking and clear errors.

Ground truth is checked against gemmi reading the same mmCIF / PDB files independently.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess

import gemmi
import numpy as np
import pytest
import torch
from shared import SHARED_DATA

from data_pipeline import residue_constants as rc
from data_pipeline.parsers.mmcif import parse_mmcif_file
from data_pipeline.pipeline import DatabaseConfig, DataPipeline
from uni_fold.config import model_config
from uni_fold.data import check_batch
from uni_fold.data.chain_list import (
    ChainMetadata,
    cluster_sizes,
    filter_reason,
    parse_chain_list,
    read_chain_list,
    sampling_weights,
)
from uni_fold.data.dataset import ChainDataset, MixedDataset, block_delete_msa
from uni_fold.data.distillation import DistillationDataset, mixed_training_dataset
from uni_fold.data.loader import make_dataloader, make_sampler
from uni_fold.data.train_config import TrainingDataConfig
from uni_fold.data.weighted_sampler import SampleKey, WeightedSampler

MMCIF = SHARED_DATA / "structures" / "mmcif"
MSAS = SHARED_DATA / "msas"
CHAINS = ("102m_A", "1k1a_A", "7zzx_B")
#: 102m and 1k1a share a cluster, 7zzx is alone: expected draw frequencies 1/4, 1/4, 1/2.
CHAIN_LIST = "# three real chains\n102m_A\tglobins\n\n1k1a_A\tglobins\n7zzx_B\tdhfr\n"
CA = rc.atom_order["CA"]
DISTILLED = "6KWC_1"
DISTILLED_PDB = SHARED_DATA / "reference_outputs/openfold_6kwc/6KWC_1_model_1_ptm_unrelaxed.pdb"


def _take(sampler, count):
    return list(itertools.islice(sampler, count))


def _link_alignments(aln_dir, name, source, files=("non_pairing.a3m",), copy=False):
    os.makedirs(aln_dir / name, exist_ok=True)
    for file in files:
        (shutil.copy if copy else os.symlink)(MSAS / source / file, aln_dir / name / file)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """A tiny mmCIF dir + alignments dir + chain list, as the data pipeline lays them out."""
    root = tmp_path_factory.mktemp("training_data")
    (root / "mmcif").mkdir()
    for name in CHAINS:
        pdb_id = name.split("_")[0]
        os.symlink(MMCIF / f"{pdb_id}.cif", root / "mmcif" / f"{pdb_id}.cif")
        # 102m's small MSA is copied so that a test can touch it.
        _link_alignments(root / "aln", name, name, copy=name == "102m_A")
    (root / "chains.txt").write_text(CHAIN_LIST)
    return root


@pytest.fixture(scope="module")
def config():
    return model_config("tiny")  # num_recycle = 1, templates on, 16 clusters, 32 extra rows


@pytest.fixture(scope="module")
def dataset(layout, config):
    return ChainDataset(layout / "mmcif", layout / "aln", layout / "chains.txt", config,
                        TrainingDataConfig(crop_size=64),
                        feature_cache_dir=layout / "cache", metadata_cache=layout / "meta.json")


@pytest.fixture(scope="module")
def globin(layout, config):
    """102m alone (98 MSA rows): cheap examples for the tests that need many."""
    return ChainDataset(layout / "mmcif", layout / "aln", ["102m_A"], config,
                        TrainingDataConfig(crop_size=48, num_recycle=2))


# ------------------------------------------------------------------ chain lists


def test_chain_list_reader(layout):
    entries = read_chain_list(layout / "chains.txt")
    assert [e.name for e in entries] == list(CHAINS)
    assert [e.cluster for e in entries] == ["globins", "globins", "dhfr"]
    assert [e.line for e in entries] == [2, 4, 5]
    assert (entries[1].pdb_id, entries[1].chain_id) == ("1k1a", "A")
    assert cluster_sizes(entries).tolist() == [2, 2, 1]
    no_clusters = parse_chain_list(["1abc_A", "1abc_B"])
    assert cluster_sizes(no_clusters).tolist() == [1, 1]


@pytest.mark.parametrize("text, line, words", [
    ("102m_A\n1k1a A\n", 2, "spaces"),
    ("102m_A\n102mA\n", 2, "<pdb id>_<chain id>"),
    ("102m_A\tc1\textra\n", 1, "3 tab-separated fields"),
    ("102m_A\n\n102m_A\tc2\n", 3, "listed twice"),
    ("102m_A\t\n", 1, "empty cluster id"),
])
def test_chain_list_errors_name_the_line(tmp_path, text, line, words):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"bad.txt:{line}: .*") as info:
        read_chain_list(path)
    assert words in str(info.value)


def test_chain_list_empty_or_missing(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="names no chain"):
        read_chain_list(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        read_chain_list(tmp_path / "nowhere.txt")
    assert parse_chain_list(["my-model.v2"], pdb_names=False)[0].name == "my-model.v2"


# ------------------------------------------------------------------ ground truth


def _gemmi_ca(pdb_id: str, chain_id: str) -> tuple[int, dict[int, list[np.ndarray]]]:
    """SEQRES length and, per SEQRES index, the CA position of every alternate location."""
    doc = gemmi.cif.read(str(MMCIF / f"{pdb_id}.cif"))
    st = gemmi.make_structure_from_block(doc[0])
    st.setup_entities()
    chain = st[0][chain_id]
    polymer = chain.get_polymer()
    entity = st.get_entity_of(polymer)
    cas: dict[int, list[np.ndarray]] = {}
    for residue in polymer:
        for atom in residue:
            if atom.name == "CA":
                cas.setdefault(residue.label_seq - 1, []).append(np.array(atom.pos.tolist()))
    return len(entity.full_sequence), cas


@pytest.mark.parametrize("index", range(3))
def test_raw_ground_truth_matches_mmcif(dataset, index):
    name = dataset.entries[index].name
    pdb_id, chain_id = name.split("_")
    raw = dataset.raw_features(index)
    num_res, cas = _gemmi_ca(pdb_id, chain_id)
    positions, mask = raw["all_atom_positions"], raw["all_atom_mask"]
    assert positions.shape == (num_res, 37, 3) and mask.shape == (num_res, 37)
    assert raw["msa"].shape[1] == num_res
    observed = mask[:, CA] > 0
    assert sorted(np.flatnonzero(observed).tolist()) == sorted(cas)
    for i, alternatives in cas.items():
        distance = min(np.abs(positions[i, CA] - a).max() for a in alternatives)
        assert distance < 1e-3, (name, i)
    assert not positions[~observed].any()
    # AF2's rule: the last of refinement, EM, reflections resolution that is given.
    block = gemmi.cif.read(str(MMCIF / f"{pdb_id}.cif"))[0]
    values = [block.find_value(t) for t in ("_refine.ls_d_res_high",
                                            "_em_3d_reconstruction.resolution",
                                            "_reflns.d_resolution_high")]
    assert raw["resolution"][0] == pytest.approx(float([v for v in values if v][-1]))
    assert raw["release_date"][0].decode().count("-") == 2


def test_unobserved_residues_of_1k1a_are_masked(dataset, config):
    index = [e.name for e in dataset.entries].index("1k1a_A")
    raw = dataset.raw_features(index)
    assert int((raw["all_atom_mask"][:, CA] == 0).sum()) == 13
    # Uncropped (crop 256 >= 241 residues): the batch holds the whole chain, padded.
    whole = ChainDataset(dataset.mmcif_dir, dataset.alignments_dir, ["1k1a_A"], config,
                         TrainingDataConfig(crop_size=256),
                         feature_cache_dir=dataset.feature_cache_dir)
    batch = whole[0]
    assert check_batch(batch)["N_res"] == 256
    assert batch["seq_length"][0] == 241 and batch["seq_mask"][0].sum() == 241
    np.testing.assert_array_equal(batch["all_atom_positions"][0, :241].numpy(),
                                  raw["all_atom_positions"])
    np.testing.assert_array_equal(batch["all_atom_mask"][0, :241].numpy(), raw["all_atom_mask"])
    assert not batch["all_atom_mask"][:, 241:].any()
    assert int((batch["all_atom_mask"][0, :241, CA] == 0).sum()) == 13


def test_crops_hold_the_matching_ground_truth(dataset):
    for index in range(3):
        raw = dataset.raw_features(index)
        num_res = raw["msa"].shape[1]
        batch = dataset[SampleKey(0, index, seed=11 + index, position=0)]
        sizes = check_batch(batch)
        assert sizes["N_res"] == 64 and sizes["num_slices"] == 2
        assert (batch["seq_length"] == 64).all() and batch["seq_mask"].sum() == 2 * 64
        start = int(batch["residue_index"][0, 0])
        assert 0 <= start <= num_res - 64
        assert batch["residue_index"][0].tolist() == list(range(start, start + 64))
        window = slice(start, start + 64)
        np.testing.assert_array_equal(batch["all_atom_positions"][0].numpy(),
                                      raw["all_atom_positions"][window])
        np.testing.assert_array_equal(batch["aatype"][0].numpy(),
                                      raw["aatype"][window].argmax(-1))


def test_short_chain_is_padded_to_the_crop(globin):
    batch = globin[0]
    assert check_batch(batch)["N_res"] == 48
    padded = ChainDataset(globin.mmcif_dir, globin.alignments_dir, ["102m_A"], globin.config,
                          TrainingDataConfig(crop_size=200))[0]
    assert check_batch(padded)["N_res"] == 200
    assert (padded["seq_length"] == 154).all() and padded["seq_mask"][0].sum() == 154


def test_recycles_drawn_per_example(globin):
    draws = []
    for seed in range(12):
        batch = globin[SampleKey(0, 0, seed, seed)]
        assert batch["aatype"].shape[0] == 3  # num_recycle = 2: three slices
        values = batch["num_iter_recycling"]
        assert (values == values[0]).all()
        draws.append(int(values[0]))
    assert set(draws) <= {0, 1, 2} and len(set(draws)) >= 2
    assert batch["is_distillation"].eq(0).all()


# ------------------------------------------------------------------ block deletion


def test_block_delete_msa(dataset):
    raw = dataset.raw_features([e.name for e in dataset.entries].index("1k1a_A"))
    num_seq = raw["msa"].shape[0]
    cfg = TrainingDataConfig()
    block = int(num_seq * cfg.msa_fraction_per_block)
    a = block_delete_msa(raw, np.random.default_rng(5), cfg)
    b = block_delete_msa(raw, np.random.default_rng(5), cfg)
    c = block_delete_msa(raw, np.random.default_rng(6), cfg)
    np.testing.assert_array_equal(a["msa"], b["msa"])
    assert not np.array_equal(a["msa"], c["msa"]) or a["msa"].shape != c["msa"].shape
    kept = a["msa"].shape[0]
    assert num_seq - cfg.num_blocks * block <= kept < num_seq
    np.testing.assert_array_equal(a["msa"][0], raw["msa"][0])  # the query stays
    assert (a["num_alignments"] == kept).all()
    # Kept rows are original rows in order, with their own deletions and species.
    rows = _kept_rows(raw, a)
    assert rows.tolist() == sorted(rows.tolist()) and rows[0] == 0
    np.testing.assert_array_equal(a["msa_species_identifiers"],
                                  raw["msa_species_identifiers"][rows])
    # What was removed is a union of at most num_blocks runs of `block` rows.
    removed = np.setdiff1d(np.arange(num_seq), rows)
    runs = np.split(removed, np.flatnonzero(np.diff(removed) > 1) + 1)
    assert sum(-(-len(r) // block) for r in runs) <= cfg.num_blocks
    assert raw["msa"].shape[0] == num_seq  # input untouched
    same = block_delete_msa(raw, np.random.default_rng(0),
                            TrainingDataConfig(msa_fraction_per_block=0.0))
    assert same["msa"] is raw["msa"]
    counts = {block_delete_msa(raw, np.random.default_rng(s), TrainingDataConfig(
        num_blocks=1, randomize_num_blocks=True))["msa"].shape[0] == num_seq for s in range(40)}
    assert counts == {True, False}  # 0 or 1 block drawn


def _kept_rows(raw, out):
    """Original row index of each output row (rows are unique after de-duplication)."""
    keys = {(r.tobytes(), d.tobytes()): i for i, (r, d) in
            enumerate(zip(raw["msa"], raw["deletion_matrix_int"], strict=True))}
    return np.array([keys[(r.tobytes(), d.tobytes())]
                     for r, d in zip(out["msa"], out["deletion_matrix_int"], strict=True)])


# --------------------------------------------------------- filters and weights


def test_filters_and_weights(dataset, layout, config):
    meta = dict(zip([e.name for e in dataset.entries], dataset.metadata, strict=True))
    assert meta["7zzx_B"].resolution == pytest.approx(2.4)
    assert filter_reason(meta["7zzx_B"], TrainingDataConfig()) is None
    assert "resolution" in filter_reason(meta["7zzx_B"], TrainingDataConfig(max_resolution=2.0))
    assert "released" in filter_reason(meta["7zzx_B"],
                                       TrainingDataConfig(max_release_date="2018-04-30"))
    assert "length" in filter_reason(meta["1k1a_A"], TrainingDataConfig(max_length=200))
    assert "makes up" in filter_reason(ChainMetadata("QQQQQQQQQG"), TrainingDataConfig())
    strict = ChainDataset(layout / "mmcif", layout / "aln", layout / "chains.txt", config,
                          TrainingDataConfig(max_resolution=2.0),
                          metadata_cache=layout / "meta.json")
    assert [e.name for e in strict.entries] == ["102m_A", "1k1a_A"]
    assert strict.weights.tolist() == pytest.approx([0.25, 0.25])  # the cluster of two
    lengths = sampling_weights([100, 300, 600], [1, 1, 4], TrainingDataConfig())
    assert lengths.tolist() == pytest.approx([0.5, 300 / 512, 0.25])


def test_metadata_cache_is_reused(layout, config, monkeypatch, tmp_path):
    # Make the cache here: tests may run in any order (and in different pytest-xdist workers).
    cache = tmp_path / "meta.json"
    ChainDataset(layout / "mmcif", layout / "aln", layout / "chains.txt", config,
                 metadata_cache=cache)
    assert cache.exists()

    def fail(*args):
        raise AssertionError("metadata should come from the cache")

    monkeypatch.setattr(ChainDataset, "_read_metadata", fail)
    again = ChainDataset(layout / "mmcif", layout / "aln", layout / "chains.txt", config,
                         metadata_cache=cache)
    assert len(again) == 3


def test_sampler_follows_cluster_weights(dataset):
    assert dataset.weights.tolist() == pytest.approx([0.25, 0.25, 0.5])  # all < 256 res.
    sampler = make_sampler(dataset, seed=1)
    n = 20000
    counts = np.bincount([k.index for k in _take(sampler, n)], minlength=3)
    expected = np.array([0.25, 0.25, 0.5]) * n
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected))


# ------------------------------------------- determinism, workers, resuming, DDP


def _batches(loader, count):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            return out
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_batches_with_0_or_2_workers(dataset):
    serial = _batches(make_dataloader(dataset, make_sampler(dataset, seed=7), batch_size=2), 2)
    again = _batches(make_dataloader(dataset, make_sampler(dataset, seed=7), batch_size=2), 2)
    workers = _batches(make_dataloader(dataset, make_sampler(dataset, seed=7), batch_size=2,
                                       num_workers=2), 2)
    assert serial[0]["aatype"].shape == (2, 2, 64)
    for a, b, c in zip(serial, again, workers, strict=True):
        _assert_same(a, b)
        _assert_same(a, c)
    other = _batches(make_dataloader(dataset, make_sampler(dataset, seed=8), batch_size=2), 1)
    assert not torch.equal(other[0]["msa_feat"], serial[0]["msa_feat"])


class _KeyEcho(torch.utils.data.Dataset):
    """Returns the key it was asked for, to follow the stream through a loader cheaply."""

    weights = np.array([1.0, 2.0, 3.0])
    source_weights, source_ratios = [weights], [1.0]

    def __getitem__(self, key):
        return {"index": torch.tensor(key.index), "position": torch.tensor(key.position),
                "seed": torch.tensor(key.seed)}


def test_resume_gives_the_same_continuation(globin):
    sampler = WeightedSampler([1.0, 2.0, 3.0], seed=4, chunk_size=5)
    keys = _take(sampler, 12)
    assert [k.position for k in keys] == list(range(12))
    resumed = WeightedSampler([1.0, 2.0, 3.0], seed=4, chunk_size=5)
    first = WeightedSampler([1.0, 2.0, 3.0], seed=4, chunk_size=5)
    _ = _take(first, 7)
    resumed.load_state_dict(first.state_dict())
    assert _take(resumed, 5) == keys[7:]
    with pytest.raises(ValueError, match="seed 4"):
        WeightedSampler([1.0], seed=5).load_state_dict(first.state_dict())

    # Through a prefetching loader with workers: the state is where the consumer is.
    data = _KeyEcho()
    loader = make_dataloader(data, make_sampler(data, seed=9), batch_size=2, num_workers=2)
    whole = _batches(loader, 5)
    loader = make_dataloader(data, make_sampler(data, seed=9), batch_size=2, num_workers=2)
    _batches(loader, 2)
    state = loader.state_dict()
    assert state["num_samples_drawn"] == 4 and loader.sampler.num_samples_drawn > 4
    restarted = make_dataloader(data, make_sampler(data, seed=9), batch_size=2, num_workers=2)
    restarted.load_state_dict(state)
    for a, b in zip(whole[2:], _batches(restarted, 3), strict=True):
        _assert_same(a, b)

    # And on real data: the resumed example equals the uninterrupted one.
    stream = make_dataloader(globin, make_sampler(globin, seed=2))
    expected = _batches(stream, 3)[2]
    resumed_loader = make_dataloader(globin, make_sampler(globin, seed=2))
    resumed_loader.load_state_dict({"seed": 2, "num_samples_drawn": 2})
    _assert_same(expected, _batches(resumed_loader, 1)[0])


def test_ddp_shards_are_disjoint_slices_of_one_stream():
    weights = [np.ones(10), np.arange(1.0, 6.0)]
    single = WeightedSampler(weights, ratios=[0.25, 0.75], seed=3, chunk_size=16)
    stream = _take(single, 60)
    shards = []
    for rank in range(3):
        sampler = WeightedSampler(weights, ratios=[0.25, 0.75], seed=3, chunk_size=16,
                                  num_replicas=3, rank=rank)
        shards.append(_take(sampler, 20))
        assert shards[-1] == stream[rank::3]
    positions = [k.position for shard in shards for k in shard]
    assert sorted(positions) == list(range(60))
    # Resuming with another world size continues after what all ranks had seen.
    state = WeightedSampler(weights, ratios=[0.25, 0.75], seed=3, num_replicas=3,
                            chunk_size=16).state_dict()
    state.update(num_samples_drawn=4, samples_seen=12)
    two = WeightedSampler(weights, ratios=[0.25, 0.75], seed=3, chunk_size=16,
                          num_replicas=2, rank=1)
    two.load_state_dict(state)
    assert next(iter(two)) == stream[13]
    with pytest.raises(ValueError, match="rank"):
        WeightedSampler(weights, ratios=[0.5, 0.5], num_replicas=2, rank=2)


# ------------------------------------------------------------ self-distillation


@pytest.fixture(scope="module")
def distillation_layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("distillation")
    (root / "structures").mkdir()
    os.symlink(DISTILLED_PDB, root / "structures" / f"{DISTILLED}.pdb")
    _link_alignments(root / "aln", DISTILLED, "6kwc_1", files=("bfd_uniref_hits.a3m",))
    (root / "list.txt").write_text(f"{DISTILLED}\n")
    return root


def _gemmi_plddt() -> np.ndarray:
    st = gemmi.read_structure(str(DISTILLED_PDB))
    return np.array([next(a.b_iso for a in r if a.name == "CA") for r in st[0][0]])


@pytest.mark.parametrize("threshold", [70.0, 90.0])
def test_distillation_masks_low_plddt(distillation_layout, config, threshold):
    data = DistillationDataset(distillation_layout / "structures", distillation_layout / "aln",
                               distillation_layout / "list.txt", config,
                               TrainingDataConfig(crop_size=256,
                                                  distillation_min_plddt=threshold),
                               feature_cache_dir=distillation_layout / "cache")
    raw = data.raw_features(0)
    plddt = _gemmi_plddt()
    low = plddt < threshold
    assert 0 < low.sum() < len(plddt)  # 2 residues below 70, more below 90
    assert not raw["all_atom_mask"][low].any()
    assert (raw["all_atom_mask"][~low, CA] == 1).all()
    assert (raw["all_atom_mask"][~low].sum(-1) > 3).all()
    batch = data[0]
    assert batch["is_distillation"].eq(1).all() and batch["resolution"].eq(0).all()
    assert batch["all_atom_mask"][0, :191, CA].sum() == (~low).sum()


def test_mixed_sources_follow_the_ratio(dataset, distillation_layout, config):
    distilled = DistillationDataset(distillation_layout / "structures",
                                    distillation_layout / "aln", [DISTILLED], config,
                                    TrainingDataConfig(crop_size=64),
                                    feature_cache_dir=distillation_layout / "cache")
    mixed = mixed_training_dataset(dataset, distilled, TrainingDataConfig())
    assert mixed.source_ratios == [0.25, 0.75]
    sampler = make_sampler(mixed, seed=5)
    keys = _take(sampler, 8000)
    fraction = np.mean([k.source for k in keys])
    assert abs(fraction - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 8000)
    first_pdb = next(k for k in keys if k.source == 0)
    first_distilled = next(k for k in keys if k.source == 1)
    assert mixed[first_pdb]["is_distillation"].eq(0).all()
    assert mixed[first_distilled]["is_distillation"].eq(1).all()
    with pytest.raises(TypeError, match="SampleKey"):
        mixed[0]
    with pytest.raises(ValueError, match="one ratio per source"):
        MixedDataset([dataset], [0.5, 0.5])


# ------------------------------------------------------------------ caching


def test_raw_feature_cache(dataset, monkeypatch):
    index = [e.name for e in dataset.entries].index("102m_A")
    first = dataset.raw_features(index)
    path = os.path.join(dataset.feature_cache_dir, "102m_A.npz")
    with np.load(path, allow_pickle=False) as stored:
        assert "all_atom_positions" in stored.files
    built = []
    original = ChainDataset._build
    monkeypatch.setattr(ChainDataset, "_build",
                        lambda self, *a: built.append(1) or original(self, *a))
    again = dataset.raw_features(index)
    assert built == []
    for name in first:
        if first[name].dtype != object:
            np.testing.assert_array_equal(first[name], again[name])
    a3m = os.path.join(dataset.alignments_dir, "102m_A", "non_pairing.a3m")
    stat = os.stat(a3m)
    os.utime(a3m, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    dataset.raw_features(index)
    assert built == [1]  # a changed alignment file is read again


# ------------------------------------------------------------------ templates


def test_templates_are_released_before_the_chain(tmp_path, config):
    """102m (released 1998) gets no template: every hit the real hhsearch finds in the
    mini PDB that passes AF2's prefilter is a later entry."""
    (tmp_path / "mmcif").mkdir()
    os.symlink(MMCIF / "102m.cif", tmp_path / "mmcif" / "102m.cif")
    _link_alignments(tmp_path / "aln", "102m_A", "102m_A")
    hhr = tmp_path / "aln" / "102m_A" / "pdb_hits.hhr"
    subprocess.run(["hhsearch", "-i", str(MSAS / "102m_A" / "non_pairing.a3m"), "-d",
                    str(SHARED_DATA / "templates/hhsuite_db/pdb_mini"), "-o", str(hhr),
                    "-cpu", "1", "-v", "0"], check=True)
    unrestricted = DataPipeline(DatabaseConfig(template_mmcif_dir=str(MMCIF),
                                               max_template_date="2100-01-01"))
    sequence = (MSAS / "102m_A" / "query.fasta").read_text().split("\n", 1)[1]
    raw = unrestricted.process_sequence("".join(sequence.split()), "102m_A",
                                        tmp_path / "aln" / "102m_A")
    names = [n.decode() for n in raw["template_domain_names"]]
    assert names  # without a date limit there are templates ...
    for name in names:  # ... all released after 102m
        header = parse_mmcif_file(MMCIF / f"{name.split('_')[0]}.cif").header
        assert header["release_date"] > "1998-04-08", name
    data = ChainDataset(tmp_path / "mmcif", tmp_path / "aln", ["102m_A"], config,
                        template_mmcif_dir=MMCIF)
    assert data._template_date("1998-04-08") == "1998-04-07"
    assert data.raw_features(0)["template_aatype"].shape[0] == 0
    assert data[0]["template_mask"].eq(0).all()


# ------------------------------------------------------------------ errors


def test_missing_inputs_are_named(layout, config, tmp_path):
    (tmp_path / "list.txt").write_text("102m_A\n1abc_A\n1k1a_A\n")
    os.makedirs(tmp_path / "aln" / "102m_A")
    with pytest.raises(FileNotFoundError) as info:
        ChainDataset(layout / "mmcif", tmp_path / "aln", tmp_path / "list.txt", config)
    text = str(info.value)
    assert "1abc_A (line 2)" in text and "1abc.cif" in text  # no mmCIF
    assert "1k1a_A (line 3): no alignments folder" in text
    assert "102m_A" not in text
    with pytest.raises(ValueError, match="102m_B.*no protein chain 'B'"):
        os.makedirs(tmp_path / "aln" / "102m_B")
        ChainDataset(layout / "mmcif", tmp_path / "aln", ["102m_B"], config)
    with pytest.raises(FileNotFoundError, match="alignments directory"):
        ChainDataset(layout / "mmcif", tmp_path / "nowhere", ["102m_A"], config)


def test_alignments_of_another_chain_are_refused(layout, config, tmp_path):
    _link_alignments(tmp_path / "aln", "102m_A", "1k1a_A")
    data = ChainDataset(layout / "mmcif", tmp_path / "aln", ["102m_A"], config)
    with pytest.raises(ValueError, match="chain 102m_A: the alignments in .* do not fit"):
        data[0]


def test_distillation_needs_plddt_in_b_factors(config, tmp_path):
    (tmp_path / "structures").mkdir()
    os.symlink(SHARED_DATA / "reference_outputs/rosettafold_t000/t000_.e2e.pdb",
               tmp_path / "structures" / "t000.pdb")
    _link_alignments(tmp_path / "aln", "t000", "rosettafold_t000", files=("t000_.msa0.a3m",))
    data = DistillationDataset(tmp_path / "structures", tmp_path / "aln", ["t000"], config)
    with pytest.raises(ValueError, match="0..1 scale"):
        data[0]
    with pytest.raises(FileNotFoundError, match="no predicted structure for nothing"):
        os.makedirs(tmp_path / "aln" / "nothing")
        DistillationDataset(tmp_path / "structures", tmp_path / "aln", ["nothing"], config)


def test_config_errors():
    with pytest.raises(ValueError, match="crop_size"):
        TrainingDataConfig(crop_size=0)
    with pytest.raises(ValueError, match="max_release_date"):
        TrainingDataConfig(max_release_date="April 2018")
    with pytest.raises(ValueError, match="distillation_ratio"):
        TrainingDataConfig(distillation_ratio=1.5)
