"""The ColabFold MMseqs2 API client against a stand-in server on 127.0.0.1.

The stand-in speaks the protocol of ColabFold's ``run_mmseqs2`` (POST ``ticket/msa`` with
``q``/``mode``, poll ``ticket/<id>``, GET ``result/download/<id>``) and answers with real
alignments from ../shared/data: the ColabFold MSA of 102m_A split into a UniRef part and an
environmental part, the first rows of 1k1a_A's, and their real pdb70 m8 template hits.
"""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_pipeline.alignment_files import find_alignment_files, read_msa
from data_pipeline.colabfold_server import (
    ColabFoldClient,
    ColabFoldServerError,
    fetch_server_msas,
    merge_query_msa,
    server_mode,
    split_server_a3m,
)
from data_pipeline.parsers import parse_a3m
from tests.shared import SHARED_DATA

MAX_REQUESTS = 30  # a client that loops forever fails instead of hanging the test


def _records(text: str) -> list[tuple[str, str]]:
    records: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(">"):
            records.append((line[1:], []))
        elif line.strip():
            records[-1][1].append(line.strip())
    return [(h, "".join(s)) for h, s in records]


def _a3m(records: list[tuple[str, str]]) -> str:
    return "".join(f">{h}\n{s}\n" for h, s in records)


def _case(name: str, n_rows: int | None, n_uniref: int, m8_query: str) -> dict:
    """A real MSA (first ``n_rows`` rows) split into the server's two files."""
    rows = _records((SHARED_DATA / "msas" / name / "non_pairing.a3m").read_text())[:n_rows]
    sequence = rows[0][1]
    m8 = [line.split("\t", 1)[1] for line in
          (SHARED_DATA / "templates" / "pdb70_hits_protenix.m8").read_text().splitlines()
          if line.split("\t", 1)[0] == m8_query]
    assert m8, m8_query
    return {"sequence": sequence, "rows": rows, "uniref": rows[1:n_uniref],
            "env": rows[n_uniref:], "m8": m8}


@pytest.fixture(scope="module")
def cases() -> dict[str, dict]:
    return {"102m_A": _case("102m_A", None, 60, "102m_1"),
            "1k1a_A": _case("1k1a_A", 40, 25, "1k1a_1")}


def _result_archive(queries: list[tuple[int, str]], cases: dict[str, dict]) -> bytes:
    """The tar.gz the server builds for the submitted queries (NUL-terminated blocks)."""
    by_sequence = {c["sequence"]: c for c in cases.values()}
    uniref, env, m8 = [], [], []
    for number, sequence in queries:
        case = by_sequence[sequence]
        uniref.append(_a3m([(str(number), sequence)] + case["uniref"]) + "\x00")
        env.append(_a3m([(str(number), sequence)] + case["env"]) + "\x00")
        m8 += [f"{number}\t{row}\n" for row in case["m8"]]
    files = {"uniref.a3m": "".join(uniref), "bfd.mgnify30.metaeuk30.smag30.a3m": "".join(env),
             "pdb70.m8": "".join(m8), "msa.sh": "#!/bin/bash\n"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _State:
    def __init__(self, cases: dict[str, dict]) -> None:
        self.cases = cases
        self.submit_replies = [{"status": "PENDING", "id": "TICKET-1"}]  # last one repeats
        self.poll_statuses = ["RUNNING", "COMPLETE"]  # after the submit's PENDING
        self.fail_first = 0  # answer the first N requests with this many 503s
        self.always_429 = False
        self.not_json = False
        self.requests: list[tuple[str, str, dict]] = []
        self.forms: list[dict[str, str]] = []
        self.queries: list[tuple[int, str]] = []
        self.polls = 0
        self.lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start(self) -> tuple[_State, bool]:
        state = self.server.state  # type: ignore[attr-defined]
        with state.lock:
            state.requests.append((self.command, self.path, dict(self.headers)))
            count = len(state.requests)
        if count > MAX_REQUESTS:
            self._reply(500, b"too many requests in this test")
            return state, False
        if count <= state.fail_first:
            self._reply(503, b"busy")
            return state, False
        if state.always_429:
            self._reply(429, b"slow down")
            return state, False
        if state.not_json:
            self._reply(502, b"<html>Bad gateway</html>", "text/html")
            return state, False
        return state, True

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        state, ok = self._start()
        if not ok:
            return
        if self.path != "/ticket/msa":
            self._reply(404, b"{}")
            return
        length = int(self.headers["Content-Length"])
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
        state.forms.append(form)
        lines = form["q"].splitlines()
        state.queries = [(int(h[1:]), s) for h, s in zip(lines[::2], lines[1::2], strict=True)]
        reply = state.submit_replies[min(len(state.forms) - 1, len(state.submit_replies) - 1)]
        self._reply(200, json.dumps(reply).encode())

    def do_GET(self) -> None:  # noqa: N802
        state, ok = self._start()
        if not ok:
            return
        if self.path == "/ticket/TICKET-1":
            status = state.poll_statuses[min(state.polls, len(state.poll_statuses) - 1)]
            state.polls += 1
            self._reply(200, json.dumps({"status": status, "id": "TICKET-1"}).encode())
        elif self.path == "/result/download/TICKET-1":
            self._reply(200, _result_archive(state.queries, state.cases), "application/gzip")
        else:
            self._reply(404, b"not found", "text/plain")


@pytest.fixture()
def server(cases) -> Iterator[tuple[_State, ColabFoldClient]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State(cases)  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    client = ColabFoldClient(host_url=f"http://127.0.0.1:{httpd.server_address[1]}/",
                             timeout=5, max_retries=2, backoff=0.001, rate_limit_retries=2,
                             poll_interval=0.001, max_wait=10)
    try:
        yield httpd.state, client  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _queries(cases: dict[str, dict]) -> dict[str, str]:
    return {"102m_A": cases["102m_A"]["sequence"], "1k1a_A": cases["1k1a_A"]["sequence"],
            "myoglobin_copy": cases["102m_A"]["sequence"]}


def test_full_job_writes_one_merged_a3m_per_target(server, cases, tmp_path):
    state, client = server
    paths = fetch_server_msas(_queries(cases), tmp_path / "aln", client=client)

    # protocol: one submit (two unique sequences as >101, >102, mode env), polls, download
    methods = [(m, p) for m, p, _ in state.requests]
    assert methods == [("POST", "/ticket/msa"), ("GET", "/ticket/TICKET-1"),
                       ("GET", "/ticket/TICKET-1"), ("GET", "/result/download/TICKET-1")]
    assert state.forms == [{"q": f">101\n{cases['102m_A']['sequence']}\n"
                                 f">102\n{cases['1k1a_A']['sequence']}\n", "mode": "env"}]
    assert all(h["User-Agent"].startswith("uni-fold/") for _, _, h in state.requests)

    for name, case in (("102m_A", "102m_A"), ("myoglobin_copy", "102m_A"), ("1k1a_A", "1k1a_A")):
        path = paths[name]
        assert path == tmp_path / "aln" / name / "colabfold.a3m"
        text = path.read_text()
        assert "\x00" not in text and text.startswith(f">{name}\n")
        got = parse_a3m(text)
        want = parse_a3m(_a3m(cases[case]["rows"]))  # the real MSA, as it was before the split
        assert list(got.sequences) == list(want.sequences)
        assert [list(r) for r in got.deletion_matrix] == [list(r) for r in want.deletion_matrix]
        assert list(got.descriptions[1:]) == list(want.descriptions[1:])
        m8 = (path.parent / "pdb70.m8").read_text().splitlines()
        assert [line.split("\t", 1)[1] for line in m8] == cases[case]["m8"]
        assert all(line.startswith(f"{name}\t") for line in m8)
        # the alignments directory layout the data pipeline reads
        files = find_alignment_files(path.parent)
        assert [Path(f.path).name for f in files.msas] == ["colabfold.a3m"]
        assert len(read_msa(files.msas[0], cases[case]["sequence"])) == len(want.sequences)
    assert len(parse_a3m(paths["102m_A"].read_text())) == 98
    assert sorted(p.name for p in (tmp_path / "aln").iterdir()) == [
        "102m_A", "1k1a_A", "myoglobin_copy"]  # no archive left behind

    # a second run reuses the files; overwrite searches again
    fetch_server_msas(_queries(cases), tmp_path / "aln", client=client)
    assert len(state.requests) == 4
    fetch_server_msas({"1k1a_A": cases["1k1a_A"]["sequence"]}, tmp_path / "aln",
                      client=client, overwrite=True)
    assert state.forms[-1]["q"] == f">101\n{cases['1k1a_A']['sequence']}\n"


def test_without_environmental_databases(server, cases, tmp_path):
    state, client = server
    paths = fetch_server_msas({"102m_A": cases["102m_A"]["sequence"].lower()}, tmp_path,
                              client=client, use_env=False)
    assert state.forms[0]["mode"] == "all"
    got = parse_a3m(paths["102m_A"].read_text())
    assert len(got) == 60  # query + the UniRef rows only
    want = parse_a3m(_a3m(cases["102m_A"]["rows"][:60]))
    assert list(got.sequences) == list(want.sequences)


def test_rate_limit_then_accepted(server, cases, tmp_path):
    state, client = server
    state.submit_replies = [{"status": "RATELIMIT"}, {"status": "UNKNOWN"},
                            {"status": "PENDING", "id": "TICKET-1"}]
    fetch_server_msas({"x": cases["102m_A"]["sequence"]}, tmp_path, client=client)
    assert len(state.forms) == 3
    assert (tmp_path / "x" / "colabfold.a3m").is_file()


def test_persistent_rate_limit_is_a_clear_error(server, cases, tmp_path):
    state, client = server
    state.submit_replies = [{"status": "RATELIMIT"}]
    with pytest.raises(ColabFoldServerError, match="rate-limiting"):
        fetch_server_msas({"x": cases["102m_A"]["sequence"]}, tmp_path / "aln", client=client)
    assert len(state.forms) == client.rate_limit_retries + 1
    assert not (tmp_path / "aln").exists()


def test_http_429_is_a_rate_limit_error(server, cases, tmp_path):
    state, client = server
    state.always_429 = True
    with pytest.raises(ColabFoldServerError, match="rate-limiting"):
        fetch_server_msas({"x": cases["102m_A"]["sequence"]}, tmp_path, client=client)
    assert len(state.requests) == client.max_retries + 1


def test_job_error_is_a_clear_error(server, cases, tmp_path):
    state, client = server
    state.poll_statuses = ["PENDING", "RUNNING", "ERROR"]
    with pytest.raises(ColabFoldServerError, match="reported ERROR.*protein sequence"):
        fetch_server_msas({"x": cases["102m_A"]["sequence"]}, tmp_path / "aln", client=client)
    assert state.polls == 3
    assert not (tmp_path / "aln").exists()
    assert not any(p.endswith("download/TICKET-1") for _, p, _ in state.requests)


def test_maintenance_is_a_clear_error(server, cases, tmp_path):
    state, client = server
    state.submit_replies = [{"status": "MAINTENANCE"}]
    with pytest.raises(ColabFoldServerError, match="maintenance"):
        fetch_server_msas({"x": cases["102m_A"]["sequence"]}, tmp_path, client=client)
    assert len(state.requests) == 1


def test_server_errors_are_retried(server, cases, tmp_path):
    state, client = server
    state.fail_first = 2  # 503, 503, then the job goes through
    fetch_server_msas({"x": cases["102m_A"]["sequence"]}, tmp_path, client=client)
    assert [m for m, _, _ in state.requests[:3]] == ["POST", "POST", "POST"]
    assert (tmp_path / "x" / "colabfold.a3m").is_file()


def test_not_json_and_unreachable(server, cases, tmp_path):
    state, client = server
    state.not_json = True
    with pytest.raises(ColabFoldServerError, match="failed 3 time"):
        fetch_server_msas({"x": cases["102m_A"]["sequence"]}, tmp_path, client=client)
    # a port nobody listens on
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as closed:
        port = closed.server_address[1]
    dead = ColabFoldClient(host_url=f"http://127.0.0.1:{port}", max_retries=1, backoff=0.001,
                           timeout=2)
    with pytest.raises(ColabFoldServerError, match="failed 2 time.*--msa-mode search"):
        fetch_server_msas({"x": cases["102m_A"]["sequence"]}, tmp_path / "d", client=dead)
    assert not (tmp_path / "d").exists()


def test_split_handles_nul_separators_and_hash_headers():
    text = ("#5\t1\n>101\nMKVLA\n>hit1 desc\nMK-LA\n\x00"
            ">102\nGGGG\n>hit2\nGG-G\n\x00\n#4\t1\n>103\nAAAA\n\x00")
    blocks = split_server_a3m(text)
    assert sorted(blocks) == [101, 102, 103]
    assert blocks[101] == ">101\nMKVLA\n>hit1 desc\nMK-LA\n"
    assert blocks[103] == ">103\nAAAA\n"
    with pytest.raises(ColabFoldServerError, match="not a query record"):
        split_server_a3m(">hit\nAAAA\n\x00")


def test_merge_drops_repeated_query_and_checks_it():
    merged = merge_query_msa([">101\nMKVLA\n>a\nMK-LA\n", None, ">101\nMKVLA\n>b\nmMKVL-\n"],
                             "MKVLA", "target")
    assert merged == ">target\nMKVLA\n>a\nMK-LA\n>b\nmMKVL-\n"
    with pytest.raises(ColabFoldServerError, match="another job"):
        merge_query_msa([">101\nMKVLA\n", ">102\nGGGGG\n"], "MKVLA", "target")


def test_modes_and_bad_input(tmp_path):
    assert server_mode() == ("ticket/msa", "env")
    assert server_mode(use_env=False) == ("ticket/msa", "all")
    assert server_mode(use_filter=False) == ("ticket/msa", "env-nofilter")
    assert server_mode(False, False) == ("ticket/msa", "nofilter")
    assert server_mode(pairing="greedy") == ("ticket/pair", "pairgreedy-env")
    assert server_mode(False, pairing="complete") == ("ticket/pair", "paircomplete")
    with pytest.raises(ValueError, match="pairing"):
        server_mode(pairing="best")
    with pytest.raises(ValueError, match="http"):
        ColabFoldClient(host_url="api.colabfold.com")
    client = ColabFoldClient(host_url="http://127.0.0.1:9")  # never contacted below
    with pytest.raises(ValueError, match="not amino acids"):
        fetch_server_msas({"x": "MKV*L"}, tmp_path, client=client)
    with pytest.raises(ValueError, match="empty"):
        fetch_server_msas({"x": ""}, tmp_path, client=client)
    with pytest.raises(ValueError, match="alignments directory"):
        fetch_server_msas({"../x": "MKVL"}, tmp_path, client=client)
    with pytest.raises(ValueError, match="no sequences"):
        fetch_server_msas({}, tmp_path, client=client)
    assert list(tmp_path.iterdir()) == []
