"""Template embedding vs the AF2 reference (haiku modules, random parameters, fp32).

Templates are real structures from ../shared/data (villin headpiece 1VII, glucagon 1GCN),
with a few atoms knocked out so that masks matter.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from alphafold.common import protein as af2_protein
from alphafold.model import all_atom as af2_all_atom
from alphafold.model import modules as af2_modules
from reference_utils import reference_config, run_haiku
from shared import SHARED_DATA

from uni_fold.config import model_config
from uni_fold.model.runtime import RuntimeConfig, apply_runtime
from uni_fold.model.template import (
    SingleTemplateEmbedding,
    TemplateEmbedding,
    TemplatePairStack,
    build_template_angle_feat,
    build_template_pair_feat,
    single_template_embedding_rows,
    template_embedding_rows,
    template_pair_stack_rows,
)
from uni_fold.model.weights import load_af2_params

N_RES = 11
TOL = 1e-5


def rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    ref = np.asarray(ref)
    return float(np.abs(ours.detach().numpy() - ref).max() / np.abs(ref).max())


def _template(pdb: str, start: int) -> dict[str, np.ndarray]:
    prot = af2_protein.from_pdb_string((SHARED_DATA / "structures" / "pdb" / pdb).read_text())
    sl = slice(start, start + N_RES)
    return {
        "template_aatype": prot.aatype[sl].astype(np.int32),
        "template_all_atom_positions": prot.atom_positions[sl].astype(np.float32),
        "template_all_atom_masks": prot.atom_mask[sl].astype(np.float32),
    }


@pytest.fixture(scope="module")
def templates() -> dict[str, np.ndarray]:
    """Two real templates and one padding template, AF2's processed template features."""
    real = [_template("1vii.pdb", 3), _template("1gcn.pdb", 10)]
    masks = real[0]["template_all_atom_masks"]
    masks[2, 1] = 0.0  # CA of residue 2: backbone and pseudo-beta of a glycine-free residue
    masks[5, 3] = 0.0  # CB of residue 5
    masks[7, 5:] = 0.0  # side chain of residue 7 (chi angles undefined)
    real[1]["template_aatype"][4] = 21  # a gap in the alignment
    pad = {k: np.zeros_like(v) for k, v in real[0].items()}
    batch = {k: np.stack([t[k] for t in real + [pad]]) for k in real[0]}
    pb, pb_mask = af2_modules.pseudo_beta_fn(
        batch["template_aatype"], batch["template_all_atom_positions"],
        batch["template_all_atom_masks"],
    )
    batch["template_pseudo_beta"] = np.asarray(pb, np.float32)
    batch["template_pseudo_beta_mask"] = np.asarray(pb_mask, np.float32)
    batch["template_mask"] = np.array([1.0, 1.0, 0.0], np.float32)
    return batch


def _af2_template_config():
    cfg = reference_config("model_1_ptm")
    t = cfg.model.embeddings_and_evoformer.template
    t.template_pair_stack.num_block = 2
    return cfg, t, cfg.model.global_config


def _our_template_config():
    cfg = model_config("model_1_ptm", template_pair_stack_num_block=2)
    return cfg.model.embeddings_and_evoformer.template


def _pair_mask() -> np.ndarray:
    seq_mask = np.ones(N_RES, np.float32)
    seq_mask[-2:] = 0.0  # two padding residues
    return seq_mask[:, None] * seq_mask[None, :]


def _t(batch: dict[str, np.ndarray], i: int | None = None) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v if i is None else v[i]) for k, v in batch.items()}


def test_template_pair_stack_matches_reference():
    _, t_cfg, gc = _af2_template_config()
    rng = np.random.default_rng(0)
    act = rng.standard_normal((N_RES, N_RES, 64)).astype(np.float32)
    mask = _pair_mask()

    def build(act, mask):
        return af2_modules.TemplatePairStack(t_cfg.template_pair_stack, gc)(act, mask, False)

    ref, params = run_haiku(build, act, mask)
    ours = TemplatePairStack(64, _our_template_config().template_pair_stack).eval()
    load_af2_params(ours, params, template_pair_stack_rows("", "template_pair_stack", 2))
    with torch.no_grad():
        out = ours(torch.from_numpy(act), torch.from_numpy(mask))
    assert rel_err(out, ref) < TOL


@pytest.mark.parametrize("unit_vector", [False, True])
def test_single_template_embedding_matches_reference(templates, unit_vector):
    """Also with the unit-vector channels that no monomer preset switches on."""
    _, t_cfg, gc = _af2_template_config()
    t_cfg.use_template_unit_vector = unit_vector
    single = {k: v[0] for k, v in templates.items() if k != "template_mask"}
    query = np.zeros((N_RES, N_RES, 128), np.float32)
    mask = _pair_mask()

    def build(query, batch, mask):
        return af2_modules.SingleTemplateEmbedding(t_cfg, gc)(query, batch, mask, False)

    ref, params = run_haiku(build, query, single, mask)
    our_cfg = _our_template_config()
    our_cfg.use_template_unit_vector = unit_vector
    ours = SingleTemplateEmbedding(our_cfg).eval()
    rows = single_template_embedding_rows("", "single_template_embedding", 2)
    load_af2_params(ours, params, rows)
    s = _t(single)
    with torch.no_grad():
        feat = build_template_pair_feat(
            s["template_aatype"], s["template_all_atom_positions"], s["template_all_atom_masks"],
            s["template_pseudo_beta"], s["template_pseudo_beta_mask"], our_cfg,
        )
        out = ours(feat, torch.from_numpy(mask))
    assert rel_err(out, ref) < TOL


@pytest.fixture(scope="module")
def template_embedding_reference(templates):
    """The reference TemplateEmbedding on the fixture templates: inputs, output, params."""
    _, t_cfg, gc = _af2_template_config()
    rng = np.random.default_rng(1)
    query = rng.standard_normal((N_RES, N_RES, 128)).astype(np.float32)
    mask = _pair_mask()

    def build(query, batch, mask):
        return af2_modules.TemplateEmbedding(t_cfg, gc)(query, batch, mask, False)

    ref, params = run_haiku(build, query, templates, mask)
    return query, mask, ref, params


def _our_template_embedding(params, chunk_size=None) -> TemplateEmbedding:
    ours = TemplateEmbedding(128, _our_template_config()).eval()
    load_af2_params(ours, params, template_embedding_rows("", 2, af2_path="template_embedding"))
    return apply_runtime(ours, RuntimeConfig(chunk_size=chunk_size))


def test_template_embedding_matches_reference(templates, template_embedding_reference):
    query, mask, ref, params = template_embedding_reference
    args = (torch.tensor(query), _t(templates), torch.tensor(mask))
    with torch.no_grad():
        out = _our_template_embedding(params)(*args)
        chunked = _our_template_embedding(params, chunk_size=3)(*args)
    assert rel_err(out, ref) < TOL
    torch.testing.assert_close(chunked, out, rtol=1e-5, atol=1e-5)


def test_template_embedding_without_templates_is_zero(templates, template_embedding_reference):
    """AF2 multiplies the update by ``sum(template_mask) > 0``: no template, no update."""
    query, mask, _, params = template_embedding_reference
    batch = _t(dict(templates, template_mask=np.zeros(3, np.float32)))
    with torch.no_grad():
        out = _our_template_embedding(params)(torch.tensor(query), batch, torch.tensor(mask))
    assert torch.all(out == 0.0)


def test_template_angle_feat_matches_reference(templates):
    """Alg. 2 line 7 features, with AF2's released behaviour (no placeholder angles)."""
    ref = af2_all_atom.atom37_to_torsion_angles(
        templates["template_aatype"], templates["template_all_atom_positions"],
        templates["template_all_atom_masks"], placeholder_for_undefined=False,
    )
    feat, mask = build_template_angle_feat(
        *(torch.from_numpy(templates[k]) for k in (
            "template_aatype", "template_all_atom_positions", "template_all_atom_masks"))
    )
    num_t = templates["template_aatype"].shape[0]
    one_hot = np.eye(22, dtype=np.float32)[templates["template_aatype"]]
    expected = np.concatenate([
        one_hot,
        np.reshape(ref["torsion_angles_sin_cos"], (num_t, N_RES, 14)),
        np.reshape(ref["alt_torsion_angles_sin_cos"], (num_t, N_RES, 14)),
        np.asarray(ref["torsion_angles_mask"]),
    ], axis=-1)
    np.testing.assert_allclose(feat.numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mask.numpy(), np.asarray(ref["torsion_angles_mask"])[..., 2])
    assert mask[0, 2] == 0.0  # the residue without CA has no psi
    # The first residue's omega has no predecessor: AF2 keeps the (rounding-noise) value
    # of its degenerate frame, and so must we, to the last bit or nearly.
    assert ref["torsion_angles_mask"][0, 0, 0] == 0 and np.abs(expected[0, 0, 22:24]).sum() > 0.5


def test_template_pair_feat_is_zero_without_backbone(templates):
    s = _t(templates, 0)
    feat = build_template_pair_feat(
        s["template_aatype"], s["template_all_atom_positions"], s["template_all_atom_masks"],
        s["template_pseudo_beta"], s["template_pseudo_beta_mask"], _our_template_config(),
    )
    assert feat.shape == (N_RES, N_RES, 88)
    assert torch.all(feat[2] == 0) and torch.all(feat[:, 2] == 0)  # residue 2 lacks its CA
    assert torch.all(feat[3, 4, -1] == 1)
    assert torch.all(feat[..., 39 + 1 + 44 : 39 + 1 + 44 + 3] == 0)  # unit vector channels


def test_template_pair_stack_dropout_only_in_training():
    cfg = copy.deepcopy(_our_template_config().template_pair_stack)
    stack = TemplatePairStack(16, cfg)
    with torch.no_grad():  # "final" layers start at zero: give every update a value
        for p in stack.parameters():
            p.add_(0.1 * torch.randn_like(p))
    t = torch.randn(2, 5, 5, 16)
    mask = torch.ones(2, 5, 5)
    stack.eval()
    with torch.no_grad():
        a, b = stack(t, mask), stack(t, mask)
    assert torch.equal(a, b)
    stack.train()
    torch.manual_seed(0)
    with torch.no_grad():
        c = stack(t, mask)
    assert not torch.allclose(a, c)
