"""The Python API: load the networks once, then predict structures from sequences.

::

    import uni_fold

    models = uni_fold.load_model("monomer_ptm", params="~/.cache/uni_fold/params")
    pred = uni_fold.predict("MKTAYIAKQR...", model=models, msa="alignments/my_protein/")
    pred.plddt, pred.pae, pred.ptm, pred.ranking   # numpy arrays / floats / AF2's table
    open("best.pdb", "w").write(pred.to_pdb())
    pred.save("out/my_protein")                     # every file predict-structure writes

Nothing is written unless asked: :func:`predict` returns a :class:`Prediction` held in
memory (searches in ``msa_mode="search"`` / ``"server"`` without an alignments directory go
to a temporary directory that is removed afterwards).
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from data_pipeline.parsers.fasta import parse_fasta, read_fasta
from data_pipeline.pipeline import DatabaseConfig, DataPipeline, safe_name
from uni_fold.inference.results import (
    ModelPrediction,
    Prediction,
    default_rank_by,
)
from uni_fold.inference.runner import ModelRunner, load_runner

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_PRESETS",
    "MSA_MODES",
    "ModelPrediction",
    "ModelRunner",
    "Prediction",
    "Target",
    "load_model",
    "model_names",
    "parse_target",
    "predict",
    "read_targets",
    "relax_prediction",
    "server_alignments",
]

#: AF2's ``--model_preset`` values for monomers -> the parameter sets they run.
MODEL_PRESETS: dict[str, tuple[str, ...]] = {
    "monomer": tuple(f"model_{i}" for i in range(1, 6)),
    "monomer_ptm": tuple(f"model_{i}_ptm" for i in range(1, 6)),
}
MSA_MODES = ("search", "precomputed", "server", "single_sequence")
CHECKPOINT_CONFIG = "config.json"
TABLE_SUFFIXES = (".csv", ".tsv")


# ----------------------------------------------------------------------------------------
# Models


def model_names(preset: str | Sequence[str], models: Sequence[int | str] | None = None
                ) -> list[str]:
    """The model names to run.

    Args:
        preset: ``"monomer"`` or ``"monomer_ptm"`` (AF2's presets: five models each), one
            model name (``"model_1_ptm"``, or a checkpoint's name), or a list of names.
        models: with a preset, which of its models: numbers 1-5 (``--models 1,2``) or names.

    Raises:
        ValueError: an unknown model number, or ``models`` with a single name.
    """
    if isinstance(preset, str) and preset in MODEL_PRESETS:
        names = list(MODEL_PRESETS[preset])
        if models is None:
            return names
        chosen = []
        for m in models:
            text = str(m).strip()
            if text.isdigit():
                k = int(text)
                if not 1 <= k <= len(names):
                    raise ValueError(f"model number {k} is not one of 1-{len(names)} of preset "
                                     f"{preset!r}; use e.g. --models 1,2")
                chosen.append(names[k - 1])
            elif text:
                chosen.append(text)
        if not chosen:
            raise ValueError("no model chosen: give model numbers like --models 1,2")
        return list(dict.fromkeys(chosen))
    names = [preset] if isinstance(preset, str) else list(preset)
    if models is not None:
        raise ValueError(f"models= selects from a preset ({', '.join(MODEL_PRESETS)}); "
                         f"{preset!r} already names the models")
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"model preset {preset!r} names no model")
    return names


def find_model_params(name: str, params_dir: str | os.PathLike | None) -> Path:
    """The weights of model ``name`` in ``params_dir`` (None: the default params
    directory): a Uni-Fold checkpoint ``<params_dir>/<name>/`` (``config.json`` +
    ``model.safetensors``) or AF2's ``params_<name>.npz``.

    Raises:
        FileNotFoundError: neither exists; the message names ``download-params``.
    """
    from uni_fold.download import default_params_dir, find_params

    directory = Path(params_dir).expanduser() if params_dir is not None else default_params_dir()
    checkpoint = directory / name
    if (checkpoint / CHECKPOINT_CONFIG).is_file():
        return checkpoint
    return find_params(directory, name)


def load_model(
    preset: str | Sequence[str] = "model_1_ptm",
    params: str | os.PathLike | None = None,
    *,
    models: Sequence[int | str] | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    chunk_size: int | str | None = "auto",
    attention_backend: str | None = None,
    num_recycle: int | None = None,
    recycle_early_stop_tolerance: float | None = None,
    max_msa: tuple[int, int] | None = None,
) -> ModelRunner:
    """Load the networks once, for any number of :func:`predict` calls.

    Args:
        preset: ``"monomer"`` / ``"monomer_ptm"`` (five models; ``models`` picks some), a
            model name such as ``"model_1_ptm"``, or a list of names.
        params: a params directory holding ``params_<model>.npz`` files or checkpoint
            folders (None: ``$UNI_FOLD_PARAMS`` or ``~/.cache/uni_fold/params``); or, for
            one model, its ``.npz`` file or checkpoint directory itself.
        models: model numbers (1-5) or names chosen from the preset.
        device: ``"auto"``/None (GPU if any), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        precision: ``"fp32"`` or ``"bf16"``.
        chunk_size: ``"auto"`` (from sequence length and free memory), None or a number.
        attention_backend: ``"torch"``, ``"sdpa"`` or ``"deepspeed"`` (None: by device).
        num_recycle: recycling iterations (None: the preset's 3).
        recycle_early_stop_tolerance: stop recycling once the CA distances change by less
            than this (Å, RMS); None/0: never.
        max_msa: ``(MSA clusters, extra MSA rows)`` fed to the network (ColabFold's
            ``--max-msa 512:1024``); None: the preset's.

    Returns:
        A :class:`~uni_fold.inference.runner.ModelRunner`.

    Raises:
        FileNotFoundError: missing parameters (the message says how to get them).
        ValueError: parameters that do not fit the model, or bad options.
    """
    names = model_names(preset, models)
    where: dict[str, str | os.PathLike] = {}
    path = Path(params).expanduser() if params is not None else None
    single_file = path is not None and (path.is_file() or (path / CHECKPOINT_CONFIG).is_file())
    if single_file:
        if len(names) != 1:
            raise ValueError(f"params={params} is one model's weights, but {len(names)} models "
                             f"were asked for ({', '.join(names)}); give the params directory")
        where[names[0]] = path  # type: ignore[assignment]
    else:
        if path is not None and not path.is_dir():
            raise FileNotFoundError(
                f"params {path} does not exist; give the params directory (fill it with "
                f"`download-params --params-dir {path}`) or a params_<model>.npz file")
        for name in names:
            where[name] = find_model_params(name, path)
    return load_runner(names, where, device=device, precision=precision, chunk_size=chunk_size,
                       attention_backend=attention_backend, num_recycle=num_recycle,
                       recycle_early_stop_tolerance=recycle_early_stop_tolerance,
                       max_msa=max_msa)


# ----------------------------------------------------------------------------------------
# Targets


@dataclasses.dataclass(frozen=True)
class Target:
    """One sequence to predict: ``name`` (file-system safe), ``sequence``, FASTA header."""

    name: str
    sequence: str
    description: str


def parse_target(sequence_or_fasta: str | os.PathLike, name: str | None = None) -> Target:
    """One target from a sequence string, FASTA text or a one-record FASTA file.

    Raises:
        ValueError: no record, several records, invalid residue letters (the message names
            the position), or an empty sequence.
    """
    if isinstance(sequence_or_fasta, os.PathLike) or (
            isinstance(sequence_or_fasta, str) and "\n" not in sequence_or_fasta
            and not sequence_or_fasta.lstrip().startswith(">")
            and os.path.isfile(sequence_or_fasta)):
        sequences, descriptions = read_fasta(sequence_or_fasta)
        source = os.fspath(sequence_or_fasta)
    elif not isinstance(sequence_or_fasta, str):
        raise TypeError(f"expected a sequence, FASTA text or a FASTA path, got "
                        f"{type(sequence_or_fasta).__name__}")
    elif sequence_or_fasta.lstrip().startswith(">"):
        sequences, descriptions = parse_fasta(sequence_or_fasta, source="<FASTA text>")
        source = "FASTA text"
    else:
        text = "".join(sequence_or_fasta.split())
        if not text:
            raise ValueError("the sequence is empty; give one-letter amino-acid codes")
        sequences, descriptions = parse_fasta(f">{name or 'query'}\n{text}", source="<sequence>")
        source = "sequence"
    if len(sequences) != 1:
        raise ValueError(f"{source} holds {len(sequences)} records; predict() takes one target "
                         "- loop over uni_fold.read_targets(...) or use predict-structure")
    if name is not None:  # an explicit name is used whole, blanks become '_'
        return Target(safe_name("_".join(name.split())), sequences[0], name)
    return Target(safe_name(descriptions[0]), sequences[0], descriptions[0])


def _read_table(path: Path) -> list[tuple[str, str]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.reader(handle, delimiter=delimiter) if any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["id", "sequence"]:
        rows = rows[1:]
    out = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path}: row {number} is not 'id{delimiter}sequence': {row!r}")
        out.append((row[0].strip(), row[1].strip()))
    return out


def read_targets(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Target]:
    """Targets of FASTA files (each record one target), directories of FASTA files, or
    ColabFold-style ``id,sequence`` CSV / TSV tables.

    Raises:
        FileNotFoundError: a missing input, or a directory without FASTA files.
        ValueError: no records, invalid letters, a malformed table, or two targets with
            the same (sanitised) name.
    """
    from data_pipeline.precompute import read_chains

    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    targets: list[Target] = []
    for raw_path in paths:
        path = Path(raw_path)
        if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            rows = _read_table(path)
            if not rows:
                raise ValueError(f"{path}: no 'id,sequence' rows found")
            text = "".join(f">{i}\n{s}\n" for i, s in rows)
            sequences, descriptions = parse_fasta(text, source=str(path))
            targets += [Target(safe_name(d), s, d) for s, d in
                        zip(sequences, descriptions, strict=True)]
        else:
            targets += [Target(c.record_id, c.sequence, c.description)
                        for c in read_chains(path)]
    seen: dict[str, str] = {}
    for t in targets:
        if t.name in seen:
            raise ValueError(f"two targets are named {t.name!r} ({seen[t.name]!r} and "
                             f"{t.description!r}); give every record a unique identifier")
        seen[t.name] = t.description
    return targets


# ----------------------------------------------------------------------------------------
# Features


def server_alignments(queries: Mapping[str, str], alignments_dir: str | os.PathLike,
                      host_url: str | None = None) -> dict[str, Path]:
    """Fetch MSAs from a ColabFold MMseqs2 server (one job for all ``queries``, ``{name:
    sequence}``) into ``<alignments_dir>/<name>/colabfold.a3m``; folders that already hold
    one are reused. Returns ``{name: a3m path}``."""
    from data_pipeline.colabfold_server import ColabFoldClient, fetch_server_msas

    client = ColabFoldClient(host_url=host_url) if host_url else None
    return fetch_server_msas(queries, alignments_dir, client=client)


def make_features(
    target: Target,
    msa: str | os.PathLike | None = None,
    *,
    msa_mode: str | None = None,
    databases: DatabaseConfig | None = None,
    pipeline: DataPipeline | None = None,
    server_url: str | None = None,
) -> tuple[dict[str, np.ndarray], str | None, float]:
    """Raw features of ``target``; returns ``(features, alignments path kept or None,
    seconds)``. See :func:`predict` for the arguments."""
    start = time.perf_counter()
    mode = msa_mode or ("precomputed" if msa is not None else "single_sequence")
    if mode not in MSA_MODES:
        raise ValueError(f"msa_mode must be one of {MSA_MODES}, got {mode!r}")
    if mode == "precomputed" and msa is None:
        raise ValueError("msa_mode='precomputed' needs msa= (an alignments directory or an "
                         ".a3m file); use msa_mode='single_sequence' to predict without an MSA")
    with tempfile.TemporaryDirectory(prefix="uni_fold_msa_") as scratch:
        where = os.fspath(msa) if msa is not None else None
        if mode in ("search", "server") and where is None:
            where = os.path.join(scratch, target.name)
        if mode == "server":
            folder = Path(where)  # type: ignore[arg-type]
            server_alignments({folder.name: target.sequence}, folder.parent, server_url)
        if pipeline is None:
            pipe_mode = "precomputed" if mode == "server" else mode
            pipeline = DataPipeline(databases, msa_mode=pipe_mode)
        features = dict(pipeline.process_sequence(target.sequence, target.description, where))
        kept = where if msa is not None else None
    return features, kept, time.perf_counter() - start


# ----------------------------------------------------------------------------------------
# Relaxation


def relax_prediction(prediction: Prediction, which: str = "best", *,
                     use_gpu: bool = False) -> dict[str, float]:
    """Amber-relax the best (``which="best"``) or every (``"all"``) prediction, AF2's
    protocol (:mod:`uni_fold.relax`); fills ``prediction.relaxed``. Returns seconds per
    relaxed prediction.

    Raises:
        RuntimeError: OpenMM / pdbfixer are not installed (the ``relax`` extra).
    """
    if which not in ("best", "all"):
        raise ValueError(f"which must be 'best' or 'all', got {which!r}")
    try:
        from uni_fold.relax import AmberRelaxation
    except ImportError as err:
        from uni_fold.relax import MISSING_EXTRA

        raise RuntimeError(f"{MISSING_EXTRA} ({err})") from err
    relaxer = AmberRelaxation(use_gpu=use_gpu)
    chosen = prediction.models if which == "all" else prediction.models[:1]
    timings = {}
    for m in chosen:
        start = time.perf_counter()
        pdb_text, _, _ = relaxer.process(prot=prediction.protein_of(m.name))
        prediction.relaxed[m.name] = pdb_text
        timings[m.name] = time.perf_counter() - start
        logger.info("relaxed %s in %.1f s", m.name, timings[m.name])
    return timings


# ----------------------------------------------------------------------------------------
# Prediction


def predict(
    sequence_or_fasta: str | os.PathLike | Target,
    model: ModelRunner | None = None,
    msa: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    msa_mode: str | None = None,
    databases: DatabaseConfig | None = None,
    pipeline: DataPipeline | None = None,
    features: Mapping[str, np.ndarray] | None = None,
    server_url: str | None = None,
    num_seeds: int = 1,
    seed: int = 0,
    rank_by: str | None = None,
    relax: bool | str = False,
    max_length: int | None = None,
    on_prediction: Callable[[ModelPrediction], None] | None = None,
) -> Prediction:
    """Predict the structure of one sequence with every loaded model; nothing is written.

    Args:
        sequence_or_fasta: a sequence (``"MKTAYIAK..."``), FASTA text, a one-record FASTA
            file, or a :class:`Target`.
        model: networks from :func:`load_model` (None: ``load_model()``, i.e.
            ``model_1_ptm`` from the default params directory).
        msa: the target's alignments directory (AF2 / OpenFold / ColabFold file names) or
            one ``.a3m`` file; in ``search`` / ``server`` mode the directory searches are
            written to (None: a temporary one).
        name: the target's name (default: from the FASTA header, or ``query``).
        msa_mode: ``"precomputed"`` (default with ``msa``), ``"single_sequence"`` (default
            without), ``"search"`` (local databases, ``databases=``) or ``"server"``
            (ColabFold MMseqs2 API at ``server_url``).
        databases: search databases and template settings (``DatabaseConfig``); templates
            are used when it names a ``template_mmcif_dir``.
        pipeline: a ready ``DataPipeline`` (reused across calls); overrides ``databases``.
        features: raw features made elsewhere; skips the data pipeline.
        num_seeds: predictions per model, each with its own seed (names ``*_pred_<k>``).
        seed: the base seed (AF2's ``random_seed``).
        rank_by: ``"plddt"`` or ``"ptm"`` (None: pTM when every model has a PAE head).
        relax: False, ``"best"``/True or ``"all"``: Amber relaxation (``relax`` extra).
        max_length: refuse longer sequences (None: no limit).
        on_prediction: called after each model's prediction (progress bars).

    Returns:
        The :class:`Prediction`, models ranked best first.
    """
    total_start = time.perf_counter()
    target = sequence_or_fasta if isinstance(sequence_or_fasta, Target) \
        else parse_target(sequence_or_fasta, name)
    if max_length is not None and len(target.sequence) > max_length:
        raise ValueError(f"{target.name}: the sequence has {len(target.sequence)} residues, more "
                         f"than the maximum length {max_length}; raise --max-length or split "
                         "the sequence")
    runner = model if model is not None else load_model()
    timings: dict[str, float] = {}
    msa_dir = None
    if features is None:
        features, msa_dir, timings["features"] = make_features(
            target, msa, msa_mode=msa_mode, databases=databases, pipeline=pipeline,
            server_url=server_url)
        logger.info("%s: features in %.2f s", target.name, timings["features"])
    elif int(np.asarray(features["seq_length"]).reshape(-1)[0]) != len(target.sequence):
        raise ValueError(f"features= are for a sequence of {np.asarray(features['seq_length'])[0]}"
                         f" residues, but {target.name} has {len(target.sequence)}")
    results = runner.predict(features, num_seeds=num_seeds, seed=seed,
                             on_prediction=on_prediction)
    for m in results:
        timings[f"process_features_{m.name}"] = m.timings["process_features"]
        timings[f"predict_and_compile_{m.name}"] = m.timings["predict"]
    prediction = Prediction(
        name=target.name, description=target.description, sequence=target.sequence,
        models=results, rank_by=rank_by or default_rank_by([m.model_name for m in results]),
        features=features, timings=timings, msa_dir=msa_dir,
    )
    if relax:
        which = "best" if relax is True else str(relax)
        use_gpu = runner.device.type == "cuda"
        for m_name, seconds in relax_prediction(prediction, which, use_gpu=use_gpu).items():
            timings[f"relax_{m_name}"] = seconds
    timings["total"] = time.perf_counter() - total_start
    return prediction
