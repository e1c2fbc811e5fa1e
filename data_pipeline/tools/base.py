"""Running the search programs: finding binaries and databases, timeouts, errors, timing.

Every wrapper in ``data_pipeline.tools`` goes through ``run_command``: the program runs in
its own process group (so a timeout kills the helpers it started too, e.g. the shell
scripts behind ``mmseqs search``), its output is captured, a non-zero exit raises
``ToolError`` carrying the end of stderr, and the wall time is logged.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

logger = logging.getLogger(__name__)

#: Default wall-clock limit of one program run (seconds). Full-size searches
#: (jackhmmer on UniRef90 or MGnify) can take hours; this only stops a hung process.
DEFAULT_TIMEOUT_S: float = 6 * 3600.0

#: Program -> (Debian package, Bioconda package) that provides it.
PACKAGES: dict[str, tuple[str, str]] = {
    "jackhmmer": ("hmmer", "hmmer"),
    "hmmsearch": ("hmmer", "hmmer"),
    "hmmbuild": ("hmmer", "hmmer"),
    "hhblits": ("hhsuite", "hhsuite"),
    "hhsearch": ("hhsuite", "hhsuite"),
    "kalign": ("kalign", "kalign3"),
    "mmseqs": ("mmseqs2", "mmseqs2"),
}
_STDERR_TAIL_CHARS = 4000


class ToolError(RuntimeError):
    """A search program exited with an error (or did not produce its output).

    Attributes:
        program: the program's name, e.g. ``"jackhmmer"``.
        returncode: its exit status (None when it was killed on timeout).
        stderr: everything it wrote to stderr.
    """

    def __init__(self, message: str, program: str, returncode: int | None = None,
                 stderr: str = "") -> None:
        super().__init__(message)
        self.program = program
        self.returncode = returncode
        self.stderr = stderr


class ToolTimeoutError(ToolError):
    """A search program ran longer than its timeout and was killed."""


class ToolNotFoundError(FileNotFoundError):
    """A search program's executable is not installed or not where it was said to be."""


class DatabaseNotFoundError(FileNotFoundError):
    """A search database is missing."""


def install_hint(program: str) -> str:
    """How to install ``program`` (Debian and Bioconda package names)."""
    debian, conda = PACKAGES.get(program, (program, program))
    return f"install it with `apt-get install {debian}` (Debian/Ubuntu) or " \
           f"`conda install -c bioconda {conda}`"


def find_binary(program: str, binary_path: str | None = None) -> str:
    """Absolute path of ``program``'s executable.

    Args:
        program: the program's name (``"jackhmmer"``, ...), looked up on ``PATH`` when
            ``binary_path`` is None.
        binary_path: an explicit path, or a name to look up on ``PATH``.

    Raises:
        ToolNotFoundError: nothing executable there; the message says how to install it.
    """
    wanted = binary_path or program
    found = shutil.which(wanted)
    if found is None:
        where = f"at {wanted!r}" if os.sep in wanted else f"{wanted!r} on PATH"
        raise ToolNotFoundError(
            f"{program} executable not found (looked for {where}); {install_hint(program)}, "
            f"or pass binary_path= pointing at the {program} executable"
        )
    return os.path.abspath(found)


def check_file_database(path: str, program: str, what: str) -> str:
    """Raise ``DatabaseNotFoundError`` unless ``path`` is an existing file; return it."""
    if not os.path.isfile(path):
        raise DatabaseNotFoundError(
            f"{program}: {what} {path!r} does not exist; download it (AlphaFold's "
            "scripts/download_all_data.sh fetches every database) or fix the path"
        )
    return path


def check_prefix_database(prefix: str, program: str, suffixes: Sequence[str]) -> str:
    """Raise ``DatabaseNotFoundError`` unless every ``prefix + suffix`` file exists."""
    missing = [prefix + s for s in suffixes if not os.path.exists(prefix + s)]
    if missing:
        found = sorted(glob.glob(glob.escape(prefix) + "*"))[:5]
        raise DatabaseNotFoundError(
            f"{program}: database {prefix!r} is incomplete or missing: no "
            f"{', '.join(repr(m) for m in missing)} (found: {found or 'nothing'}); give the "
            "database prefix, i.e. the path without the suffixes"
        )
    return prefix


@contextlib.contextmanager
def timing(label: str) -> Iterator[dict]:
    """Log the wall time of a block; the yielded dict gets ``wall_time_s`` at the end."""
    record: dict = {}
    logger.info("Started %s", label)
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["wall_time_s"] = time.perf_counter() - start
        logger.info("Finished %s in %.3f s", label, record["wall_time_s"])


@contextlib.contextmanager
def tmpdir(program: str) -> Iterator[str]:
    """A scratch directory removed afterwards, whatever happens."""
    with tempfile.TemporaryDirectory(prefix=f"unifold_{program}_") as path:
        yield path


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_TAIL_CHARS else "..." + text[-_STDERR_TAIL_CHARS:]


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def run_command(
    cmd: Sequence[str],
    *,
    program: str,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    cwd: str | None = None,
    label: str | None = None,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion and return its captured (text) stdout and stderr.

    Args:
        cmd: the command line, ``cmd[0]`` the executable.
        program: name used in logs and errors.
        timeout_s: wall-clock limit; None for none.
        cwd: working directory.
        label: what the timing log line calls this run (default: ``program``).

    Raises:
        ToolTimeoutError: still running after ``timeout_s``; the whole process group is
            killed.
        ToolError: non-zero exit status; the message holds the command and the end of
            stderr.
    """
    cmd = [str(c) for c in cmd]
    logger.info("Launching %s", shlex.join(cmd))
    with timing(label or program):
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            stdout, stderr = process.communicate()
            text = stderr.decode("utf-8", "replace")
            raise ToolTimeoutError(
                f"{program} did not finish within {timeout_s:g} s and was stopped; raise "
                f"timeout_s or search a smaller database.\ncommand: {shlex.join(cmd)}\n"
                f"stderr:\n{_tail(text)}",
                program, None, text,
            ) from None
        except BaseException:
            _kill_group(process)
            process.communicate()
            raise
    out = stdout.decode("utf-8", "replace")
    err = stderr.decode("utf-8", "replace")
    if process.returncode != 0:
        for line in err.strip().splitlines()[-20:]:
            logger.error("%s stderr: %s", program, line)
        raise ToolError(
            f"{program} failed with exit status {process.returncode}.\ncommand: "
            f"{shlex.join(cmd)}\nstderr:\n{_tail(err) or '(empty)'}"
            + (f"\nstdout:\n{_tail(out)}" if not err.strip() else ""),
            program, process.returncode, err,
        )
    return subprocess.CompletedProcess(cmd, process.returncode, out, err)


def require_output(path: str, program: str, stderr: str = "") -> str:
    """Return ``path`` if the program wrote it, else raise ``ToolError``."""
    if not os.path.exists(path):
        raise ToolError(
            f"{program} exited normally but wrote no {os.path.basename(path)}.\nstderr:\n"
            f"{_tail(stderr) or '(empty)'}",
            program, 0, stderr,
        )
    return path


def read_output(path: str, program: str, stderr: str = "") -> str:
    """Read a file a program should have written; ``ToolError`` if it did not."""
    with open(require_output(path, program, stderr), encoding="utf-8",
              errors="replace") as handle:
        return handle.read()
