"""``predict-structure``: FASTA (or CSV) in, ranked and scored structures out.

A thin command line over :mod:`uni_fold.api`: it reads the targets, checks every option,
database and parameter file before any work, loads the networks once, predicts each
target (progress bar over targets and models, a log line with the time of each stage)
and writes ``<output-dir>/<target>/`` (:mod:`uni_fold.inference.outputs`). A failing
target is reported and the batch goes on; the exit status is 2 when any target failed or
the input or options were bad, 0 otherwise. Finished targets are skipped unless
``--overwrite``. Option names follow AlphaFold 2 and ColabFold (``--model-preset``,
``--num-recycle``, ``--msa-mode``...); ``--snake_case`` spellings are accepted too.

Example::

    predict-structure examples/myoglobin/102m_A.fasta --output-dir predictions \\
        --alignments-dir examples/myoglobin/alignments
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import glob
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from uni_fold import __version__

logger = logging.getLogger("uni_fold.cli")

EXIT_OK = 0
EXIT_ERROR = 2
DB_PRESETS = ("full_dbs", "reduced_dbs")

#: AF2's database layout under ``--db-dir`` (``scripts/download_all_data.sh``).
DB_LAYOUT = {
    "uniref90_database_path": ("uniref90/uniref90.fasta",),
    "mgnify_database_path": ("mgnify/mgy_clusters*.fa",),
    "bfd_database_path": ("bfd/bfd_metaclust_clu_complete_id30_c90_final_seq.sorted_opt",),
    "uniref30_database_path": ("uniref30/UniRef30_*", "uniclust30/*/uniclust30_*"),
    "small_bfd_database_path": ("small_bfd/bfd-first_non_consensus_sequences.fasta",),
    "pdb70_database_path": ("pdb70/pdb70",),
}
PRESET_DATABASES = {
    "full_dbs": ("uniref90_database_path", "mgnify_database_path", "bfd_database_path",
                 "uniref30_database_path"),
    "reduced_dbs": ("uniref90_database_path", "mgnify_database_path",
                    "small_bfd_database_path"),
}
TEMPLATE_MMCIF_SUBDIR = "pdb_mmcif/mmcif_files"


class UsageError(Exception):
    """Bad options, inputs, parameters or databases: reported, exit status 2."""


# ----------------------------------------------------------------------------------------
# Arguments


def _chunk_size(text: str) -> int | str | None:
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if value in ("none", "off", "0"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--chunk-size takes auto, none or a positive "
                                         f"number, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"--chunk-size must be positive, got {number}")
    return number


def _max_msa(text: str) -> tuple[int, int]:
    try:
        clusters, extra = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--max-msa takes 'clusters:extra' like 512:1024, got {text!r}") from None
    if clusters < 1 or extra < 1:
        raise argparse.ArgumentTypeError(f"--max-msa numbers must be positive, got {text!r}")
    return clusters, extra


def _nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _date(text: str) -> str:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None
    return text


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown where they say something; the ``--snake_case`` aliases hidden."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [o for o in action.option_strings if not (o.startswith("--") and "_" in o)]
        if shown and len(shown) < len(action.option_strings):
            action = copy.copy(action)
            action.option_strings = shown
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action) or text


class _Parser(argparse.ArgumentParser):
    """Every ``--long-option`` is also accepted as ``--long_option`` (AF2's spelling)."""

    def add_argument(self, *names, **kwargs):  # noqa: ANN002, ANN003, ANN201
        aliases = ["--" + n[2:].replace("-", "_") for n in names
                   if n.startswith("--") and "-" in n[2:]]
        return super().add_argument(*names, *aliases, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``predict-structure`` command line."""
    p = _Parser(
        prog="predict-structure",
        description="Predict protein structures with Uni-Fold (AlphaFold 2 in PyTorch): "
                    "ranked PDB/mmCIF models with pLDDT, PAE, pTM and plots per target.",
        formatter_class=_HelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="FASTA file(s) (each record one target), directories of FASTA files, "
                        "or ColabFold-style CSV/TSV tables with id,sequence")
    p.add_argument("-o", "--output-dir", required=True, help="one sub-folder per target")
    p.add_argument("--params-dir", default=None,
                   help="AF2 parameter files params_<model>.npz (default: $UNI_FOLD_PARAMS or "
                        "~/.cache/uni_fold/params; fill it with download-params)")
    p.add_argument("--model-preset", default="monomer_ptm",
                   help="monomer or monomer_ptm (AF2's five models each), or one model or "
                        "checkpoint name from the params directory")
    p.add_argument("--models", default=None,
                   help="which models of the preset, e.g. 1,2 (default: all five)")
    p.add_argument("--num-recycle", type=_nonnegative, default=3, help="recycling iterations")
    p.add_argument("--recycle-early-stop-tolerance", type=float, default=0.0,
                   help="stop recycling when CA distances change by less (Å RMS); 0: never")
    p.add_argument("--num-seeds", type=_positive, default=1, help="predictions per model")
    p.add_argument("--seed", type=int, default=0, help="base random seed (AF2's random_seed)")
    p.add_argument("--msa-mode", choices=("search", "precomputed", "server", "single_sequence"),
                   default=None,
                   help="search: local databases (--db-dir); precomputed: --alignments-dir; "
                        "server: ColabFold MMseqs2 API; single_sequence: no MSA. Default: "
                        "precomputed with --alignments-dir, search with --db-dir")
    p.add_argument("--alignments-dir", default=None,
                   help="one sub-folder per target named after its record id (AF2/OpenFold "
                        "file names) or <id>.a3m; search and server modes write there "
                        "(default: <output-dir>/alignments)")
    p.add_argument("--db-dir", default=None, help="AF2's database folder (download_all_data.sh)")
    p.add_argument("--db-preset", choices=DB_PRESETS, default="full_dbs",
                   help="full_dbs: BFD + UniRef30 (hhblits); reduced_dbs: small BFD (jackhmmer)")
    p.add_argument("--templates", action=argparse.BooleanOptionalAction, default=False,
                   help="use template structures (needs a template mmCIF folder)")
    p.add_argument("--template-mmcif-dir", default=None,
                   help=f"template mmCIF files (default: <db-dir>/{TEMPLATE_MMCIF_SUBDIR})")
    p.add_argument("--max-template-date", type=_date, default=None,
                   help="latest template release date YYYY-MM-DD (default: today)")
    p.add_argument("--host-url", "--msa-server-url", default=None,
                   help="ColabFold MMseqs2 server of --msa-mode server (default: "
                        "https://api.colabfold.com)")
    p.add_argument("--max-msa", type=_max_msa, default=None,
                   help="MSA clusters:extra rows fed to the network, e.g. 512:1024")
    p.add_argument("--rank", choices=("auto", "plddt", "ptm"), default="auto",
                   help="ranking: mean pLDDT or pTM (auto: pTM for _ptm models)")
    p.add_argument("--amber", action="store_true", help="Amber-relax predictions (relax extra)")
    p.add_argument("--models-to-relax", choices=("best", "all"), default="best",
                   help="with --amber: the best prediction or all")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32, or bf16 autocast around the trunk (for GPUs)")
    p.add_argument("--chunk-size", type=_chunk_size, default="auto",
                   help="auto (from length and free memory), none, or a number")
    p.add_argument("--max-length", type=_positive, default=None,
                   help="refuse targets longer than this many residues")
    p.add_argument("--overwrite", action="store_true",
                   help="redo finished targets (default: skip them)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


# ----------------------------------------------------------------------------------------
# Setup checks (all before any work)


def _find_in_db_dir(db_dir: Path, patterns: Sequence[str]) -> str | None:
    for pattern in patterns:
        for hit in sorted(glob.glob(str(db_dir / pattern))):
            # HH-suite databases are prefixes: strip the ffindex suffix of a matching file.
            for suffix in ("_a3m.ffdata", "_a3m.ffindex", "_hhm.ffdata", "_hhm.ffindex",
                           "_cs219.ffdata", "_cs219.ffindex"):
                if hit.endswith(suffix):
                    return hit[: -len(suffix)]
            if os.path.isfile(hit):
                return hit
        prefix = db_dir / pattern
        if "*" not in pattern and glob.glob(f"{prefix}_*.ffdata"):
            return str(prefix)
    return None


def database_config(args: argparse.Namespace, msa_mode: str):  # noqa: ANN201 - DatabaseConfig
    """The ``DatabaseConfig`` of the options: MSA databases in search mode, template
    settings with ``--templates``.

    Raises:
        UsageError: a database the chosen mode needs is missing.
    """
    from data_pipeline.pipeline import DatabaseConfig

    db_dir = Path(args.db_dir).expanduser() if args.db_dir else None
    if db_dir is not None and not db_dir.is_dir():
        raise UsageError(f"--db-dir {db_dir} is not a directory")
    paths: dict[str, str] = {}
    if msa_mode == "search":
        if db_dir is None:
            raise UsageError("--msa-mode search needs the sequence databases: give --db-dir "
                             "(AF2's layout, from scripts/download_all_data.sh), or use "
                             "--msa-mode precomputed/server/single_sequence")
        missing = []
        for key in PRESET_DATABASES[args.db_preset]:
            found = _find_in_db_dir(db_dir, DB_LAYOUT[key])
            if found is None:
                missing.append(f"{key.removesuffix('_database_path')} "
                               f"({' or '.join(DB_LAYOUT[key])})")
            else:
                paths[key] = found
        if missing:
            raise UsageError(f"--db-dir {db_dir} lacks the {args.db_preset} database(s): "
                             f"{'; '.join(missing)}. Download them (AF2's download_all_data.sh"
                             ") or choose --db-preset reduced_dbs / another --msa-mode")
        if args.templates:
            pdb70 = _find_in_db_dir(db_dir, DB_LAYOUT["pdb70_database_path"])
            seqres = db_dir / "pdb_seqres" / "pdb_seqres.txt"
            if pdb70:
                paths["pdb70_database_path"] = pdb70
            elif seqres.is_file():
                paths["pdb_seqres_database_path"] = str(seqres)
            else:
                raise UsageError(f"--templates in search mode needs {db_dir}/pdb70/pdb70 or "
                                 f"{db_dir}/pdb_seqres/pdb_seqres.txt; or use --no-templates")
    template_dir = None
    if args.templates:
        template_dir = Path(args.template_mmcif_dir).expanduser() if args.template_mmcif_dir \
            else (db_dir / TEMPLATE_MMCIF_SUBDIR if db_dir else None)
        if template_dir is None or not template_dir.is_dir():
            raise UsageError(
                f"--templates needs the template mmCIF folder: {template_dir or 'none given'} "
                f"is not a directory; give --template-mmcif-dir or --db-dir with "
                f"{TEMPLATE_MMCIF_SUBDIR}, or use --no-templates")
        obsolete = db_dir / "pdb_mmcif" / "obsolete.dat" if db_dir else None
        if obsolete is not None and obsolete.is_file():
            paths["obsolete_pdbs_path"] = str(obsolete)
    return DatabaseConfig(**paths, template_mmcif_dir=str(template_dir) if template_dir else None,
                          max_template_date=args.max_template_date,
                          n_cpu=max(1, min(8, os.cpu_count() or 1)))


def choose_msa_mode(args: argparse.Namespace) -> str:
    if args.msa_mode:
        mode = args.msa_mode
    elif args.alignments_dir:
        mode = "precomputed"
    elif args.db_dir:
        mode = "search"
    else:
        raise UsageError("say where the MSA comes from: --alignments-dir (precomputed), "
                         "--db-dir (search), --msa-mode server, or --msa-mode single_sequence")
    if mode == "precomputed":
        if not args.alignments_dir:
            raise UsageError("--msa-mode precomputed needs --alignments-dir (one sub-folder per "
                             "target); or use --msa-mode search/server/single_sequence")
        if not os.path.isdir(args.alignments_dir):
            raise UsageError(f"--alignments-dir {args.alignments_dir} is not a directory")
    if mode == "server":
        try:
            import data_pipeline.colabfold_server  # noqa: F401
        except ImportError as err:
            raise UsageError(f"--msa-mode server is not available in this installation ({err})"
                             ) from err
    return mode


def target_alignments(args: argparse.Namespace, msa_mode: str, name: str) -> str | None:
    """Where a target's alignments are read (precomputed) or written (search, server)."""
    if msa_mode == "single_sequence":
        return None
    root = Path(args.alignments_dir or Path(args.output_dir) / "alignments")
    folder = root / name
    if msa_mode == "precomputed" and not folder.is_dir():
        a3m = root / f"{name}.a3m"
        if a3m.is_file():
            return str(a3m)
        raise FileNotFoundError(
            f"no alignments for target {name!r}: expected the folder {folder} (AF2/OpenFold "
            f"layout) or the file {a3m}; precompute them (precompute-alignments) or use "
            "--msa-mode search/server/single_sequence")
    return str(folder)


# ----------------------------------------------------------------------------------------
# Main


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _plan(args: argparse.Namespace, targets: list, failed: list[tuple[str, str]]
          ) -> tuple[list, list[str]]:
    """Split targets into those to run and finished ones to skip; record refusals."""
    from uni_fold.inference.outputs import is_finished

    todo, skipped = [], []
    for t in targets:
        folder = Path(args.output_dir) / t.name
        if folder.exists() and not args.overwrite:
            if is_finished(folder):
                logger.info("%s: finished earlier (%s), skipped; --overwrite redoes it",
                            t.name, folder)
                skipped.append(t.name)
            else:
                failed.append((t.name, f"{folder} exists but is not a finished prediction; "
                                       "move it away or pass --overwrite"))
                logger.error("%s: %s", t.name, failed[-1][1])
        elif args.max_length is not None and len(t.sequence) > args.max_length:
            failed.append((t.name, f"{len(t.sequence)} residues, more than --max-length "
                                   f"{args.max_length}; raise --max-length or split it"))
            logger.error("%s: %s", t.name, failed[-1][1])
        else:
            todo.append(t)
    return todo, skipped


def check_relax_available() -> None:
    """Raise :class:`UsageError` when ``--amber`` cannot run (no OpenMM / pdbfixer)."""
    try:
        from uni_fold.relax import AmberRelaxation  # noqa: F401
    except ImportError as err:
        from uni_fold.relax import MISSING_EXTRA

        raise UsageError(f"--amber: {MISSING_EXTRA} ({err})") from err


def _fetch_server_msas(args: argparse.Namespace, todo: list,
                       failed: list[tuple[str, str]]) -> list:
    """One ColabFold server job for every target still to run (folders already holding an
    MSA are reused); on failure every such target fails with the server's message."""
    from uni_fold import api

    root = Path(args.alignments_dir or Path(args.output_dir) / "alignments")
    start = time.perf_counter()
    try:
        api.server_alignments({t.name: t.sequence for t in todo}, root, args.host_url)
    except Exception as err:  # noqa: BLE001 - reported per target
        logger.error("MSA server: %s", err)
        failed.extend((t.name, f"MSA server: {err}") for t in todo)
        return []
    logger.info("server MSAs of %d target(s) in %s (%.1f s)", len(todo), root,
                time.perf_counter() - start)
    return todo


def _predict_one(args: argparse.Namespace, setup: dict, target, bar) -> None:  # noqa: ANN001
    from uni_fold import api
    from uni_fold.inference.outputs import write_prediction

    start = time.perf_counter()
    msa_mode = setup["msa_mode"]
    prediction = api.predict(
        target, setup["runner"], target_alignments(args, msa_mode, target.name),
        msa_mode=msa_mode, databases=setup["databases"], pipeline=setup["pipeline"],
        server_url=args.host_url, num_seeds=args.num_seeds, seed=args.seed,
        rank_by=None if args.rank == "auto" else args.rank,
        relax=args.models_to_relax if args.amber else False, max_length=args.max_length,
        on_prediction=(lambda _: bar.update(1)) if bar is not None else None)
    write_start = time.perf_counter()
    folder = write_prediction(prediction, Path(args.output_dir) / target.name,
                              overwrite=args.overwrite)
    best = prediction.best
    logger.info("%s: %d residues in %.1f s (writing %.1f s); best %s, mean pLDDT %.2f%s -> %s",
                target.name, len(target.sequence), time.perf_counter() - start,
                time.perf_counter() - write_start, best.name, best.mean_plddt,
                "" if best.ptm is None else f", pTM {best.ptm:.3f}", folder)


def _run_targets(args: argparse.Namespace, setup: dict, todo: list,
                 failed: list[tuple[str, str]]) -> list[str]:
    """Predict and write each target; a failure is logged and recorded, the batch goes on."""
    done: list[str] = []
    bar = None
    redirect: contextlib.AbstractContextManager = contextlib.nullcontext()
    if not args.no_progress:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        bar = tqdm(total=len(todo) * len(setup["names"]) * args.num_seeds, unit="model",
                   desc="predict-structure", dynamic_ncols=True)
        redirect = logging_redirect_tqdm()
    with redirect:
        try:
            for t in todo:
                if bar is not None:
                    bar.set_postfix_str(t.name)
                try:
                    _predict_one(args, setup, t, bar)
                    done.append(t.name)
                except Exception as err:  # noqa: BLE001 - one target's failure, reported
                    logger.error("%s failed: %s: %s", t.name, type(err).__name__, err)
                    logger.debug("traceback of %s", t.name, exc_info=True)
                    failed.append((t.name, f"{type(err).__name__}: {err}"))
        finally:
            if bar is not None:
                bar.close()
    return done


def run(args: argparse.Namespace) -> int:
    """Run ``predict-structure`` for parsed ``args``; returns the exit status."""
    from data_pipeline.pipeline import DataPipeline
    from uni_fold import api
    from uni_fold.inference.runner import load_runner, resolve_device

    start_all = time.perf_counter()
    setup: dict = {}
    try:
        targets = api.read_targets(args.inputs)
        setup["msa_mode"] = msa_mode = choose_msa_mode(args)
        resolve_device(args.device)
        if args.amber:
            check_relax_available()
        setup["databases"] = database_config(args, msa_mode)
        models = args.models.split(",") if args.models else None
        setup["names"] = names = api.model_names(args.model_preset, models)
        params = {name: api.find_model_params(name, args.params_dir) for name in names}
        setup["pipeline"] = DataPipeline(
            setup["databases"], msa_mode="precomputed" if msa_mode == "server" else msa_mode)
    except (UsageError, ValueError, FileNotFoundError, OSError) as err:
        logger.error("%s", err)
        return EXIT_ERROR
    logger.info("%d target(s), models %s, MSA mode %s", len(targets), ", ".join(names), msa_mode)

    failed: list[tuple[str, str]] = []
    todo, skipped = _plan(args, targets, failed)
    done: list[str] = []
    if todo:
        start = time.perf_counter()
        try:
            setup["runner"] = load_runner(
                names, params, device=args.device, precision=args.precision,
                chunk_size=args.chunk_size, num_recycle=args.num_recycle,
                recycle_early_stop_tolerance=args.recycle_early_stop_tolerance,
                max_msa=args.max_msa)
        except (ValueError, FileNotFoundError, OSError, RuntimeError) as err:
            logger.error("cannot load the models: %s", err)
            return EXIT_ERROR
        logger.info("loaded %d model(s) in %.1f s", len(names), time.perf_counter() - start)
        if msa_mode == "server":
            todo = _fetch_server_msas(args, todo, failed)
        done = _run_targets(args, setup, todo, failed)

    logger.info("done in %.1f s: %d predicted, %d skipped, %d failed",
                time.perf_counter() - start_all, len(done), len(skipped), len(failed))
    for name, why in failed:
        logger.error("FAILED %s: %s", name, why)
    return EXIT_ERROR if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``predict-structure`` console script."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
