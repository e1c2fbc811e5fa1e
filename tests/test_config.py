"""Model configs: presets equal AF2's, overrides are typed and strict, JSON/YAML round-trips."""
import json

import pytest

from uni_fold import config as C

# Our field names that differ from AF2's config (ours -> AF2's), per path prefix.
RENAMES = {
    "model.embeddings_and_evoformer.c_m": "model.embeddings_and_evoformer.msa_channel",
    "model.embeddings_and_evoformer.c_z": "model.embeddings_and_evoformer.pair_channel",
    "model.embeddings_and_evoformer.c_s": "model.embeddings_and_evoformer.seq_channel",
    "model.embeddings_and_evoformer.c_e": "model.embeddings_and_evoformer.extra_msa_channel",
    "data.masked_msa.replace_fraction": "data.eval.masked_msa_replace_fraction",
    "data.max_msa_clusters": "data.eval.max_msa_clusters",
    "data.max_templates": "data.eval.max_templates",
    "data.subsample_templates": "data.eval.subsample_templates",
    "data.num_ensemble": "data.eval.num_ensemble",
}
# Leaves with no AF2 config counterpart: the value AF2 implies for them.
DERIVED = {
    # AF2 spells the direction as an einsum equation.
    "outgoing": lambda af2, path: af2[path.rsplit(".", 1)[0] + ".equation"] == "ikc,jkc->ijc",
    # AF2 takes the template pair width from the pair stack's attention value_dim.
    "model.embeddings_and_evoformer.template.c_t": lambda af2, path: af2[
        "model.embeddings_and_evoformer.template.template_pair_stack."
        "triangle_attention_ending_node.value_dim"
    ],
}
# Leaves AF2 leaves out where they do nothing (no per-head dims in the Evoformer's attention,
# no dropout in template point attention): ours must hold the inert value there.
INERT = {"key_dim": None, "value_dim": None, "dropout_rate": 0.0, "orientation": "per_row",
         "shared_dropout": True}


def _af2_flat(name: str) -> dict:
    from alphafold.model import config as af2_config

    return C.flatten(af2_config.model_config(name).to_dict())


def _af2_path(path: str) -> str:
    if path in RENAMES:
        return RENAMES[path]
    if path.startswith("data."):
        return "data.common." + path[len("data."):]
    return path


MONOMER_PRESETS = [n for n in C.PRESETS if n != "tiny"]


@pytest.mark.parametrize("name", MONOMER_PRESETS)
def test_preset_equals_af2_config(name):
    ours = C.flatten(C.model_config(name).to_dict())
    af2 = _af2_flat(name)
    checked = 0
    for path, value in ours.items():
        if path == "name":
            continue
        leaf = path.rsplit(".", 1)[-1]
        if path in DERIVED or leaf in DERIVED:
            rule = DERIVED.get(path) or DERIVED[leaf]
            assert rule(af2, path) == value, path
            checked += 1
            continue
        af2_path = _af2_path(path)
        if af2_path not in af2:
            assert leaf in INERT and value == INERT[leaf], f"{path} has no AF2 counterpart"
            continue
        assert value == af2[af2_path], f"{name}: {path}={value!r}, AF2 {af2_path}={af2[af2_path]!r}"
        checked += 1
    assert checked > 100


def test_af2_preset_names_all_present():
    from alphafold.model import config as af2_config

    presets = af2_config.MODEL_PRESETS
    monomer = set(presets["monomer"]) | set(presets["monomer_ptm"])
    assert monomer == set(MONOMER_PRESETS)


def test_shorthand_and_dotted_overrides():
    cfg = C.model_config(
        "model_1_ptm",
        {"model.heads.distogram.weight": 1},
        evoformer_num_block=2,
        extra_msa_stack_num_block=1,
        template_pair_stack_num_block=1,
        num_recycle=0,
    )
    evo = cfg.model.embeddings_and_evoformer
    assert (evo.evoformer_num_block, evo.extra_msa_stack_num_block) == (2, 1)
    assert evo.template.template_pair_stack.num_block == 1
    assert cfg.model.num_recycle == 0
    assert cfg.model.heads.distogram.weight == 1.0
    assert isinstance(cfg.model.heads.distogram.weight, float)
    # the preset registry itself is untouched
    assert C.model_config("model_1_ptm").model.embeddings_and_evoformer.evoformer_num_block == 48


@pytest.mark.parametrize(
    "overrides, error, words",
    [
        ({"model.nope": 1}, KeyError, "nope"),
        ({"model.embeddings_and_evoformer.c_z.x": 1}, KeyError, "c_z"),
        ({"model.num_recycle": "3"}, TypeError, "model.num_recycle"),
        ({"model.num_recycle": True}, TypeError, "expects int"),
        ({"model.embeddings_and_evoformer.template.enabled": 1}, TypeError, "expects bool"),
        ({"model.heads": 3}, TypeError, "model.heads"),
    ],
)
def test_bad_overrides_name_the_key(overrides, error, words):
    with pytest.raises(error, match=words):
        C.model_config("model_3", overrides)


def test_unknown_preset_and_shorthand():
    with pytest.raises(ValueError, match="model_9"):
        C.model_config("model_9")
    with pytest.raises(TypeError, match="num_blocks"):
        C.model_config("model_1", num_blocks=2)


def test_json_round_trip_and_files(tmp_path):
    cfg = C.model_config("tiny", num_recycle=2)
    again = C.Config.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    (tmp_path / "o.yaml").write_text(
        "model:\n  num_recycle: 5\n  embeddings_and_evoformer:\n    evoformer_num_block: 3\n"
    )
    (tmp_path / "o.json").write_text(json.dumps({"model.heads.masked_msa.weight": 0.5}))
    for f in ("o.yaml", "o.json"):
        C.apply_overrides(cfg, C.load_overrides(tmp_path / f))
    assert cfg.model.num_recycle == 5
    assert cfg.model.embeddings_and_evoformer.evoformer_num_block == 3
    assert cfg.model.heads.masked_msa.weight == 0.5
    (tmp_path / "o.txt").write_text("x")
    with pytest.raises(ValueError, match="o.txt"):
        C.load_overrides(tmp_path / "o.txt")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        C.load_overrides(tmp_path / "missing.yaml")


def test_tiny_preset_is_consistent():
    cfg = C.model_config("tiny")
    evo = cfg.model.embeddings_and_evoformer
    for att in (evo.evoformer.msa_row_attention_with_pair_bias, evo.evoformer.msa_column_attention):
        assert evo.c_m % att.num_head == 0
    for att in (evo.evoformer.triangle_attention_starting_node,
                evo.evoformer.triangle_attention_ending_node):
        assert evo.c_z % att.num_head == 0
    assert cfg.model.heads.structure_module.num_channel == evo.c_s
