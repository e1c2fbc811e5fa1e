"""Output heads (Suppl. Section 1.9) and confidence metrics: parity with the AF2 reference.

The heads run against the reference's haiku modules (``alphafold.model.modules``) with
random, non-constant parameters loaded through our weight rows; pLDDT, PAE and pTM run
against ``alphafold.common.confidence`` on random logits.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from alphafold.common import confidence as af2_confidence
from alphafold.model import modules
from reference_utils import reference_config, run_haiku

from uni_fold.config import HeadsConfig
from uni_fold.model.confidence import (
    compute_plddt,
    compute_predicted_aligned_error,
    predicted_tm_score,
)
from uni_fold.model.heads import (
    DistogramHead,
    ExperimentallyResolvedHead,
    MaskedMsaHead,
    PredictedAlignedErrorHead,
    PredictedLDDTHead,
    distogram_head_rows,
    experimentally_resolved_head_rows,
    masked_msa_head_rows,
    predicted_aligned_error_head_rows,
    predicted_lddt_head_rows,
)
from uni_fold.model.weights import load_af2_params

AF2_ROOT = "alphafold/alphafold_iteration"
REL_TOL = 1e-5

N_SEQ, N_RES = 5, 7
C_M, C_Z, C_S, C_SM = 256, 128, 384, 384


def _assert_close(name: str, ours: torch.Tensor, ref: np.ndarray, rel: float = REL_TOL):
    ours_np = ours.detach().double().numpy()
    ref = np.asarray(ref, dtype=np.float64)
    assert ours_np.shape == ref.shape, f"{name}: shape {ours_np.shape} != reference {ref.shape}"
    err = float(np.max(np.abs(ours_np - ref))) if ref.size else 0.0
    tol = rel * max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1.0)
    assert err <= tol, f"{name}: max abs error {err:.3e} > {tol:.3e}"


# ----------------------------------------------------------------------------------------
# Heads


def _our_heads() -> dict[str, tuple[torch.nn.Module, dict]]:
    cfg = HeadsConfig()
    return {
        "distogram": (DistogramHead(C_Z, cfg.distogram), distogram_head_rows("")),
        "masked_msa": (MaskedMsaHead(C_M, cfg.masked_msa), masked_msa_head_rows("")),
        "predicted_lddt": (PredictedLDDTHead(C_SM, cfg.predicted_lddt),
                           predicted_lddt_head_rows("")),
        "predicted_aligned_error": (PredictedAlignedErrorHead(C_Z, cfg.predicted_aligned_error),
                                    predicted_aligned_error_head_rows("")),
        "experimentally_resolved": (ExperimentallyResolvedHead(C_S),
                                    experimentally_resolved_head_rows("")),
    }


@pytest.fixture(scope="module")
def heads_case():
    rs = np.random.RandomState(0)
    msa = rs.randn(N_SEQ, N_RES, C_M).astype(np.float32)
    pair = rs.randn(N_RES, N_RES, C_Z).astype(np.float32)
    single = rs.randn(N_RES, C_S).astype(np.float32)
    sm_single = rs.randn(N_RES, C_SM).astype(np.float32)
    cfg = reference_config()
    heads, gc = cfg.model.heads, cfg.model.global_config

    def build(msa, pair, single, sm_single):
        reps = {"msa": msa, "pair": pair, "single": single, "structure_module": sm_single}
        factories = {
            "distogram": modules.DistogramHead,
            "masked_msa": modules.MaskedMsaHead,
            "predicted_lddt": modules.PredictedLDDTHead,
            "predicted_aligned_error": modules.PredictedAlignedErrorHead,
            "experimentally_resolved": modules.ExperimentallyResolvedHead,
        }
        return {name: f(heads[name], gc)(reps, None, False) for name, f in factories.items()}

    ref, params = run_haiku(build, msa, pair, single, sm_single, seed=4)
    params = {f"{AF2_ROOT}/{k}": v for k, v in params.items()}
    inputs = {
        "distogram": torch.tensor(pair),
        "masked_msa": torch.tensor(msa),
        "predicted_lddt": torch.tensor(sm_single),
        "predicted_aligned_error": torch.tensor(pair),
        "experimentally_resolved": torch.tensor(single),
    }
    ours = {}
    for name, (head, rows) in _our_heads().items():
        used = {row.key for row in rows.values()}
        load_af2_params(head, {k: v for k, v in params.items() if k in used}, rows)
        with torch.no_grad():
            ours[name] = head(inputs[name])
    return ours, ref, params


@pytest.mark.parametrize("name, shape", [
    ("distogram", (N_RES, N_RES, 64)),
    ("masked_msa", (N_SEQ, N_RES, 23)),
    ("predicted_lddt", (N_RES, 50)),
    ("predicted_aligned_error", (N_RES, N_RES, 64)),
    ("experimentally_resolved", (N_RES, 37)),
])
def test_head_logits_match_reference(heads_case, name, shape):
    ours, ref, _ = heads_case
    assert ours[name]["logits"].shape == shape
    _assert_close(f"{name} logits", ours[name]["logits"], ref[name]["logits"])


def test_bins_match_reference(heads_case):
    ours, ref, _ = heads_case
    _assert_close("distogram bin_edges", ours["distogram"]["bin_edges"],
                  ref["distogram"]["bin_edges"])
    _assert_close("pae breaks", ours["predicted_aligned_error"]["breaks"],
                  ref["predicted_aligned_error"]["breaks"])


def test_distogram_logits_are_symmetric(heads_case):
    ours, _, _ = heads_case
    logits = ours["distogram"]["logits"]
    assert torch.equal(logits, logits.transpose(0, 1))


def test_every_reference_head_param_is_used(heads_case):
    _, _, params = heads_case
    used = set()
    for _, rows in _our_heads().values():
        used |= {row.key for row in rows.values()}
    assert used == set(params)


def test_heads_start_at_zero_logits():
    """AF2's zero ("final") init of each head's last layer: all logits are 0 at init."""
    torch.manual_seed(0)
    z, m, s = torch.randn(3, 3, C_Z), torch.randn(2, 3, C_M), torch.randn(3, C_S)
    inputs = {"distogram": z, "masked_msa": m, "predicted_lddt": s,
              "predicted_aligned_error": z, "experimentally_resolved": s}
    for name, (head, _) in _our_heads().items():
        assert not head(inputs[name])["logits"].any(), name


def test_heads_reject_wrong_widths():
    cfg = HeadsConfig()
    with pytest.raises(ValueError, match="pair representation"):
        DistogramHead(C_Z, cfg.distogram)(torch.randn(3, 3, C_Z + 1))
    with pytest.raises(ValueError, match="single representation"):
        PredictedLDDTHead(C_SM, cfg.predicted_lddt)(torch.randn(3, 7))


def test_heads_accept_batch_dims():
    head = PredictedAlignedErrorHead(8, HeadsConfig().predicted_aligned_error)
    torch.nn.init.normal_(head.logits.weight)
    z = torch.randn(2, 4, 4, 8)
    with torch.no_grad():
        batched = head(z)["logits"]
        single = head(z[1])["logits"]
    torch.testing.assert_close(batched[1], single)


# ----------------------------------------------------------------------------------------
# Confidence metrics vs alphafold.common.confidence


def _random_logits(shape, seed):
    return (3.0 * np.random.RandomState(seed).randn(*shape)).astype(np.float32)


def test_plddt_matches_reference():
    logits = _random_logits((11, 50), 1)
    ref = af2_confidence.compute_plddt(logits)
    ours = compute_plddt(torch.tensor(logits))
    _assert_close("plddt", ours, ref)
    assert ours.min() >= 0 and ours.max() <= 100


def test_pae_matches_reference():
    logits = _random_logits((9, 9, 64), 2)
    breaks = np.linspace(0.0, 31.0, 63)
    ref = af2_confidence.compute_predicted_aligned_error(logits, breaks)
    ours = compute_predicted_aligned_error(torch.tensor(logits), max_bin=31.0, num_bins=64)
    for key in ("aligned_confidence_probs", "predicted_aligned_error",
                "max_predicted_aligned_error"):
        _assert_close(key, ours[key], ref[key])


@pytest.mark.parametrize("weights", ["none", "mask", "fractional"])
def test_ptm_matches_reference(weights):
    n = 13
    logits = _random_logits((n, n, 64), 3)
    breaks = np.linspace(0.0, 31.0, 63).astype(np.float32)
    rs = np.random.RandomState(4)
    w = {"none": None,
         "mask": (rs.rand(n) > 0.3).astype(np.float32),
         "fractional": rs.rand(n).astype(np.float32)}[weights]
    ref = af2_confidence.predicted_tm_score(logits, breaks, residue_weights=w)
    ours = predicted_tm_score(torch.tensor(logits), torch.tensor(breaks),
                              None if w is None else torch.tensor(w))
    assert ours.shape == ()
    _assert_close("ptm", ours, ref)


def test_iptm_matches_reference():
    n = 10
    logits = _random_logits((n, n, 64), 5)
    breaks = np.linspace(0.0, 31.0, 63).astype(np.float32)
    asym_id = np.array([1] * 4 + [2] * 6)
    mask = np.ones(n, np.float32)
    ref = af2_confidence.predicted_tm_score(logits, breaks, residue_weights=mask,
                                            asym_id=asym_id)
    ours = predicted_tm_score(torch.tensor(logits), torch.tensor(breaks), torch.tensor(mask),
                              asym_id=torch.tensor(asym_id))
    _assert_close("iptm", ours, ref)


def test_confidence_is_batched_and_fp32_under_autocast():
    logits = torch.tensor(_random_logits((2, 6, 6, 64), 6))
    breaks = torch.linspace(0.0, 31.0, 63)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ptm = predicted_tm_score(logits.bfloat16(), breaks)
        pae = compute_predicted_aligned_error(logits)["predicted_aligned_error"]
        plddt = compute_plddt(logits[..., 0, :50].bfloat16())
    assert ptm.dtype == pae.dtype == plddt.dtype == torch.float32
    assert ptm.shape == (2,) and pae.shape == (2, 6, 6) and plddt.shape == (2, 6)
    torch.testing.assert_close(pae[1], compute_predicted_aligned_error(logits[1])[
        "predicted_aligned_error"])
    torch.testing.assert_close(ptm[1], predicted_tm_score(logits[1].bfloat16(), breaks))


def test_confidence_rejects_bad_input():
    with pytest.raises(ValueError, match="num_bins"):
        compute_predicted_aligned_error(torch.zeros(3, 3, 64), num_bins=50)
    with pytest.raises(ValueError, match="breaks"):
        predicted_tm_score(torch.zeros(3, 3, 64), torch.linspace(0, 31, 64))
    with pytest.raises(ValueError, match="residue_weights"):
        predicted_tm_score(torch.zeros(3, 3, 64), torch.linspace(0, 31, 63), torch.ones(4))
