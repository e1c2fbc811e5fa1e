"""Data-parallel training equals one process on the combined batch.

Two ``gloo`` processes launched by ``torchrun`` (DDP, and DeepSpeed ZeRO-2 with its CPU
accelerator when DeepSpeed is installed) each train on their share of the example
stream, stop, and resume from their checkpoint for the last step; one process
accumulating both examples per step (``grad_accum_steps=2``) sees the same examples with
the same dropout masks. The final weights, EMA weights and logged losses must agree to
fp32 tolerance. Everything runs through ``train-uni-fold``.

Real data: 1L2Y (20 residues) and 1PSM (38 residues) from ../shared/data.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from shared import REPO_ROOT, SHARED_DATA

from uni_fold.model.alphafold import AlphaFold
from uni_fold.train import checkpoint as ckpt
from uni_fold.train.cli import main as cli_main
from uni_fold.train.example_inputs import ExampleChain, link_training_inputs
from uni_fold.train.metrics import read_metrics
from uni_fold.train.stages import build_run_config

MMCIF = SHARED_DATA / "structures" / "mmcif"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
STEPS = 3
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return link_training_inputs(tmp_path_factory.mktemp("inputs"), [
        ExampleChain(MMCIF / "1l2y.cif", "A"), ExampleChain(MMCIF / "1psm.cif", "A")])


def _args(inputs, out: Path, *sets: str) -> list[str]:
    args = ["--preset", "tiny", "--stage", "none", "--device", "cpu",
            "--mmcif-dir", str(inputs.mmcif_dir), "--alignments-dir", str(inputs.alignments_dir),
            "--chain-list", str(inputs.chain_list), "--output-dir", str(out),
            "--max-steps", str(STEPS), "--log-level", "WARNING"]
    # Dropout stays on: its masks are seeded per example, so they match across layouts.
    for item in ("train.num_workers=0", "train.warmup_steps=2", "train.learning_rate=3e-3",
                 "train.ema_decay=0.5", "train_data.crop_size=24", *sets):
        args += ["--set", item]
    return args


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def _torchrun(inputs, out: Path, *sets: str) -> None:
    """Two ranks: STEPS - 1 updates, then a second launch resumes for the last one."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc_per_node", "2", "-m", "uni_fold.train"]
    args = _args(inputs, out, *sets)
    args[args.index("--max-steps") + 1] = str(STEPS - 1)
    _run(launch + args)
    assert ckpt.latest_checkpoint(out / "checkpoints").name == f"step_{STEPS - 1:08d}"
    _run(launch + _args(inputs, out, *sets) + ["--resume"])


def _weights(out: Path, which: str) -> dict[str, torch.Tensor]:
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    assert latest is not None and latest.name == f"step_{STEPS:08d}"
    return load_file(str(latest / which / "model.safetensors"))


@pytest.fixture(scope="module")
def one_process(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_process")
    _run([sys.executable, "-m", "uni_fold.train",
          *_args(inputs, out, "train.grad_accum_steps=2")])
    return out


def _compare(one: Path, two: Path) -> float:
    worst = 0.0
    for which in ("model", "ema"):
        a, b = _weights(one, which), _weights(two, which)
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=2e-6, msg=name)
            worst = max(worst, float((a[name] - b[name]).abs().max()))
    ra, rb = read_metrics(one / "metrics.jsonl"), read_metrics(two / "metrics.jsonl")
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == list(range(1, STEPS + 1))
    for x, y in zip(ra, rb, strict=True):
        assert x["samples_seen"] == y["samples_seen"]
        for key in ("loss", "fape", "lddt_ca", "grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), (key, x["step"])
    return worst


def test_two_gloo_ddp_processes_equal_one_process(inputs, one_process, tmp_path):
    two = tmp_path / "ddp"
    _torchrun(inputs, two)
    worst = _compare(one_process, two)
    # The weights moved far more than the tolerance (from the seeded initialisation).
    torch.manual_seed(0)
    initial = AlphaFold(build_run_config("tiny", "none").model).state_dict()
    trained = _weights(one_process, "model")
    moved = max(float((trained[k] - initial[k]).abs().max()) for k in trained)
    print(f"DDP vs one process: max weight difference {worst:.2e}, weights moved {moved:.2e}")
    assert moved > 1e-3 > 100 * worst
    assert (two / "checkpoints" / f"step_{STEPS:08d}" / "rank_1.json").is_file()


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is optional: pip install deepspeed")
def test_two_gloo_deepspeed_zero2_processes_equal_one_process(inputs, one_process, tmp_path):
    two = tmp_path / "zero2"
    _torchrun(inputs, two, "train.strategy=deepspeed", "train.zero_stage=2")
    _compare(one_process, two)
    latest = ckpt.latest_checkpoint(two / "checkpoints")
    assert (latest / "optimizer_rank0.pt").is_file() and (latest / "optimizer_rank1.pt").is_file()


def test_slurm_script_runs_torchrun_and_resumes(inputs, tmp_path):
    """scripts/train_slurm.sh under a stand-in SLURM (srun, scontrol, nvidia-smi on PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "srun": '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n',
        "scontrol": "#!/bin/sh\necho localhost\n",
        "nvidia-smi": "#!/bin/sh\necho 'GPU 0: stand-in'\n",
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_JOB_NODELIST": "localhost", "SLURM_NNODES": "1", "SLURM_CPUS_PER_TASK": "1",
           "UNI_FOLD_PYTHON": sys.executable, "MASTER_PORT": str(_free_port())}
    out = tmp_path / "slurm"
    script = str(REPO_ROOT / "scripts" / "train_slurm.sh")
    first = _args(inputs, out)
    first[first.index("--max-steps") + 1] = "1"
    assert cli_main(first) == 0  # an earlier job's step 1; the script must resume it
    args = _args(inputs, out)
    args[args.index("--max-steps") + 1] = "2"
    result = subprocess.run(["bash", script, *args], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    # [1, 1, 2] had the second submission started afresh instead of resuming.
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    result = subprocess.run(["bash", script, "--preset", "tiny"], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 2 and "--output-dir" in result.stderr
