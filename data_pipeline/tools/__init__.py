"""Wrappers of the MSA and template search programs (real binaries, one module each).

``Jackhmmer``, ``HHBlits``, ``HHSearch``, ``Hmmbuild`` / ``Hmmsearch``, ``Kalign`` and
``MMseqs`` run the Debian packages' executables (``hmmer``, ``hhsuite``, ``kalign``,
``mmseqs2``) with AF2's (for MMseqs2: ColabFold's) default settings. Failures raise the
errors of ``data_pipeline.tools.base``: ``ToolNotFoundError`` (not installed),
``DatabaseNotFoundError``, ``ToolError`` (non-zero exit, with stderr) and
``ToolTimeoutError``.
"""

from data_pipeline.tools.base import (
    DEFAULT_TIMEOUT_S,
    DatabaseNotFoundError,
    ToolError,
    ToolNotFoundError,
    ToolTimeoutError,
    find_binary,
    run_command,
)
from data_pipeline.tools.hhblits import HHBlits
from data_pipeline.tools.hhsearch import HHSearch
from data_pipeline.tools.hmmsearch import Hmmbuild, Hmmsearch
from data_pipeline.tools.jackhmmer import Jackhmmer
from data_pipeline.tools.kalign import Kalign
from data_pipeline.tools.mmseqs import MMseqs

__all__ = [
    "DEFAULT_TIMEOUT_S", "DatabaseNotFoundError", "HHBlits", "HHSearch", "Hmmbuild",
    "Hmmsearch", "Jackhmmer", "Kalign", "MMseqs", "ToolError", "ToolNotFoundError",
    "ToolTimeoutError", "find_binary", "run_command",
]
