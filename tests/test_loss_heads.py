"""Head losses (uni_fold.loss.heads, .lddt) and the weighted total (alphafold_loss) against
the AF2 reference's head ``loss`` methods, run live on the same numpy inputs; plus the
resolution filters, the recycling-slice choice, and one end-to-end step of the tiny model
on a real protein (loss finite, gradients finite).

Ground truth: real structures from ../shared/data through the reference's feature code
(tests/loss_reference.py); logits are random. Tolerance 1e-5 relative / 1e-6 absolute.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from alphafold.model import lddt as af_lddt

from data_pipeline.features import make_msa_features, make_sequence_features
from data_pipeline.parsers.a3m import Msa
from tests import loss_reference as lr
from uni_fold.config import model_config
from uni_fold.loss import (
    AlphaFoldLoss,
    alphafold_loss,
    distogram_loss,
    experimentally_resolved_loss,
    lddt,
    masked_msa_loss,
    predicted_aligned_error_loss,
    predicted_lddt_loss,
    select_recycling_slice,
    structure_module_loss,
)

RTOL, ATOL = 1e-5, 1e-6
CFG = model_config("model_1_ptm")
HEADS = CFG.model.heads


def close(ours, ref, name: str) -> None:
    np.testing.assert_allclose(ours.detach().numpy(), np.asarray(ref), rtol=RTOL, atol=ATOL,
                               err_msg=name)


def T(x) -> torch.Tensor:
    return lr.to_torch(x)


@pytest.fixture(scope="module")
def example():
    """4zey chain A (X-ray, 84 residues) with residues 30-34 cut out, a noisy prediction and
    random logits of every head."""
    chain = lr.load_chain("4zey", "A", drop_residues=tuple(range(30, 35)))
    gt = lr.reference_ground_truth(chain["aatype"], chain["all_atom_positions"],
                                   chain["all_atom_mask"])
    gt["residue_index"] = chain["residue_index"]
    rng = np.random.default_rng(0)
    pred = lr.perturbed_prediction(gt, rng, shift=1.5)
    n, num_seq = len(gt["aatype"]), 5
    logits = {
        "distogram_logits": rng.normal(size=(n, n, 64)) * 2,
        "masked_msa_logits": rng.normal(size=(num_seq, n, 23)) * 2,
        "predicted_lddt_logits": rng.normal(size=(n, 50)) * 2,
        "experimentally_resolved_logits": rng.normal(size=(n, 37)) * 2,
        "predicted_aligned_error_logits": rng.normal(size=(n, n, 64)) * 2,
    }
    logits = {k: v.astype(np.float32) for k, v in logits.items()}
    gt["true_msa"] = rng.integers(0, 22, size=(num_seq, n)).astype(np.int32)
    gt["bert_mask"] = (rng.random((num_seq, n)) < 0.3).astype(np.float32)
    gt["resolution"] = np.float32(1.8)
    return gt, pred, logits


def _final_atom_positions(pred, gt) -> np.ndarray:
    return lr.our_outputs(pred, gt["aatype"])["final_atom_positions"].numpy()


# ----------------------------------------------------------------------------------------
# One head at a time


def test_distogram_loss_matches_reference(example):
    gt, _, logits = example
    edges = np.linspace(HEADS.distogram.first_break, HEADS.distogram.last_break, 63)
    value = {"logits": logits["distogram_logits"], "bin_edges": edges.astype(np.float32)}
    ref = lr.reference_head_loss("distogram", value, {k: gt[k] for k in ("pseudo_beta",
                                                                         "pseudo_beta_mask")})
    ours = distogram_loss(T(logits["distogram_logits"]), T(gt["pseudo_beta"]),
                          T(gt["pseudo_beta_mask"]))
    close(ours["loss"], ref, "distogram")
    # The targets span the bins: near pairs in the first, far pairs in the open last bin.
    dist = ours["true_dist"][gt["pseudo_beta_mask"] > 0][:, gt["pseudo_beta_mask"] > 0]
    assert float(dist.min()) < 2.4 and float(dist.max()) > 22.0


def test_masked_msa_loss_matches_reference(example):
    gt, _, logits = example
    ref = lr.reference_head_loss("masked_msa", {"logits": logits["masked_msa_logits"]},
                                 {k: gt[k] for k in ("true_msa", "bert_mask")})
    ours = masked_msa_loss(T(logits["masked_msa_logits"]), T(gt["true_msa"]), T(gt["bert_mask"]))
    close(ours, ref, "masked_msa")


@pytest.mark.parametrize("per_residue", [False, True])
def test_lddt_matches_reference(example, per_residue):
    gt, pred, _ = example
    final = _final_atom_positions(pred, gt)
    ca_true = np.stack([gt["all_atom_positions"][:, 1], gt["all_atom_positions"][:, 1]])
    ca_pred = np.stack([final[:, 1], gt["all_atom_positions"][:, 1]])
    mask = np.stack([gt["all_atom_mask"][:, 1], gt["all_atom_mask"][:, 1]])
    mask[0, ::7] = 0.0
    ref = af_lddt.lddt(ca_pred, ca_true, mask[..., None], per_residue=per_residue)
    ours = lddt(T(ca_pred), T(ca_true), T(mask), per_residue=per_residue)
    close(ours, ref, "lddt")
    assert 0.3 < float(ours[0].mean()) < 0.95  # a noisy prediction
    assert torch.allclose(ours[1], torch.ones_like(ours[1]))  # the truth itself


@pytest.mark.parametrize("resolution", [1.8, 0.0, 3.5])
def test_predicted_lddt_loss_matches_reference(example, resolution):
    gt, pred, logits = example
    final = _final_atom_positions(pred, gt)
    value = {"structure_module": {"final_atom_positions": final},
             "predicted_lddt": {"logits": logits["predicted_lddt_logits"]}}
    batch = {"all_atom_positions": gt["all_atom_positions"], "all_atom_mask": gt["all_atom_mask"],
             "resolution": np.float32(resolution)}
    ref = lr.reference_head_loss("predicted_lddt", value, batch)
    ours = predicted_lddt_loss(T(logits["predicted_lddt_logits"]), T(final),
                               T(gt["all_atom_positions"]), T(gt["all_atom_mask"]),
                               torch.tensor(resolution))
    close(ours, ref, "predicted_lddt")
    assert (float(ours) > 1.0) == (resolution == 1.8)  # filtered outside [0.1, 3.0] Å


@pytest.mark.parametrize("resolution", [1.8, 0.0])
def test_experimentally_resolved_loss_matches_reference(example, resolution):
    gt, _, logits = example
    batch = {k: gt[k] for k in ("atom37_atom_exists", "all_atom_mask")}
    batch["resolution"] = np.float32(resolution)
    ref = lr.reference_head_loss("experimentally_resolved",
                                 {"logits": logits["experimentally_resolved_logits"]}, batch)
    ours = experimentally_resolved_loss(T(logits["experimentally_resolved_logits"]),
                                        T(gt["atom37_atom_exists"]), T(gt["all_atom_mask"]),
                                        torch.tensor(resolution))
    close(ours, ref, "experimentally_resolved")
    unfiltered = experimentally_resolved_loss(
        T(logits["experimentally_resolved_logits"]), T(gt["atom37_atom_exists"]),
        T(gt["all_atom_mask"]), torch.tensor(resolution), filter_by_resolution=False)
    assert float(unfiltered) > 0.5


@pytest.mark.parametrize("resolution", [1.8, 3.5])
def test_predicted_aligned_error_loss_matches_reference(example, resolution):
    gt, pred, logits = example
    pae = HEADS.predicted_aligned_error
    breaks = np.linspace(0.0, pae.max_error_bin, pae.num_bins - 1).astype(np.float32)
    value = {"structure_module": {"final_affines": pred["traj"][-1]},
             "predicted_aligned_error": {"logits": logits["predicted_aligned_error_logits"],
                                         "breaks": breaks}}
    batch = {k: gt[k] for k in ("backbone_affine_tensor", "backbone_affine_mask")}
    batch["resolution"] = np.float32(resolution)
    ref = lr.reference_head_loss("predicted_aligned_error", value, batch)
    ours = predicted_aligned_error_loss(
        T(logits["predicted_aligned_error_logits"]), T(pred["traj"][-1]),
        T(gt["backbone_affine_tensor"]), T(gt["backbone_affine_mask"]), pae.max_error_bin,
        torch.tensor(resolution))
    close(ours, ref, "predicted_aligned_error")


# ----------------------------------------------------------------------------------------
# The weighted total


def _outputs_and_batch(gt, pred, logits):
    outputs = lr.our_outputs(pred, gt["aatype"])
    outputs.update({k: T(v) for k, v in logits.items()})
    batch = T({k: v for k, v in gt.items() if k != "torsion_angles_sin_cos"})
    batch["use_clamped_fape"] = torch.tensor(0.9)
    return outputs, batch


def test_total_loss_is_af2s_weighted_sum(example):
    gt, pred, logits = example
    outputs, batch = _outputs_and_batch(gt, pred, logits)
    ours = alphafold_loss(outputs, batch, CFG)

    ref_batch = dict(gt, use_clamped_fape=np.float32(0.9))
    final = outputs["final_atom_positions"].numpy()
    sm_value = {"final_atom_positions": final, "final_affines": pred["traj"][-1]}
    breaks = np.linspace(0.0, 31.0, 63).astype(np.float32)
    edges = np.linspace(2.3125, 21.6875, 63).astype(np.float32)
    values = {
        "distogram": {"logits": logits["distogram_logits"], "bin_edges": edges},
        "masked_msa": {"logits": logits["masked_msa_logits"]},
        "experimentally_resolved": {"logits": logits["experimentally_resolved_logits"]},
        "predicted_lddt": {"structure_module": sm_value,
                           "predicted_lddt": {"logits": logits["predicted_lddt_logits"]}},
        "predicted_aligned_error": {
            "structure_module": sm_value,
            "predicted_aligned_error": {"logits": logits["predicted_aligned_error_logits"],
                                        "breaks": breaks}},
    }
    ref_cfg = lr.reference_config("model_1_ptm").model.heads
    sm_batch = {k: v for k, v in ref_batch.items() if k not in ("true_msa", "bert_mask")}
    ref_sm = lr.reference_structure_module_loss(pred, sm_batch)
    ref_total = ref_cfg.structure_module.weight * ref_sm["loss"]
    close(ours["structure_module"], ref_sm["loss"], "structure_module")
    for head, value in values.items():
        ref = lr.reference_head_loss(head, value, ref_batch)
        close(ours[head], ref, head)
        ref_total = ref_total + ref_cfg[head].weight * ref
    close(ours["loss"], ref_total, "total")
    close(ours["fape"], ref_sm["fape"], "fape")
    expected = {"loss", "fape", "backbone_loss", "sidechain_fape", "chi_loss",
                "angle_norm_loss", "violation_loss", "structure_module", "lddt_ca", *values}
    assert set(ours) == expected
    assert all(v.shape == () and torch.isfinite(v) for v in ours.values())


def test_zero_weight_heads_are_skipped_and_missing_outputs_are_errors(example):
    gt, pred, logits = example
    outputs, batch = _outputs_and_batch(gt, pred, logits)
    no_ptm = alphafold_loss(outputs, batch, model_config("model_1"))
    assert "predicted_aligned_error" not in no_ptm
    del outputs["masked_msa_logits"]
    with pytest.raises(ValueError, match="masked_msa_logits"):
        alphafold_loss(outputs, batch, CFG)
    with pytest.raises(ValueError, match="true_msa"):
        alphafold_loss(outputs, {k: v for k, v in batch.items() if k != "true_msa"},
                       model_config("model_1"))


def test_batch_with_recycling_axis_uses_the_last_iterations_slice(example):
    gt, pred, logits = example
    outputs, batch = _outputs_and_batch(gt, pred, logits)
    slices = []
    for seed in range(3):  # a different BERT mask per recycling slice, as in the data
        s = dict(batch)
        g = torch.Generator().manual_seed(seed)
        s["bert_mask"] = (torch.rand(batch["bert_mask"].shape, generator=g) < 0.3).float()
        slices.append(s)
    stacked = {k: torch.stack([s[k] for s in slices]) for k in batch}
    outputs["num_recycles"] = 1
    ours = AlphaFoldLoss(CFG)(outputs, stacked)
    direct = alphafold_loss(outputs, select_recycling_slice(stacked, 1), CFG)
    assert torch.equal(ours["masked_msa"], direct["masked_msa"])
    other = alphafold_loss(outputs, select_recycling_slice(stacked, 2), CFG)
    assert not torch.equal(ours["masked_msa"], other["masked_msa"])
    del outputs["num_recycles"]
    with pytest.raises(ValueError, match="num_recycles"):
        alphafold_loss(outputs, stacked, CFG)


def test_total_loss_gradients_are_finite(example):
    gt, pred, logits = example
    outputs, batch = _outputs_and_batch(gt, pred, logits)
    leaves = [outputs[k] for k in logits] + [outputs["sm"]["affine"], outputs["sm"]["atom_pos"]]
    for x in leaves:
        x.requires_grad_(True)
    outputs["final_atom14_positions"] = outputs["sm"]["atom_pos"][-1]
    alphafold_loss(outputs, batch, CFG)["loss"].backward()
    for x in leaves:
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------
# End to end: the tiny model on a real protein, one training step's loss


def test_tiny_model_training_step_on_a_real_protein():
    from uni_fold.data.process import process_features
    from uni_fold.model.alphafold import AlphaFold

    chain = lr.load_chain("1vii")
    letters = "ACDEFGHIKLMNPQRSTVWYX"
    seq = "".join(letters[a] for a in chain["aatype"])
    raw = {**make_sequence_features(seq, "1vii_A", len(seq)),
           **make_msa_features([Msa([seq], [[0] * len(seq)], ["1vii_A"])])}
    raw["all_atom_positions"] = chain["all_atom_positions"]
    raw["all_atom_mask"] = chain["all_atom_mask"]
    raw["resolution"] = np.array([0.0], np.float32)
    cfg = model_config("tiny", {"data.use_templates": False,
                                "model.embeddings_and_evoformer.template.enabled": False})
    batch = process_features(raw, cfg, "train", seed=0, crop_size=40)  # 36 residues, padded
    torch.manual_seed(0)
    model = AlphaFold(cfg).train()
    outputs = model(batch)
    losses = AlphaFoldLoss(cfg)(outputs, batch)
    for name in ("fape", "sidechain_fape", "chi_loss", "distogram", "masked_msa",
                 "predicted_lddt", "predicted_aligned_error", "lddt_ca"):
        assert torch.isfinite(losses[name]), name
    # NMR structure: the resolution-filtered heads contribute nothing.
    assert float(losses["predicted_lddt"].detach()) == 0.0
    assert 0.5 < float(losses["fape"].detach()) < 5.0  # untrained: far from the truth
    losses["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 0.5 * len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    # The same as computing the structure-module loss on the last iteration's slice.
    sliced = select_recycling_slice(batch, outputs["num_recycles"])
    sm = structure_module_loss(outputs, sliced, cfg.model.heads.structure_module)
    torch.testing.assert_close(losses["structure_module"], sm["loss"])
