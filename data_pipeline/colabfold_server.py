"""MSAs from a ColabFold MMseqs2 server (``--msa-mode server``).

The ColabFold API (Mirdita et al. 2022, https://api.colabfold.com) is a job queue:

1. ``POST <host>/ticket/msa`` (``ticket/pair`` for paired MSAs of complexes) with the form
   fields ``q``, a FASTA text whose records are named ``101``, ``102``, ... (one per
   unique sequence), and ``mode`` (``env``, ``all``, ``env-nofilter``, ``nofilter``;
   ``pairgreedy``/``paircomplete`` [+ ``-env``] for pairing). The reply is JSON
   ``{"id": ..., "status": ...}``; ``RATELIMIT`` or ``UNKNOWN`` means "submit again later",
   ``ERROR`` a rejected query, ``MAINTENANCE`` a server that is down.
2. ``GET <host>/ticket/<id>`` until the status leaves ``PENDING``/``RUNNING``/``UNKNOWN``:
   ``COMPLETE``, or ``ERROR``.
3. ``GET <host>/result/download/<id>``: a tar.gz with ``uniref.a3m`` (UniRef30 hits),
   ``bfd.mgnify30.metaeuk30.smag30.a3m`` (ColabFoldDB environmental hits, ``env`` modes),
   ``pdb70.m8`` (template hits, BLAST tab format) or ``pair.a3m``. Each a3m concatenates
   the alignments of all queries, each starting with the query row ``>101`` ... and
   ending with a NUL byte (``\\x00``).

``fetch_server_msas`` runs the job for a set of named sequences and writes, per sequence,
``<alignments_dir>/<name>/colabfold.a3m``: the query, its UniRef30 rows, then its
environmental rows (the repeated query row dropped), and ``pdb70.m8`` with that query's
template hits (first column renamed to the record name). ``data_pipeline.alignment_files``
reads ``colabfold.a3m`` as an extra A3M, so a later ``--msa-mode precomputed`` run reuses it.

Only the standard library is used (``urllib``); no torch.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import random
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

#: ColabFold's public server.
DEFAULT_HOST_URL = "https://api.colabfold.com"
#: Name of the merged MSA in each target's alignments directory.
MSA_FILE_NAME = "colabfold.a3m"
#: Name of the template hits (BLAST tab format) in each target's alignments directory.
TEMPLATE_HITS_FILE_NAME = "pdb70.m8"
#: Result files of an unpaired search, in merge order; the template hits; a paired search.
UNIREF_A3M = "uniref.a3m"
ENV_A3M = "bfd.mgnify30.metaeuk30.smag30.a3m"
PDB70_M8 = "pdb70.m8"
PAIR_A3M = "pair.a3m"
#: The server numbers the queries from here (the FASTA record names of ``q``).
FIRST_QUERY_ID = 101

try:
    _VERSION = importlib.metadata.version("uni-fold")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    _VERSION = "dev"
USER_AGENT = f"uni-fold/{_VERSION} (ColabFold MMseqs2 API client; Python urllib)"

_WAITING = frozenset({"PENDING", "RUNNING", "UNKNOWN"})
_RETRY_SUBMIT = frozenset({"RATELIMIT", "UNKNOWN"})
_QUERY_LETTERS = frozenset("ACDEFGHIKLMNPQRSTVWYXBZUO")


class ColabFoldServerError(RuntimeError):
    """The server refused the job, failed it, is in maintenance, rate-limits us, or cannot
    be reached."""


def server_mode(use_env: bool = True, use_filter: bool = True, pairing: str | None = None
                ) -> tuple[str, str]:
    """``(endpoint, mode)`` of a search, named as ColabFold's ``run_mmseqs2`` names them.

    Args:
        use_env: also search the environmental databases (ColabFoldDB).
        use_filter: let the server filter the hits (diversity filter) as ColabFold does.
        pairing: None for per-chain MSAs; ``"greedy"`` or ``"complete"`` for a paired MSA.
    """
    if pairing is not None:
        if pairing not in ("greedy", "complete"):
            raise ValueError(f"pairing {pairing!r} must be 'greedy', 'complete' or None")
        return "ticket/pair", f"pair{pairing}" + ("-env" if use_env else "")
    mode = ("env" if use_env else "all") if use_filter else (
        "env-nofilter" if use_env else "nofilter")
    return "ticket/msa", mode


@dataclasses.dataclass
class ColabFoldClient:
    """HTTP client of one ColabFold MMseqs2 server.

    Attributes:
        host_url: the server (no trailing ``/`` needed).
        user_agent: sent with every request; the public server asks clients to name
            themselves.
        timeout: seconds one request may block.
        max_retries: extra attempts after a network error or an HTTP 5xx.
        backoff: seconds before the first retry (doubled each time, capped at
            ``max_backoff``, plus up to 50% jitter).
        max_backoff: cap of the retry and rate-limit waits.
        rate_limit_retries: resubmissions while the server answers ``RATELIMIT``/HTTP 429.
        poll_interval: seconds between status polls (plus up to 100% jitter, as ColabFold).
        max_wait: seconds a job may stay pending/running before we give up.
    """

    host_url: str = DEFAULT_HOST_URL
    user_agent: str = USER_AGENT
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 5.0
    max_backoff: float = 120.0
    rate_limit_retries: int = 10
    poll_interval: float = 5.0
    max_wait: float = 3600.0

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.host_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"MSA server URL {self.host_url!r} must be http(s)://host[:port]; "
                             f"the public server is {DEFAULT_HOST_URL}")
        self.host_url = self.host_url.rstrip("/")

    def _wait(self, attempt: int) -> float:
        delay = min(self.backoff * 2**attempt, self.max_backoff)
        return delay * (1 + 0.5 * random.random())

    def _request(self, path: str, form: Mapping[str, str] | None = None) -> bytes:
        """GET (or POST ``form``) ``<host>/<path>``; retries network errors and 5xx."""
        url = f"{self.host_url}/{path}"
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {"User-Agent": self.user_agent}
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as err:
                if err.code < 500 and err.code != 429:
                    raise ColabFoldServerError(
                        f"MSA server {url}: HTTP {err.code} {err.reason}; check the server URL "
                        "(--msa-server-url) and the query"
                    ) from err
                problem: Exception = err
            except (urllib.error.URLError, OSError) as err:
                problem = err
            if attempt == self.max_retries:
                if isinstance(problem, urllib.error.HTTPError) and problem.code == 429:
                    _raise_for("RATELIMIT", self.host_url)
                raise ColabFoldServerError(
                    f"MSA server {url} failed {attempt + 1} time(s), last: {problem}; check the "
                    "network and the server URL, or use local databases (--msa-mode search)"
                ) from problem
            delay = self._wait(attempt)
            logger.warning("MSA server %s: %s; retrying in %.1f s", url, problem, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _json(self, path: str, form: Mapping[str, str] | None = None) -> dict:
        body = self._request(path, form)
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or "status" not in reply:
            text = body[:200].decode("utf-8", "replace")
            raise ColabFoldServerError(f"MSA server {self.host_url}/{path} did not reply with "
                                       f"a JSON status: {text!r}")
        return reply

    def submit(self, sequences: Sequence[str], mode: str, endpoint: str = "ticket/msa") -> dict:
        """Post one job (records ``101``, ``102``, ...); the server's JSON reply."""
        query = "".join(f">{FIRST_QUERY_ID + i}\n{seq}\n" for i, seq in enumerate(sequences))
        return self._json(endpoint, {"q": query, "mode": mode})

    def status(self, ticket_id: str) -> dict:
        """The JSON status of a job."""
        return self._json(f"ticket/{urllib.parse.quote(ticket_id, safe='')}")

    def download(self, ticket_id: str, dest: str | os.PathLike) -> None:
        """Save a finished job's result archive (tar.gz) to ``dest``."""
        body = self._request(f"result/download/{urllib.parse.quote(ticket_id, safe='')}")
        with open(dest, "wb") as handle:
            handle.write(body)

    def run(self, sequences: Sequence[str], mode: str, dest: str | os.PathLike,
            endpoint: str = "ticket/msa") -> None:
        """Submit (again while rate-limited), wait for the job, save its archive to ``dest``.

        Raises:
            ColabFoldServerError: ``ERROR`` (rejected query), ``MAINTENANCE``, rate limit
                beyond ``rate_limit_retries``, a job not done within ``max_wait``, or an
                unknown status.
        """
        reply = self.submit(sequences, mode, endpoint)
        for attempt in range(self.rate_limit_retries):
            if reply["status"] not in _RETRY_SUBMIT:
                break
            delay = self._wait(attempt)
            logger.warning("MSA server: %s; submitting again in %.1f s", reply["status"], delay)
            time.sleep(delay)
            reply = self.submit(sequences, mode, endpoint)
        _raise_for(reply["status"], self.host_url)
        if "id" not in reply:
            raise ColabFoldServerError(f"MSA server {self.host_url} accepted the job but sent "
                                       f"no ticket id: {reply}")
        ticket = str(reply["id"])
        logger.info("MSA server job %s: %s", ticket, reply["status"])
        start, last = time.monotonic(), reply["status"]
        while reply["status"] in _WAITING:
            if time.monotonic() - start > self.max_wait:
                raise ColabFoldServerError(
                    f"MSA server job {ticket} still {reply['status']} after {self.max_wait:.0f} s; "
                    "the server is busy - try again later")
            time.sleep(self.poll_interval * (1 + random.random()))
            reply = self.status(ticket)
            if reply["status"] != last:
                logger.info("MSA server job %s: %s", ticket, reply["status"])
                last = reply["status"]
        _raise_for(reply["status"], self.host_url)
        self.download(ticket, dest)


def _raise_for(status: str, host_url: str) -> None:
    """Raise for every status but the ones that mean 'accepted' or 'done'."""
    if status in ("COMPLETE", "PENDING", "RUNNING"):
        return
    if status == "ERROR":
        raise ColabFoldServerError(
            f"MSA server {host_url} reported ERROR: check that every query is a protein "
            "sequence (20 amino-acid letters); if it is, the server failed - try again later")
    if status == "MAINTENANCE":
        raise ColabFoldServerError(f"MSA server {host_url} is under maintenance; try again "
                                   "in a few minutes or use --msa-mode search")
    if status in _RETRY_SUBMIT:
        raise ColabFoldServerError(
            f"MSA server {host_url} is rate-limiting this client ({status}); wait before "
            "submitting more jobs, or run your own server (ColabFold's MsaServer)")
    raise ColabFoldServerError(f"MSA server {host_url} answered an unknown status {status!r}")


def split_server_a3m(text: str, source: str = "<a3m>") -> dict[int, str]:
    """Split one of the server's a3m files into the alignment of each query.

    Blocks are separated by NUL bytes; each starts with the query row ``>101`` ... .
    ``#`` lines (ColabFold's length/cardinality header) and blank lines are dropped.

    Returns:
        ``{query id: a3m text}``, each text starting with the query's record.

    Raises:
        ColabFoldServerError: a block whose first header is not a query number.
    """
    blocks: dict[int, str] = {}
    for block in text.split("\x00"):
        lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
        if not lines:
            continue
        header = lines[0][1:].split()
        if not lines[0].startswith(">") or not header or not header[0].isdigit():
            raise ColabFoldServerError(f"{source}: an alignment starts with {lines[0][:60]!r}, "
                                       "not a query record '>101'...; is it a ColabFold result?")
        query_id = int(header[0])
        blocks[query_id] = blocks.get(query_id, "") + "\n".join(lines) + "\n"
    return blocks


def _records(a3m: str) -> list[tuple[str, str]]:
    """``(header line, sequence)`` pairs of an a3m text (sequences may span lines)."""
    records: list[tuple[str, list[str]]] = []
    for line in a3m.splitlines():
        if line.startswith(">"):
            records.append((line, []))
        elif records:
            records[-1][1].append(line.strip())
    return [(header, "".join(parts)) for header, parts in records]


def merge_query_msa(blocks: Sequence[str | None], query: str, name: str) -> str:
    """One a3m from a query's blocks of several result files (None: no block).

    The query row comes first, named ``name``; the query rows repeated at the top of the
    later blocks are dropped. Every block must start with the query sequence.
    """
    merged = [f">{name}\n{query}\n"]
    for block in blocks:
        if block is None:
            continue
        records = _records(block)
        if not records or records[0][1].upper() != query:
            first = records[0][1][:30] if records else ""
            raise ColabFoldServerError(
                f"the server's alignment for {name!r} starts with {first!r}..., not the query "
                f"{query[:30]!r}...; the result belongs to another job - run again")
        merged += [f"{header}\n{sequence}\n" for header, sequence in records[1:]]
    return "".join(merged)


def _read_members(archive: str | os.PathLike) -> dict[str, str]:
    """Text of the regular files of a result tar.gz, by base name (nothing is extracted)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            files = {}
            for member in tar.getmembers():
                if member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None  # regular files always have data
                    files[os.path.basename(member.name)] = handle.read().decode("utf-8")
            return files
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as err:
        raise ColabFoldServerError(f"the MSA server's result archive is unreadable ({err}); "
                                   "run again") from err


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_queries(queries: Mapping[str, str]) -> dict[str, str]:
    checked = {}
    if not queries:
        raise ValueError("no sequences to search; give at least one FASTA record")
    for name, sequence in queries.items():
        if (not name or name in (".", "..") or "/" in name or os.sep in name
                or name.startswith(".")):
            raise ValueError(f"record name {name!r} cannot name an alignments directory; use "
                             "the sanitised FASTA record id (letters, digits, '_', '-', '.')")
        seq = sequence.strip().upper()
        bad = sorted(set(seq) - _QUERY_LETTERS)
        if not seq or bad:
            raise ValueError(f"sequence of {name!r} is empty or has letters {bad} that are not "
                             "amino acids; the MSA server takes protein sequences only")
        checked[name] = seq
    return checked


def fetch_server_msas(
    queries: Mapping[str, str],
    alignments_dir: str | os.PathLike,
    *,
    client: ColabFoldClient | None = None,
    use_env: bool = True,
    use_filter: bool = True,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Search a ColabFold server for ``queries`` and write one alignments folder each.

    Args:
        queries: ``{record name: protein sequence}``; the names become folder names.
        alignments_dir: the alignments directory; ``<alignments_dir>/<name>/`` gets
            ``colabfold.a3m`` (and ``pdb70.m8`` when the server found template hits).
        client: the server client (default: ``ColabFoldClient()``, the public server).
        use_env, use_filter: as ``server_mode``.
        overwrite: search again for names whose ``colabfold.a3m`` exists (reused otherwise).

    Returns:
        ``{name: path of colabfold.a3m}`` for every query.

    Raises:
        ValueError: an empty query set, a non-protein sequence or an unusable name.
        ColabFoldServerError: see ``ColabFoldClient.run``; nothing is written then.
    """
    queries = _check_queries(queries)
    client = client or ColabFoldClient()
    root = Path(alignments_dir)
    paths = {name: root / name / MSA_FILE_NAME for name in queries}
    todo = {n: s for n, s in queries.items() if overwrite or not paths[n].is_file()}
    if len(todo) < len(queries):
        logger.info("reusing %d MSA(s) already in %s", len(queries) - len(todo), root)
    if not todo:
        return paths
    unique = list(dict.fromkeys(todo.values()))
    endpoint, mode = server_mode(use_env, use_filter)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    fd, archive = tempfile.mkstemp(prefix=".colabfold-", suffix=".tar.gz", dir=root)
    os.close(fd)
    try:
        logger.info("MSA server %s: %d unique sequence(s), mode %s",
                    client.host_url, len(unique), mode)
        client.run(unique, mode, archive, endpoint)
        merged, hits = _split_results(_read_members(archive), todo, unique, use_env)
    except BaseException:
        if created and not any(p for p in root.iterdir() if str(p) != archive):
            shutil.rmtree(root)
        raise
    finally:
        if os.path.exists(archive):
            os.unlink(archive)
    for name, text in merged.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if name in hits:
            _write_atomic(folder / TEMPLATE_HITS_FILE_NAME, hits[name])
        elif (folder / TEMPLATE_HITS_FILE_NAME).is_file():
            (folder / TEMPLATE_HITS_FILE_NAME).unlink()  # hits of an earlier search
        _write_atomic(paths[name], text)
        logger.info("%s: %d MSA rows -> %s", name, text.count("\n>") + 1, paths[name])
    return paths


def _split_results(files: Mapping[str, str], todo: Mapping[str, str], unique: Sequence[str],
                   use_env: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Per record name: the merged a3m, and the pdb70.m8 rows (query column renamed)."""
    if UNIREF_A3M not in files:
        raise ColabFoldServerError(f"the MSA server's result has no {UNIREF_A3M} (files: "
                                   f"{sorted(files)}); run again")
    names = [UNIREF_A3M] + ([ENV_A3M] if use_env else [])
    split = {n: split_server_a3m(files[n], n) for n in names if n in files}
    rows_by_id: dict[int, list[str]] = {}
    for line in files.get(PDB70_M8, "").splitlines():
        fields = line.split("\t")
        if len(fields) > 1 and fields[0].strip().isdigit():
            rows_by_id.setdefault(int(fields[0]), []).append("\t".join(fields[1:]))
    merged, hits = {}, {}
    for name, sequence in todo.items():
        query_id = FIRST_QUERY_ID + unique.index(sequence)
        if query_id not in split[UNIREF_A3M]:
            raise ColabFoldServerError(f"the MSA server's {UNIREF_A3M} has no alignment for "
                                       f"{name!r} (query {query_id}); run again")
        merged[name] = merge_query_msa([split[n].get(query_id) for n in split], sequence, name)
        if query_id in rows_by_id:
            hits[name] = "".join(f"{name}\t{row}\n" for row in rows_by_id[query_id])
    return merged, hits
