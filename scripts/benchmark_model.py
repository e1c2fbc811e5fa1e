"""Forward time and peak memory of Uni-Fold's AlphaFold and the JAX AF2 reference, as a table.

For every length both models run the same synthetic processed features (random MSA,
templates and recycling slices of the given sizes) with random AF2-format parameters of
the chosen preset and block counts; each measurement runs in a fresh process. The time is
one full forward (all recycling iterations) after a first forward; the reference is compiled
ahead of time (XLA compile time reported apart). Memory: on the CPU the growth of the
resident set during the first forward (after compiling; sampled every 2 ms), i.e. the
activations and outputs the allocators had to get, and the process's peak resident set;
on a GPU the peak device memory. Both sides run in fp32 unless ``--precision bf16`` (ours only).

    python scripts/benchmark_model.py --lengths 64 128 --evoformer-blocks 4
    python scripts/benchmark_model.py --lengths 256 512 --device cuda --chunk-size 64
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from data_pipeline import residue_constants as rc

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------
# Measurement helpers (run inside a worker process)


class RssSampler:
    """Largest resident set size seen while active (Linux ``/proc/self/statm``)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self.start = self.rss()
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def synthetic_batch(args: argparse.Namespace, length: int) -> dict[str, np.ndarray]:
    """Processed features (AF2 names and dtypes) with the recycling axis, random values."""
    rng = np.random.default_rng(0)
    r, n, s = args.num_recycle + 1, length, args.msa_depth
    e, t = args.extra_msa_depth, args.templates
    aatype = rng.integers(0, 20, (n,)).astype(np.int32)
    target_feat = np.zeros((n, 22), np.float32)
    target_feat[np.arange(n), aatype + 1] = 1.0
    ca = np.cumsum(rng.normal(0, 2.2, (t, n, 3)), axis=1).astype(np.float32)
    pos = (ca[:, :, None, :] + rng.normal(0, 1.0, (t, n, 37, 3))).astype(np.float32)
    one = {
        "aatype": aatype,
        "target_feat": target_feat,
        "residue_index": np.arange(n, dtype=np.int32),
        "seq_mask": np.ones(n, np.float32),
        "msa_feat": rng.random((s, n, 49)).astype(np.float32),
        "msa_mask": np.ones((s, n), np.float32),
        "extra_msa": rng.integers(0, 23, (e, n)).astype(np.int32),
        "extra_msa_mask": np.ones((e, n), np.float32),
        "extra_has_deletion": np.zeros((e, n), np.float32),
        "extra_deletion_value": np.zeros((e, n), np.float32),
        "template_aatype": rng.integers(0, 20, (t, n)).astype(np.int32),
        "template_all_atom_positions": pos,
        "template_all_atom_masks": np.ones((t, n, 37), np.float32),
        "template_pseudo_beta": pos[:, :, 3],
        "template_pseudo_beta_mask": np.ones((t, n), np.float32),
        "template_mask": np.ones(t, np.float32),
        # Read by the reference's structure module only.
        "atom14_atom_exists": rc.restype_atom14_mask[aatype],
        "atom37_atom_exists": rc.restype_atom37_mask[aatype],
        "residx_atom14_to_atom37": rc.restype_atom14_to_atom37[aatype].astype(np.int32),
        "residx_atom37_to_atom14": rc.restype_atom37_to_atom14[aatype].astype(np.int32),
    }
    return {k: np.stack([v] * r) for k, v in one.items()}


def run_ours(args: argparse.Namespace, length: int) -> dict[str, float]:
    import torch

    from uni_fold.config import model_config
    from uni_fold.model.alphafold import AlphaFold
    from uni_fold.model.runtime import RuntimeConfig, apply_runtime

    torch.set_flush_denormal(not args.keep_denormals)
    config = model_config(
        args.preset, num_recycle=args.num_recycle, evoformer_num_block=args.evoformer_blocks,
        extra_msa_stack_num_block=args.extra_msa_blocks,
        template_pair_stack_num_block=args.template_blocks,
    )
    device = torch.device(args.device)
    model = AlphaFold(config).eval().to(device)
    apply_runtime(model, RuntimeConfig(
        chunk_size=args.chunk_size, attention_backend=args.attention_backend,
        precision=args.precision,
    ))
    batch = {k: torch.from_numpy(v).to(device) for k, v in synthetic_batch(args, length).items()}

    def forward() -> None:
        with torch.no_grad():
            model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with RssSampler() as rss:  # the first forward: nothing cached by the allocator yet
        t = time.perf_counter()
        forward()
        first = time.perf_counter() - t
    out = {"first_s": first, "forward_mem_mb": (rss.peak - rss.start) / 2**20}
    if device.type == "cuda":
        out["forward_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        forward()
        times.append(time.perf_counter() - t)
    out["time_s"] = statistics.median(times)
    return out


def run_reference(args: argparse.Namespace, length: int) -> dict[str, float]:
    sys.path.insert(0, str(REPO / "tests"))
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    from af2_parity import (
        ParitySetup,
        nest_params,
        random_params,
        reference_apply,
        reference_config,
        reference_recycling,
    )

    setup = ParitySetup(
        preset=args.preset, evoformer_num_block=args.evoformer_blocks,
        extra_msa_stack_num_block=args.extra_msa_blocks,
        template_pair_stack_num_block=args.template_blocks, num_recycle=args.num_recycle,
    )
    cfg = reference_config(setup)
    batch = synthetic_batch(args, length)
    if not cfg.model.embeddings_and_evoformer.template.enabled:
        batch = {k: v for k, v in batch.items() if not k.startswith("template_")}
    nested = jax.device_put(nest_params(random_params(cfg, seed=0)))
    apply = reference_apply(cfg)
    first_slice = {k: v[0] for k, v in batch.items()}
    n = length
    e = cfg.model.embeddings_and_evoformer
    first_slice.update(prev_pos=np.zeros((n, 37, 3), np.float32),
                       prev_msa_first_row=np.zeros((n, e.msa_channel), np.float32),
                       prev_pair=np.zeros((n, n, e.pair_channel), np.float32))
    t = time.perf_counter()
    compiled = apply.lower(nested, jax.random.PRNGKey(0), first_slice).compile()
    compile_s = time.perf_counter() - t
    with RssSampler() as rss:  # the first run after compiling: XLA allocates its buffers
        t = time.perf_counter()
        reference_recycling(cfg, nested, batch, compiled)
        first = time.perf_counter() - t
    out = {"first_s": first, "compile_s": compile_s,
           "forward_mem_mb": (rss.peak - rss.start) / 2**20}
    stats = jax.local_devices()[0].memory_stats() if args.device != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        out["forward_mem_mb"] = stats["peak_bytes_in_use"] / 2**20
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        reference_recycling(cfg, nested, batch, compiled)
        times.append(time.perf_counter() - t)
    out["time_s"] = statistics.median(times)
    return out


def worker(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    fn = run_ours if args.worker == "ours" else run_reference
    result = fn(args, args.length)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------
# Driver


def measure(impl: str, length: int, argv: list[str]) -> dict[str, float] | str:
    cmd = [sys.executable, __file__, *argv, "--worker", impl, "--length", str(length)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return "out of memory" if "memory" in tail.lower() else f"failed: {tail[:80]}"


def _row(length: int, ours: dict | str, ref: dict | str) -> str:
    def cell(x: object, key: str, fmt: str = "{:.2f}") -> str:
        return fmt.format(x[key]) if isinstance(x, dict) else str(x)

    def ratio(key: str) -> str:
        if isinstance(ours, dict) and isinstance(ref, dict) and ref[key] > 0:
            return f"{ours[key] / ref[key]:.2f}"
        return "-"

    cells = [
        str(length), cell(ours, "time_s"), cell(ref, "time_s"), ratio("time_s"),
        cell(ours, "forward_mem_mb", "{:.0f}"), cell(ref, "forward_mem_mb", "{:.0f}"),
        ratio("forward_mem_mb"), cell(ours, "max_rss_mb", "{:.0f}"),
        cell(ref, "max_rss_mb", "{:.0f}"), cell(ref, "compile_s", "{:.1f}"),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--preset", default="model_1_ptm")
    p.add_argument("--evoformer-blocks", type=int, default=48)
    p.add_argument("--extra-msa-blocks", type=int, default=4)
    p.add_argument("--template-blocks", type=int, default=2)
    p.add_argument("--num-recycle", type=int, default=0)
    p.add_argument("--msa-depth", type=int, default=128, help="MSA cluster rows (N_seq)")
    p.add_argument("--extra-msa-depth", type=int, default=1024)
    p.add_argument("--templates", type=int, default=4)
    p.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    p.add_argument("--chunk-size", type=int, default=None, help="ours: RuntimeConfig.chunk_size")
    p.add_argument("--attention-backend", default="torch", choices=["torch", "sdpa", "deepspeed"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="ours only")
    p.add_argument("--repeats", type=int, default=1, help="timed forwards (median)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--keep-denormals", action="store_true",
                   help="do not flush float32 denormals in torch (XLA flushes them)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    print(f"{args.preset}: {args.evoformer_blocks} Evoformer / {args.extra_msa_blocks} extra-MSA "
          f"/ {args.template_blocks} template blocks, {args.num_recycle} recycle(s), MSA "
          f"{args.msa_depth}, extra MSA {args.extra_msa_depth}, {args.templates} templates; "
          f"device {args.device}, ours: chunk {args.chunk_size}, {args.attention_backend}, "
          f"{args.precision}")
    print()
    print("| N_res | ours (s) | AF2 JAX (s) | time ours/AF2 | ours mem (MB) | AF2 mem (MB) "
          "| mem ours/AF2 | ours max RSS (MB) | AF2 max RSS (MB) | AF2 compile (s) |")
    print("|" + "---|" * 10)
    rows = []
    for length in args.lengths:
        ours = measure("ours", length, argv)
        ref = "skipped" if args.skip_reference else measure("reference", length, argv)
        rows.append({"length": length, "ours": ours, "reference": ref})

        print(_row(length, ours, ref), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
