"""The top-level AlphaFold model: end-to-end parity with the AF2 reference on a real
protein, strict AF2 parameter loading, checkpoints, recycling and bad input.

The parity test follows the issue's done-criteria: ``model_1_ptm`` with 2 Evoformer, 1
extra-MSA and 1 template-stack block, 1 recycle, the OpenFold test query (73 residues,
its real MSA, two real templates found by its hhsearch hits), features processed by the
reference's own pipeline, random AF2-format parameters (see ``af2_parity.py``).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from af2_parity import ParitySetup, run_parity
from alphafold.common import confidence as af2_confidence

from uni_fold.config import model_config
from uni_fold.model.alphafold import (
    FEATURES,
    TEMPLATE_FEATURES,
    AlphaFold,
    alphafold_table,
    ca_distance_rms_change,
    infer_block_counts,
    load_alphafold_params,
    save_checkpoint,
)
from uni_fold.model.runtime import RuntimeConfig, apply_runtime
from uni_fold.model.weights import WeightImportError

SETUP = ParitySetup(
    preset="model_1_ptm",
    evoformer_num_block=2,
    extra_msa_stack_num_block=1,
    template_pair_stack_num_block=1,
    num_recycle=1,
    case="openfold_test_query",
    max_msa_clusters=32,
    max_extra_msa=128,
    # The recycling embedder bins distances (Alg. 32): a pair within round-off of a bin edge
    # would send the two models different inputs. With this seed the closest pair is ~1e-2 A
    # from an edge, 20x the round-off; the test checks that margin below.
    seed=7,
)


@pytest.fixture(scope="module")
def flush_denormals():
    """XLA flushes denormals on the CPU; do the same (it is also much faster)."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(scope="module")
def parity(tmp_path_factory, flush_denormals):
    workdir = tmp_path_factory.mktemp("parity")
    return run_parity(SETUP, workdir), workdir


def test_end_to_end_parity_with_af2(parity):
    result, _ = parity
    e = result.errors
    assert result.info["num_templates"] == 2 and result.info["num_res"] == 73
    assert result.info["recycling_bin_margin_A"] > 5e-3, "pick a seed away from bin edges"
    assert e["final_atom_mask_mismatch"] == 0.0
    assert e["final_atom_positions_max_A"] < 1e-3, e
    assert e["plddt_max_abs"] < 1e-3, e
    assert e["predicted_aligned_error_max_A"] < 1e-3, e
    assert e["max_predicted_aligned_error_abs"] < 1e-5, e
    assert e["ptm_abs"] < 1e-5, e
    assert e["distogram_logits_max_rel"] < 1e-4, e
    assert e["masked_msa_logits_max_rel"] < 1e-4, e
    assert e["experimentally_resolved_logits_max_rel"] < 1e-4, e


def test_block_counts_are_read_from_the_file(parity):
    _, workdir = parity
    params = dict(np.load(workdir / "params_model_1_ptm.npz"))
    assert infer_block_counts(params) == {
        "evoformer_num_block": 2,
        "extra_msa_stack_num_block": 1,
        "template_pair_stack_num_block": 1,
    }


def test_params_that_do_not_fit_name_the_keys(parity, tmp_path):
    _, workdir = parity
    npz = workdir / "params_model_1_ptm.npz"
    params = dict(np.load(npz))

    # A preset without templates: the template arrays are unexpected.
    with pytest.raises(WeightImportError, match="unexpected AF2 key.*template_embedding"):
        AlphaFold.from_alphafold_params(npz, "model_3_ptm")
    # A preset without the PAE head: its arrays are unexpected.
    with pytest.raises(WeightImportError, match="predicted_aligned_error_head"):
        AlphaFold.from_alphafold_params(npz, "model_1")

    model = AlphaFold(model_config("model_1_ptm", evoformer_num_block=2,
                                   extra_msa_stack_num_block=1, template_pair_stack_num_block=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    key = "alphafold/alphafold_iteration/evoformer/preprocess_msa//weights"
    missing = {k: v for k, v in params.items() if k != key}
    with pytest.raises(WeightImportError, match="missing from the params: " + key):
        load_alphafold_params(model, missing)
    misshapen = dict(params, **{key: params[key][:, :100]})
    with pytest.raises(WeightImportError, match="shape mismatch.*preprocess_msa"):
        load_alphafold_params(model, misshapen)
    # Nothing was copied by the failed loads.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # An explicit block count that disagrees with the file is named too.
    with pytest.raises(WeightImportError, match="evoformer_iteration.*stacks 2 block"):
        AlphaFold.from_alphafold_params(npz, "model_1_ptm", evoformer_num_block=3)


def test_table_covers_every_parameter_of_every_preset():
    for preset in ("model_1", "model_2_ptm", "model_3", "model_5_ptm", "tiny"):
        with torch.device("meta"):
            model = AlphaFold(model_config(preset, evoformer_num_block=1,
                                           extra_msa_stack_num_block=1))
        table = alphafold_table(model.config)
        assert set(table) == {k for k, _ in model.named_parameters()}, preset


# ----------------------------------------------------------------------------------------
# A tiny model on a synthetic batch: checkpoints, recycling, bad input


N_RES, N_SEQ, N_EXTRA, N_TEMPL = 9, 5, 6, 2


def tiny_batch(num_slices: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = num_slices
    aatype = torch.randint(0, 20, (N_RES,), generator=g).expand(r, N_RES)
    return {
        "aatype": aatype,
        "target_feat": torch.nn.functional.one_hot(aatype + 1, 22).float(),
        "msa_feat": torch.rand(r, N_SEQ, N_RES, 49, generator=g),
        "msa_mask": torch.ones(r, N_SEQ, N_RES),
        "seq_mask": torch.ones(r, N_RES),
        "residue_index": torch.arange(N_RES).expand(r, N_RES),
        "extra_msa": torch.randint(0, 23, (r, N_EXTRA, N_RES), generator=g),
        "extra_msa_mask": torch.ones(r, N_EXTRA, N_RES),
        "extra_has_deletion": torch.zeros(r, N_EXTRA, N_RES),
        "extra_deletion_value": torch.zeros(r, N_EXTRA, N_RES),
        "template_aatype": torch.randint(0, 22, (r, N_TEMPL, N_RES), generator=g),
        "template_all_atom_positions": 5 * torch.randn(r, N_TEMPL, N_RES, 37, 3, generator=g),
        "template_all_atom_masks": torch.ones(r, N_TEMPL, N_RES, 37),
        "template_pseudo_beta": 5 * torch.randn(r, N_TEMPL, N_RES, 3, generator=g),
        "template_pseudo_beta_mask": torch.ones(r, N_TEMPL, N_RES),
        "template_mask": torch.ones(r, N_TEMPL),
    }


def tiny_model(**overrides) -> AlphaFold:
    """The ``tiny`` preset with every parameter random (no zero "final" layers)."""
    torch.manual_seed(0)
    model = AlphaFold(model_config("tiny", **overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_tiny_forward_outputs():
    model = tiny_model()
    with torch.no_grad():
        out = model(tiny_batch())
    assert out["final_atom_positions"].shape == (N_RES, 37, 3)
    assert out["final_atom_mask"].shape == (N_RES, 37)
    assert out["plddt"].shape == (N_RES,)
    assert torch.all((out["plddt"] >= 0) & (out["plddt"] <= 100))
    assert out["predicted_aligned_error"].shape == (N_RES, N_RES)
    assert 0 <= float(out["ptm"]) <= 1
    assert out["distogram_logits"].shape == (N_RES, N_RES, 64)
    assert out["masked_msa_logits"].shape == (N_SEQ, N_RES, 23)
    assert out["experimentally_resolved_logits"].shape == (N_RES, 37)
    assert out["prev_pair"].shape == (N_RES, N_RES, 8) and out["prev_pair"].dtype == torch.float32
    assert out["num_recycles"] == 1
    assert out["sm"]["affine"].shape[0] == 2  # per structure-module layer
    # No PAE head without the _ptm weight.
    model = AlphaFold(model_config("tiny", overrides={
        "model.heads.predicted_aligned_error.weight": 0.0})).eval()
    with torch.no_grad():
        out = model(tiny_batch())
    assert "ptm" not in out and "predicted_aligned_error" not in out


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model()
    save_checkpoint(model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json", "model.safetensors"]
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["name"] == "tiny"
    loaded = AlphaFold.from_checkpoint(tmp_path / "ckpt")
    assert not loaded.training  # ready for inference
    assert loaded.config == model.config
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    batch = tiny_batch()
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    assert torch.equal(a["final_atom_positions"], b["final_atom_positions"])

    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupt"):
        AlphaFold.from_checkpoint(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="config.json"):
        AlphaFold.from_checkpoint(tmp_path / "nowhere")


def test_missing_feature_is_named():
    model = tiny_model()
    for key in ("extra_msa", "template_pseudo_beta"):
        batch = tiny_batch()
        del batch[key]
        with pytest.raises(KeyError, match=key):
            model(batch)
    assert set(model.required_features()) == set(FEATURES) | set(TEMPLATE_FEATURES)


def test_bad_recycling_axis_is_explained():
    model = tiny_model()
    batch = {k: v[0] for k, v in tiny_batch().items()}
    with pytest.raises(ValueError, match="leading recycling axis"):
        model(batch)
    with pytest.raises(ValueError, match="needs 2"):
        model(tiny_batch(num_slices=1))


def test_recycling_uses_one_slice_per_iteration_and_stops_early():
    model = tiny_model(num_recycle=3)
    calls = []
    inner = model.iteration

    def spy(batch, prev):
        calls.append((batch["msa_feat"].clone(), torch.is_grad_enabled()))
        return inner(batch, prev)

    model.iteration = spy
    batch = tiny_batch(num_slices=4)
    batch["msa_feat"] = batch["msa_feat"] + torch.arange(4.0)[:, None, None, None]
    with torch.no_grad():
        out = model(batch)
    assert out["num_recycles"] == 3 and len(calls) == 4
    for r, (msa_feat, _) in enumerate(calls):
        assert torch.equal(msa_feat, batch["msa_feat"][r])

    # A tolerance no change can stay above stops after the first recycle.
    calls.clear()
    model.config.model.recycle_early_stop_tolerance = 1e9
    with torch.no_grad():
        out = model(batch)
    assert out["num_recycles"] == 1 and len(calls) == 2


def test_training_takes_gradients_only_through_the_last_iteration():
    model = tiny_model(num_recycle=2).train()
    grad_modes = []
    inner = model.iteration
    model.iteration = lambda b, p: (grad_modes.append(torch.is_grad_enabled()), inner(b, p))[1]
    batch = tiny_batch(num_slices=3)
    out = model(batch)
    assert grad_modes == [False, False, True]
    out["final_atom_positions"].sum().backward()
    assert model.evoformer.input_embedder.preprocess_msa.weight.grad is not None
    # AF2's sampled number of recycles caps the iterations in training.
    grad_modes.clear()
    model(dict(batch, num_iter_recycling=torch.tensor([1, 1, 1])))
    assert grad_modes == [False, True]


def test_ca_distance_rms_change():
    pos = torch.zeros(4, 37, 3)
    pos[:, 1, 0] = torch.arange(4.0)  # CAs on a line, 1 A apart
    moved = pos.clone()
    moved[3, 1, 0] = 5.0  # the last CA moves 2 A away from the others
    mask = torch.ones(4)
    change = ca_distance_rms_change(pos, moved, mask)
    # Distances to residue 3 grow by 2 A (3 pairs, both orders) out of 16 entries.
    assert abs(float(change) - np.sqrt(6 * 4 / 16)) < 1e-4
    mask[3] = 0
    assert float(ca_distance_rms_change(pos, moved, mask)) < 1e-3
    # Against the reference's own criterion (ColabFold's AF2 v2.3 early stop), real-ish data.
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(12, 37, 3, generator=g) * 8, torch.randn(12, 37, 3, generator=g) * 8
    mask = (torch.rand(12, generator=g) > 0.2).float()
    expected = af2_confidence.compute_tol(a.numpy(), b.numpy(), mask.numpy())
    assert abs(float(ca_distance_rms_change(a, b, mask)) - float(expected)) < 1e-5


def test_runtime_knobs_keep_the_numbers():
    model = tiny_model()
    batch = tiny_batch()
    with torch.no_grad():
        plain = model(batch)
        apply_runtime(model, RuntimeConfig(chunk_size=2, attention_backend="sdpa"))
        chunked = model(batch)
        apply_runtime(model, RuntimeConfig(precision="bf16"))
        half = model(batch)
    for key in ("final_atom_positions", "distogram_logits", "plddt"):
        torch.testing.assert_close(chunked[key], plain[key], rtol=1e-4, atol=1e-4)
    # bf16 trunk: geometry and the recycled state stay fp32, the numbers stay close.
    assert half["final_atom_positions"].dtype == torch.float32
    assert half["prev_pair"].dtype == torch.float32
    assert torch.isfinite(half["final_atom_positions"]).all()
    assert (half["plddt"] - plain["plddt"]).abs().max() < 5.0


@pytest.mark.parametrize("preset", ["model_1_ptm", "model_3"])
def test_official_layout_fits_at_full_depth(preset):
    """The reference's parameter layout for released presets (48 Evoformer, 4 extra-MSA,
    2 template blocks: the shapes of an official ``params_<preset>.npz``) fits our model
    exactly, with the block counts read from the stacked axes. model_1/2 and model_3/4/5
    share their architectures; these two cover templates and the PAE head on and off."""
    from af2_parity import reference_config, reference_param_shapes

    from uni_fold.model.weights import check_af2_params

    setup = ParitySetup(preset=preset, evoformer_num_block=48, extra_msa_stack_num_block=4,
                        template_pair_stack_num_block=2)
    shapes = reference_param_shapes(reference_config(setup))
    params = {k: np.broadcast_to(np.float32(0.0), s) for k, s in shapes.items()}
    counts = infer_block_counts(params)
    expected = {"evoformer_num_block": 48, "extra_msa_stack_num_block": 4}
    if "model_1" in preset:
        expected["template_pair_stack_num_block"] = 2
    assert counts == expected
    with torch.device("meta"):
        model = AlphaFold(model_config(preset, **counts))
    assert check_af2_params(model, params, alphafold_table(model.config)) == []
    num_params = sum(p.numel() for p in model.parameters())
    assert num_params == sum(int(np.prod(s)) for s in shapes.values())
    if preset == "model_1_ptm":
        assert round(num_params / 1e6, 1) == 93.2  # AF2's model_1_ptm
