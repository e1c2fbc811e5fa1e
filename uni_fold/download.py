"""``download-params``: fetch DeepMind's AlphaFold 2 parameter archive and unpack it.

The archive is the one AF2's ``scripts/download_alphafold_params.sh`` fetches
(``alphafold_params_2022-12-06.tar``, CC BY 4.0): fifteen ``params_<model>.npz`` files
(``model_1`` ... ``model_5``, ``_ptm``, ``_multimer_v3``) and a LICENSE. The download

* streams into ``<params_dir>/<archive>.part`` with a progress bar and resumes a broken
  transfer with an HTTP ``Range`` request (in the same run, ``--retries`` times, or in the
  next run, since the ``.part`` file is kept);
* checks the byte count against ``Content-Length`` (a connection that closes early is
  caught), and the SHA-256 when one is given (``--sha256``; DeepMind publishes none, so
  the digest of every unpacked archive is recorded in ``.uni_fold_params.json``);
* unpacks only regular files whose names stay inside the params directory, into a
  staging folder first, then renames each file into place, so a reader never sees a
  half-written ``.npz``;
* does nothing when a previous run already unpacked the same URL (or the official files
  are all there), unless ``--force``.

The params directory is ``--params-dir``, else ``$UNI_FOLD_PARAMS``, else
``~/.cache/uni_fold/params``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from uni_fold import __version__

logger = logging.getLogger(__name__)

#: DeepMind's public copy of the parameters (as AF2's download script).
DEFAULT_URL = "https://storage.googleapis.com/alphafold/alphafold_params_2022-12-06.tar"
#: Environment variable naming the params directory.
PARAMS_ENV = "UNI_FOLD_PARAMS"
#: Record of a finished unpack, inside the params directory.
MARKER_NAME = ".uni_fold_params.json"
USER_AGENT = f"uni-fold/{__version__} (download-params; Python urllib)"

#: Every model whose weights the official archive holds.
AF2_MODEL_NAMES: tuple[str, ...] = tuple(
    f"model_{i}{suffix}" for suffix in ("", "_ptm", "_multimer_v3") for i in range(1, 6)
)

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(RuntimeError):
    """A download that failed for good (bad URL, HTTP error, size or checksum mismatch)."""


class _Transient(Exception):
    """A failure worth retrying (dropped connection, short read, server error)."""


def default_params_dir() -> Path:
    """``$UNI_FOLD_PARAMS`` if set, else ``~/.cache/uni_fold/params``."""
    env = os.environ.get(PARAMS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "uni_fold" / "params"


def params_file_name(model_name: str) -> str:
    """``params_<model_name>.npz``, AF2's file name for one model's weights."""
    return f"params_{model_name}.npz"


def find_params(params_dir: str | os.PathLike | None, model_name: str) -> Path:
    """The weights file of ``model_name`` (e.g. ``"model_1_ptm"``) in ``params_dir``.

    Args:
        params_dir: the params directory; None for the default (``default_params_dir``).
        model_name: AF2's model name, without ``params_`` and ``.npz``.

    Raises:
        ValueError: an empty model name or one that is a path.
        FileNotFoundError: the file is missing; the message names it and the
            ``download-params`` command that fetches it.
    """
    if not model_name or "/" in model_name or os.sep in model_name:
        raise ValueError(f"model name {model_name!r} is not a model name; use one of "
                         f"{', '.join(AF2_MODEL_NAMES)}")
    directory = Path(params_dir).expanduser() if params_dir is not None else default_params_dir()
    path = directory / params_file_name(model_name)
    if not path.is_file():
        raise FileNotFoundError(
            f"AlphaFold 2 parameters {params_file_name(model_name)} not found in {directory}; "
            f"fetch them with `download-params --params-dir {directory}` (several GB), or "
            f"point --params-dir / ${PARAMS_ENV} at a folder that holds them"
        )
    return path


def _archive_name(url: str) -> str:
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    if not name or name in (".", ".."):
        raise ValueError(f"--url {url!r} does not end in a file name; give the archive's URL "
                         "(e.g. .../alphafold_params_2022-12-06.tar)")
    return name


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One HTTP GET that appends to (or restarts) ``part``; returns when it is complete."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            match = _UNSATISFIED_RANGE.match(err.headers.get("Content-Range", ""))
            if match and int(match[1]) == offset:
                return  # the previous run got every byte
            part.unlink()
            raise _Transient(f"the server refused to resume at byte {offset}") from err
        if err.code >= 500 or err.code in (408, 429):
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; check the URL (--url) "
                            "or try again later") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Transient(f"cannot reach {url}: {err}") from err
    with response:
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match[1]) != offset:
                part.unlink()
                raise _Transient("the server resumed at the wrong byte; starting over")
            total = int(match[3]) if match[3] != "*" else None
            mode = "ab"
        else:
            if offset:
                logger.info("the server does not resume downloads; starting over")
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with open(part, mode) as handle, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
        ) as bar:
            try:
                while chunk := response.read(_CHUNK):
                    handle.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise _Transient(f"connection lost: {err}") from err
    size = part.stat().st_size
    if total is None:
        logger.warning("%s: the server sent no Content-Length; size not checked", url)
    elif size != total:
        raise _Transient(f"the connection closed after {size} of {total} bytes")


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming broken transfers.

    Args:
        url: http(s) URL of the file.
        dest: final path; the ``.part`` file sits next to it and is renamed when complete.
        sha256: expected hex digest; a mismatch deletes the download.
        retries: extra attempts (each resumes where the last stopped) after a dropped
            connection, short read or server error.
        timeout: seconds a connect or read may block.
        backoff: seconds before the first retry, doubled at each further one.
        progress: show a tqdm progress bar.

    Raises:
        DownloadError: an HTTP error (404 ...), retries used up (the ``.part`` file is
            kept for the next run), or a SHA-256 mismatch (nothing kept).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, timeout, progress)
            break
        except _Transient as err:
            if attempt >= retries:
                kept = part.stat().st_size if part.exists() else 0
                hint = (f"{kept} bytes kept in {part}, run the command again to resume"
                        if kept else "check the network connection and the URL (--url)")
                raise DownloadError(f"download of {url} failed after {attempt + 1} "
                                    f"attempt(s): {err}; {hint}") from err
            delay = backoff * 2**attempt
            attempt += 1
            logger.warning("%s; retrying in %.1f s (%d/%d)", err, delay, attempt, retries)
            time.sleep(delay)
    if sha256 is not None:
        digest = sha256_of(part)
        if digest != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"{url}: SHA-256 {digest} does not match the expected {sha256.lower()}; the "
                "download was deleted - check --sha256 and --url, then run again"
            )
    os.replace(part, dest)
    return dest


def _member_path(member: tarfile.TarInfo, archive: str) -> PurePosixPath | None:
    """The member's relative path, None for a directory; ValueError for anything unsafe."""
    if member.isdir():
        return None
    if not member.isfile():
        raise ValueError(f"{archive}: member {member.name!r} is not a regular file (link or "
                         "device); refusing to unpack an archive that is not a params archive")
    name = member.name
    path = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or path.is_absolute()
            or ".." in path.parts or not path.name):
        raise ValueError(f"{archive}: member {name!r} would be written outside the params "
                         "directory; refusing to unpack it - check --url")
    parts = [p for p in path.parts if p != "."]
    return PurePosixPath(*parts)


def safe_extract(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> list[Path]:
    """Unpack the regular files of a tar (plain or compressed) into ``dest_dir``.

    Every member is checked before anything is written: links, devices, absolute names and
    names with ``..`` make the whole archive rejected. Files are written to a staging
    folder inside ``dest_dir`` and renamed into place one by one.

    Returns:
        The unpacked files, in archive order.

    Raises:
        ValueError: an unsafe member (nothing is written).
        tarfile.TarError: a corrupt archive.
    """
    archive, dest_dir = os.fspath(archive), Path(dest_dir)
    with tarfile.open(archive, "r:*") as tar:
        members = [(m, rel) for m in tar.getmembers()
                   if (rel := _member_path(m, archive)) is not None]
        if not members:
            raise ValueError(f"{archive}: the archive holds no files; check --url")
        dest_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest_dir))
        try:
            for member, rel in members:
                target = staging.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # regular files always have data
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            written = []
            for _, rel in members:
                final = dest_dir.joinpath(*rel.parts)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging.joinpath(*rel.parts), final)
                written.append(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return written


def installed_files(params_dir: str | os.PathLike, url: str = DEFAULT_URL) -> list[Path] | None:
    """The files a previous unpack of ``url`` left in ``params_dir``, None if incomplete.

    Without a record of a previous run, the official archive counts as installed when all
    fifteen ``params_<model>.npz`` files are there (unpacked by hand).
    """
    params_dir = Path(params_dir)
    try:
        record = json.loads((params_dir / MARKER_NAME).read_text(encoding="utf-8"))
        if record.get("url") == url:
            files = [params_dir / name for name in record["files"]]
            return files if all(f.is_file() for f in files) else None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if url == DEFAULT_URL:
        files = [params_dir / params_file_name(m) for m in AF2_MODEL_NAMES]
        if all(f.is_file() for f in files):
            return files
    return None


def download_params(
    params_dir: str | os.PathLike | None = None,
    *,
    url: str = DEFAULT_URL,
    sha256: str | None = None,
    force: bool = False,
    keep_archive: bool = False,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
) -> list[Path]:
    """Download the parameter archive and unpack it into ``params_dir``.

    Args:
        params_dir: target folder; None for ``default_params_dir()``.
        url: the archive (tar, optionally compressed).
        sha256: expected hex SHA-256 of the archive, checked when given.
        force: download and unpack even when the files are already there.
        keep_archive: keep the downloaded archive next to the files (deleted otherwise).
        retries, timeout, backoff, progress: as ``download_file``.

    Returns:
        The unpacked (or already present) files.

    Raises:
        DownloadError: the download failed (see ``download_file``).
        ValueError: a bad URL or an archive with unsafe members (deleted, nothing unpacked).
    """
    params_dir = Path(params_dir).expanduser() if params_dir is not None else default_params_dir()
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"--sha256 {sha256!r} is not a SHA-256 digest (64 hex digits)")
    archive = params_dir / _archive_name(url)
    if not force and (present := installed_files(params_dir, url)) is not None:
        logger.info("parameters already in %s (%d files); use --force to download again",
                    params_dir, len(present))
        return present
    created = not params_dir.exists()
    params_dir.mkdir(parents=True, exist_ok=True)
    try:
        if force or not archive.is_file():
            logger.info("downloading %s into %s", url, params_dir)
            download_file(url, archive, sha256=sha256, retries=retries, timeout=timeout,
                          backoff=backoff, progress=progress)
        elif sha256 is not None and sha256_of(archive) != sha256.lower():
            archive.unlink()
            raise DownloadError(f"{archive} (kept from an earlier run) does not match "
                                f"--sha256 {sha256}; it was deleted - run again to download it")
        digest = sha256_of(archive)
        logger.info("unpacking %s (SHA-256 %s)", archive.name, digest)
        try:
            files = safe_extract(archive, params_dir)
        except (ValueError, tarfile.TarError) as err:
            archive.unlink()
            raise ValueError(f"{url}: {err}") from err
        record = {"url": url, "archive": archive.name, "sha256": digest,
                  "files": [f.relative_to(params_dir).as_posix() for f in files],
                  "unpacked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        marker_tmp = params_dir / (MARKER_NAME + ".tmp")
        marker_tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(marker_tmp, params_dir / MARKER_NAME)
        if not keep_archive:
            archive.unlink()
    except BaseException:
        if created and params_dir.is_dir() and not any(params_dir.iterdir()):
            params_dir.rmdir()
        raise
    logger.info("%d files in %s", len(files), params_dir)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``download-params [--params-dir DIR] [--url URL] [--sha256 HEX] ...``.

    Returns 0 on success, 1 when the download or unpack fails (the reason on stderr).
    """
    parser = argparse.ArgumentParser(
        prog="download-params",
        description="Download DeepMind's AlphaFold 2 parameters (CC BY 4.0, several GB) "
                    "and unpack them for predict-structure.",
    )
    parser.add_argument("--params-dir", type=Path, default=None,
                        help=f"where the params_<model>.npz files go (default: ${PARAMS_ENV} "
                             "or ~/.cache/uni_fold/params)")
    parser.add_argument("--url", default=DEFAULT_URL, help="archive URL (default: %(default)s)")
    parser.add_argument("--sha256", default=None,
                        help="expected SHA-256 of the archive (checked when given)")
    parser.add_argument("--force", action="store_true",
                        help="download and unpack even if the files are already there")
    parser.add_argument("--keep-archive", action="store_true",
                        help="keep the downloaded tar next to the unpacked files")
    parser.add_argument("--retries", type=int, default=3,
                        help="resume attempts after a dropped connection (default: 3)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a connect or read may block (default: 60)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    args = parser.parse_args(argv)
    if args.retries < 0 or args.timeout <= 0:
        parser.error("--retries must be >= 0 and --timeout > 0")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        download_params(args.params_dir, url=args.url, sha256=args.sha256, force=args.force,
                        keep_archive=args.keep_archive, retries=args.retries,
                        timeout=args.timeout, progress=not args.quiet)
    except (DownloadError, ValueError, OSError) as err:
        print(f"download-params: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
