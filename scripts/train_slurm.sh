#!/usr/bin/env bash
# Multi-node Uni-Fold training on a SLURM cluster: one srun task per node, and on each node
# torchrun starts one training process per GPU (DDP over NCCL, or DeepSpeed with
# --set train.strategy=deepspeed). Every launch passes --resume, so a requeued or
# resubmitted job continues from the newest complete checkpoint in OUTPUT_DIR.
#
#   sbatch --nodes=4 scripts/train_slurm.sh \
#       --preset model_1_ptm --stage initial_training \
#       --mmcif-dir /data/pdb_mmcif --alignments-dir /data/alignments \
#       --chain-list /data/chains.txt --output-dir /runs/af2_initial
#
# Arguments are those of train-uni-fold (see docs/training.md); --output-dir is required.
# Environment: GPUS_PER_NODE (default: the GPUs nvidia-smi lists), MASTER_PORT (29500),
# UNI_FOLD_PYTHON (python; e.g. the python of a virtual environment).
#
# Before the time limit SLURM sends SIGTERM (--signal below); torchrun passes it to the
# training processes, which finish the current step, write a checkpoint and exit. Periodic
# checkpoints (--set train.checkpoint_every=N) cover everything else, e.g. a node failure.
#
#SBATCH --job-name=uni-fold-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --signal=TERM@300
#SBATCH --requeue
#SBATCH --output=%x-%j.out

set -euo pipefail

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  echo "train_slurm.sh: run this under SLURM (sbatch scripts/train_slurm.sh ...); for one" \
       "machine use: torchrun --nproc_per_node N -m uni_fold.train ..." >&2
  exit 2
fi
if [[ " $* " != *" --output-dir "* && " $* " != *" --output-dir="* ]]; then
  echo "train_slurm.sh: pass --output-dir DIR (checkpoints, metrics and logs go there)" >&2
  exit 2
fi

PYTHON="${UNI_FOLD_PYTHON:-python}"
GPUS_PER_NODE="${GPUS_PER_NODE:-$(nvidia-smi --list-gpus | wc -l)}"
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
MASTER_PORT="${MASTER_PORT:-29500}"
NNODES="${SLURM_NNODES:-1}"

echo "job $SLURM_JOB_ID: $NNODES node(s) x $GPUS_PER_NODE GPU(s), rendezvous at" \
     "$MASTER_ADDR:$MASTER_PORT"

# Threads per process: the node's CPUs shared among its GPUs' processes.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( ${SLURM_CPUS_PER_TASK:-8} / GPUS_PER_NODE > 0 ? ${SLURM_CPUS_PER_TASK:-8} / GPUS_PER_NODE : 1 ))}"
export NCCL_ASYNC_ERROR_HANDLING=1

srun --kill-on-bad-exit=1 --ntasks-per-node=1 \
  "$PYTHON" -m torch.distributed.run \
    --nnodes "$NNODES" \
    --nproc_per_node "$GPUS_PER_NODE" \
    --rdzv_id "$SLURM_JOB_ID" \
    --rdzv_backend c10d \
    --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" \
    -m uni_fold.train --resume "$@"
