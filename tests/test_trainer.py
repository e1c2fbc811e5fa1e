"""The trainer (uni_fold.train): AF2's schedule and EMA, the stages, TM-score, atomic
checkpoints, non-finite steps, overfitting one real protein, and a run killed with
SIGKILL that resumes to the same numbers as an uninterrupted one.

Real data: the Trp-cage miniprotein 1L2Y (20 residues, NMR) from ../shared/data, trained
on its sequence alone; 1PSM (38 residues) as a second chain.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from shared import REPO_ROOT, SHARED_DATA

from uni_fold.model.alphafold import AlphaFold
from uni_fold.train import checkpoint as ckpt
from uni_fold.train.cli import main as cli_main
from uni_fold.train.data import DataPaths, build_train_loader
from uni_fold.train.example_inputs import ExampleChain, link_training_inputs
from uni_fold.train.metrics import kabsch, read_metrics, tm_d0, tm_score
from uni_fold.train.optim import ExponentialMovingAverage, af2_lr_factor, make_scheduler
from uni_fold.train.stages import STAGES, TrainConfig, build_run_config, parse_set_overrides
from uni_fold.train.trainer import Trainer

MMCIF = SHARED_DATA / "structures" / "mmcif"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return link_training_inputs(tmp_path_factory.mktemp("inputs"),
                                [ExampleChain(MMCIF / "1l2y.cif", "A")])


def _cli_args(inputs, out: Path, steps: int, *extra: str) -> list[str]:
    args = ["--preset", "tiny", "--stage", "none", "--mmcif-dir", str(inputs.mmcif_dir),
            "--alignments-dir", str(inputs.alignments_dir), "--chain-list",
            str(inputs.chain_list), "--output-dir", str(out), "--max-steps", str(steps)]
    for item in ("train.num_workers=0", "train.warmup_steps=3", "train_data.crop_size=16",
                 *extra):
        args += ["--set", item]
    return args


# ---------------------------------------------------------------------------- settings


def test_lr_schedule_warms_up_then_decays():
    assert af2_lr_factor(0, 1000, 50_000, 0.95) == pytest.approx(1 / 1000)
    assert af2_lr_factor(499, 1000, 50_000, 0.95) == pytest.approx(0.5)
    assert af2_lr_factor(999, 1000, 50_000, 0.95) == 1.0
    assert af2_lr_factor(49_999, 1000, 50_000, 0.95) == 1.0
    assert af2_lr_factor(50_000, 1000, 50_000, 0.95) == pytest.approx(0.95)
    assert af2_lr_factor(120_000, 1000, 50_000, 0.95) == pytest.approx(0.95**2)
    assert af2_lr_factor(0, 0, 50_000, 0.95) == 1.0
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p], lr=1e-3)
    sched = make_scheduler(opt, TrainConfig(warmup_steps=4, decay_every=6, decay_factor=0.5))
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4])


def test_ema_follows_the_af2_update_and_swaps_back():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    expected = 0.9 * start + 0.1 * (start + 1.0)
    torch.testing.assert_close(ema.shadow["weight"], expected)
    current = model.weight.detach().clone()
    with ema.swapped_into(model):
        torch.testing.assert_close(model.weight.detach(), expected)
    torch.testing.assert_close(model.weight.detach(), current)
    other = ExponentialMovingAverage(torch.nn.Linear(3, 2), 0.9)
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.shadow["bias"], ema.shadow["bias"])
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"weight": ema.shadow["weight"]})


def test_stages_carry_af2_table_4_and_loss_weights_only_reach_the_loss():
    run = build_run_config("model_1_ptm", "initial_training")
    assert (run.train_data.crop_size, run.model.data.max_msa_clusters,
            run.model.data.max_extra_msa, run.model.data.max_templates) == (256, 128, 1024, 4)
    assert run.train.learning_rate == 1e-3 and run.train.warmup_steps == 1000
    assert run.loss.model.heads.structure_module.structural_violation_loss_weight == 0.0
    assert run.loss.model.heads.experimentally_resolved.weight == 0.0
    # The model keeps the head, so the fine-tuning stage can load this checkpoint.
    assert run.model.model.heads.experimentally_resolved.weight == 0.01
    fine = build_run_config("model_1_ptm", "finetune")
    assert (fine.train_data.crop_size, fine.model.data.max_msa_clusters,
            fine.model.data.max_extra_msa) == (384, 512, 5120)
    assert fine.train.learning_rate == 5e-4 and fine.train.warmup_steps == 0
    assert fine.loss.model.heads.structure_module.structural_violation_loss_weight == 1.0
    assert fine.loss.model.heads.experimentally_resolved.weight == 0.01
    assert STAGES["initial_training"].num_samples == 10_000_000
    # --set overrides win over the stage, each in its own tree.
    sets = parse_set_overrides(["train.learning_rate=2e-4", "train_data.crop_size=64",
                                "model.num_recycle=1", "train.precision=bf16",
                                "loss.model.heads.distogram.weight=0.5", "train.max_steps=null"])
    run = build_run_config("tiny", "finetune", sets)
    assert run.train.learning_rate == 2e-4 and run.train.precision == "bf16"
    assert run.train_data.crop_size == 64 and run.model.model.num_recycle == 1
    assert run.loss.model.heads.distogram.weight == 0.5
    assert run.model.model.heads.distogram.weight == 0.3


@pytest.mark.parametrize("bad, match", [
    (["train.learning_rate=-1"], "learning_rate"),
    (["train.strategy=horovod"], "strategy"),
    (["train.nonsense=1"], "nonsense"),
    (["optimizer.lr=1"], "unknown override"),
    (["train.grad_accum_steps=two"], "grad_accum_steps"),
])
def test_bad_settings_are_named(bad, match):
    with pytest.raises((ValueError, KeyError), match=match):
        build_run_config("tiny", "none", parse_set_overrides(bad))
    with pytest.raises(ValueError, match="key=value"):
        parse_set_overrides(["train.learning_rate"])


# ---------------------------------------------------------------------------- metrics


def _ca(pdb_id: str) -> torch.Tensor:
    from data_pipeline import protein as protein_io

    prot = protein_io.from_mmcif(MMCIF / f"{pdb_id}.cif", "A")
    return torch.from_numpy(prot.atom_positions[:, 1]).double()


def test_tm_score_and_kabsch():
    ca = _ca("1psm")
    mask = torch.ones(len(ca))
    rot, _ = kabsch(ca, ca, mask)
    torch.testing.assert_close(rot, torch.eye(3, dtype=torch.float64))
    # A rigid motion is found again and scores 1.
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1),
                                    dtype=torch.float64))[0]
    q = q * torch.sign(torch.linalg.det(q))
    moved = ca @ q.T + torch.tensor([5.0, -3.0, 12.0], dtype=torch.float64)
    rot, trans = kabsch(ca, moved, mask)
    torch.testing.assert_close(ca @ rot.T + trans, moved)
    assert tm_score(ca, moved, mask) == pytest.approx(1.0, abs=1e-9)
    # Noise lowers it monotonically; the score is the mean over residues of the terms at
    # the best superposition, so it can never exceed the terms of the identity fit.
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(ca.shape, generator=gen, dtype=torch.float64)
    scores = [tm_score(ca + s * noise, ca, mask) for s in (0.5, 2.0, 6.0)]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    d = (ca + 0.5 * noise - ca).norm(dim=-1)
    lower = float((1.0 / (1.0 + (d / tm_d0(len(ca))) ** 2)).mean())
    assert scores[0] >= lower - 1e-9
    # Unrelated folds of the same length score low.
    other = _ca("1l2y")
    assert tm_score(other, ca[:20], torch.ones(20)) < 0.45
    # Masked residues do not count.
    far = ca.clone()
    far[:5] += 50.0
    keep = torch.ones(len(ca))
    keep[:5] = 0
    assert tm_score(far, ca, keep) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="no residue"):
        tm_score(ca, ca, torch.zeros(len(ca)))


def test_read_metrics_ignores_a_truncated_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(path)


# ---------------------------------------------------------------------------- trainer


def _trainer(inputs, out: Path, loss_fn=None, **train: object) -> Trainer:
    sets = {"train.num_workers": 0, "train.warmup_steps": 0, "train.checkpoint_blocks": False,
            "train_data.crop_size": 16, **{f"train.{k}": v for k, v in train.items()}}
    run = build_run_config("tiny", "none", sets)
    torch.manual_seed(run.train.seed)
    model = AlphaFold(run.model)
    paths = DataPaths(inputs.mmcif_dir, inputs.alignments_dir, inputs.chain_list,
                      feature_cache_dir=out / "cache")
    return Trainer(run, model, build_train_loader(run, paths, _ctx()), out, loss_fn=loss_fn)


def _ctx():
    from uni_fold.train.distributed import DistributedContext

    return DistributedContext()


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_non_finite_loss_or_gradient_skips_the_step(inputs, tmp_path):
    from uni_fold.loss import AlphaFoldLoss

    holder: dict[str, Trainer] = {}

    def loss_fn(outputs, batch):
        terms = dict(base(outputs, batch))
        if holder["t"].step + 1 == 2:  # the second step: a NaN loss
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    trainer = _trainer(inputs, tmp_path, loss_fn=loss_fn)
    base = AlphaFoldLoss(trainer.run.loss)
    holder["t"] = trainer
    weight = trainer.model.evoformer.single_activations.weight
    # The third step: a finite loss but an infinite gradient in one parameter.
    weight.register_hook(lambda g: g * float("inf") if holder["t"].step + 1 == 3 else g)

    records = []
    snapshots = [_params(trainer.model)]
    for _ in range(4):
        records.append(trainer.train_step())
        snapshots.append(_params(trainer.model))
    assert [r["skipped"] for r in records] == [False, True, True, False]
    assert records[-1]["skipped_steps"] == 2 and trainer.updates == 2
    assert records[1]["dropped_examples"] == 1 and math.isnan(records[1]["loss"])
    assert not math.isfinite(records[2]["grad_norm"])
    for before, after in ((1, 2), (2, 3)):  # skipped: nothing moved
        for k in snapshots[before]:
            assert torch.equal(snapshots[before][k], snapshots[after][k]), k
    assert any(not torch.equal(snapshots[3][k], snapshots[4][k]) for k in snapshots[3])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    # Adam saw two updates, the schedule advanced twice.
    state = next(iter(trainer.optimizer.state.values()))
    assert int(state["step"]) == 2 and trainer.scheduler.last_epoch == 2


def test_checkpoints_are_atomic_and_complete(inputs, tmp_path):
    trainer = _trainer(inputs, tmp_path, keep_checkpoints=2)
    for _ in range(3):
        trainer.train_step()
        trainer.save_checkpoint()
    root = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_00000002", "step_00000003"]
    # A save killed half-way leaves a hidden temporary folder; it is never picked.
    (root / ".tmp-step_00000004-deadbeef" / "model").mkdir(parents=True)
    (root / "step_00000009").mkdir()  # no trainer_state.json: incomplete, ignored
    latest = ckpt.latest_checkpoint(root)
    assert latest.name == "step_00000003"
    reloaded = AlphaFold.from_checkpoint(latest / "ema")  # EMA weights load for inference
    for name, value in reloaded.named_parameters():
        torch.testing.assert_close(value, trainer.ema.shadow[name])
    state = ckpt.load_rank_state(latest, 0)
    assert state["rank_samples"] == 3 and state["data"]["num_samples_drawn"] == 3
    ckpt.restore_rng_state(state["rng"])
    assert torch.equal(torch.get_rng_state(), ckpt._from_b64(state["rng"]["torch"]))
    (latest / "optimizer.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="optimizer.pt"):
        trainer.resume(latest)
    trainer.save_checkpoint()  # the next save also clears the stale temporary folder
    assert not list(root.glob(".tmp-*"))


def test_overfits_one_real_protein(tmp_path):
    """scripts/overfit_tiny.py: FAPE and loss fall, lDDT-Ca rises (200 steps)."""
    out = tmp_path / "overfit"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "overfit_tiny.py"), "--steps", "200",
         "--output-dir", str(out), "--shared-data", str(SHARED_DATA)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fape" in result.stdout
    records = read_metrics(out / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 201))

    def mean(key, part):
        return sum(r[key] for r in part) / len(part)

    first, last = records[:20], records[-20:]
    assert mean("fape", last) < 0.85 * mean("fape", first), result.stdout
    assert mean("loss", last) < 0.4 * mean("loss", first), result.stdout
    assert mean("lddt_ca", last) > mean("lddt_ca", first) + 0.2, result.stdout
    assert not any(r["skipped"] for r in records)


def test_sigkill_then_resume_repeats_the_uninterrupted_run(inputs, tmp_path):
    extra = ("train.checkpoint_every=2", "train.validate_every=5", "train.ema_decay=0.9")
    val = ["--val-chain-list", str(inputs.chain_list)]
    steps = 10
    straight = tmp_path / "straight"
    assert cli_main(_cli_args(inputs, straight, steps, *extra) + val) == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "uni_fold.train",
           *_cli_args(inputs, killed, steps, *extra), *val]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = killed / "checkpoints" / "step_00000004"
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    done = ckpt.latest_checkpoint(killed / "checkpoints")
    assert done is not None and ckpt.load_trainer_state(done)["step"] < steps

    assert cli_main(_cli_args(inputs, killed, steps, *extra) + val + ["--resume"]) == 0
    a, b = read_metrics(straight / "metrics.jsonl"), read_metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    for key in ("loss", "fape", "lddt_ca", "grad_norm", "lr"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    # The rate each update used: warm-up over 3 updates, then the base rate.
    assert [r["lr"] for r in a[:4]] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3])
    for step in (5, 10):  # validation with the EMA weights, restored from the checkpoint
        for key in ("val_lddt_ca", "val_tm_score", "val_loss"):
            assert a[step - 1][key] == b[step - 1][key], key
            assert 0.0 <= a[step - 1]["val_tm_score"] <= 1.0
    final_a = ckpt.latest_checkpoint(straight / "checkpoints") / "model" / "model.safetensors"
    final_b = ckpt.latest_checkpoint(killed / "checkpoints") / "model" / "model.safetensors"
    from safetensors.torch import load_file

    weights_a, weights_b = load_file(str(final_a)), load_file(str(final_b))
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


def test_cli_refuses_bad_input(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(_cli_args(inputs, out, 1, "train.checkpoint_blocks=maybe")) == 2
    assert "checkpoint_blocks" in capsys.readouterr().err
    assert cli_main(_cli_args(inputs, out, 1, "trian.lr=1")) == 2
    assert "unknown override" in capsys.readouterr().err
    missing = _cli_args(inputs, out, 1)
    missing[missing.index("--mmcif-dir") + 1] = str(tmp_path / "nowhere")
    assert cli_main(missing) == 2
    assert "nowhere" in capsys.readouterr().err
    assert cli_main(_cli_args(inputs, out, 1)) == 0
    assert cli_main(_cli_args(inputs, out, 2)) == 2  # checkpoints there, no --resume
    assert "--resume" in capsys.readouterr().err


def test_sigterm_checkpoints_the_current_step_and_exits(inputs, tmp_path):
    """SLURM's pre-emption signal: finish the step, write its checkpoint, exit 0."""
    out = tmp_path / "preempted"
    cmd = [sys.executable, "-m", "uni_fold.train",
           *_cli_args(inputs, out, 200, "train.checkpoint_every=2")]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = out / "checkpoints" / "step_00000002"
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    records = read_metrics(out / "metrics.jsonl")
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    assert 2 <= records[-1]["step"] < 200
    assert ckpt.load_trainer_state(latest)["step"] == records[-1]["step"]


def test_finetune_starts_from_af2_params(inputs, tmp_path):
    """``train.init_from`` with an AF2 ``.npz`` (random values in AF2's layout, made by the
    reference's own parameter shapes) loads strictly, then the finetune stage trains."""
    import af2_parity

    from uni_fold.train.trainer import load_initial_weights

    setup = af2_parity.ParitySetup(preset="model_3", evoformer_num_block=1,
                                   extra_msa_stack_num_block=1)
    npz = af2_parity.save_npz(
        af2_parity.random_params(af2_parity.reference_config(setup), seed=3),
        tmp_path / "params_model_3.npz")
    blocks = ["model.embeddings_and_evoformer.evoformer_num_block=1",
              "model.embeddings_and_evoformer.extra_msa_stack_num_block=1"]
    run = build_run_config("model_3", "finetune", parse_set_overrides(blocks))
    model = AlphaFold(run.model)
    load_initial_weights(model, npz)
    expected = AlphaFold.from_alphafold_params(npz, "model_3", evoformer_num_block=1,
                                               extra_msa_stack_num_block=1)
    for (name, a), (_, b) in zip(model.state_dict().items(), expected.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError, match="init_from"):
        load_initial_weights(model, tmp_path / "missing")

    out = tmp_path / "finetune"
    args = ["--preset", "model_3", "--stage", "finetune", "--mmcif-dir", str(inputs.mmcif_dir),
            "--alignments-dir", str(inputs.alignments_dir), "--chain-list",
            str(inputs.chain_list), "--output-dir", str(out), "--max-steps", "1"]
    for item in (*blocks, f"train.init_from={npz}", "train.num_workers=0",
                 "train_data.crop_size=16", "data.max_msa_clusters=4", "data.max_extra_msa=4",
                 "model.num_recycle=0", "train.ema_decay=0"):
        args += ["--set", item]
    assert cli_main(args) == 0
    record = read_metrics(out / "metrics.jsonl")[0]
    assert record["lr"] == 5e-4 and math.isfinite(record["loss"])
    # Fine-tuning's loss weights: violations and experimentally resolved are trained.
    assert "violation_loss" in record and "experimentally_resolved" in record
    trained = AlphaFold.from_checkpoint(ckpt.latest_checkpoint(out / "checkpoints") / "model")
    moved = max(float((p - expected.state_dict()[k]).abs().max())
                for k, p in trained.state_dict().items())
    assert 0 < moved < 1e-2  # one Adam step of at most lr per weight (plus rounding)
