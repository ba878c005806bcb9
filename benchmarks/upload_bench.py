"""Upload benchmark: a 1 GB CSV through the real web server, and the web processes' memory meanwhile.

    python benchmarks/upload_bench.py [--megabytes 1000] [--json PATH]

1. A throw-away data folder is seeded with a user, a workspace and an API token
   (``benchmarks/seed_runs.py --runs 0``); ``python manage.py up`` starts Redis, a worker and
   gunicorn on a free loopback port (``benchmarks/load_bench.py``'s ``Server``).
2. The CSV is generated while it is sent: one ``POST /api/v1/workspaces/{ws}/datasets`` with a
   multipart body of known length, written to the socket a megabyte at a time, so this process
   never holds the file either.
3. Meanwhile the resident memory (RSS) of every gunicorn process is sampled every 20 ms; the
   largest growth of one process over its RSS before the upload is the measure (target: bounded,
   not growing with the file: under 5 % of it). Two 1 MB uploads before warm the workers up.
4. The data set's ingestion on the worker is then waited for, and timed.

Prints the numbers; ``--json PATH`` writes them for ``benchmarks/run_all.py``. Asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.load_bench import Server, _free_port, machine

GROWTH_TARGET = 0.05  # of the file's size
BLOCK = 1 << 20


def _rows_block() -> bytes:
    """About a megabyte of CSV rows, repeated to make the file (sniffing and typing see real rows)."""
    rows, size, i = [], 0, 0
    while size < BLOCK:
        row = f"{i},{(i * 37) % 1000 / 7:.4f},{(i * 11) % 97},{'abcdef'[i % 6]}\n"
        rows.append(row)
        size += len(row)
        i += 1
    return "".join(rows).encode()


def _gunicorn_processes(root_pid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.Process(root_pid).children(recursive=True):
        try:
            if "gunicorn" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


class RssSampler(threading.Thread):
    def __init__(self, processes: list[psutil.Process], interval: float = 0.02):
        super().__init__(daemon=True)
        self.processes, self.interval = processes, interval
        self.before = {p.pid: p.memory_info().rss for p in processes}
        self.peak = dict(self.before)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for process in self.processes:
                try:
                    self.peak[process.pid] = max(self.peak[process.pid], process.memory_info().rss)
                except psutil.Error:
                    continue
            time.sleep(self.interval)

    def growth(self) -> int:
        return max(self.peak[pid] - self.before[pid] for pid in self.before)


def upload(base: str, token: str, workspace: str, megabytes: int) -> tuple[float, int, dict]:
    """Sends the file; returns (seconds, file bytes, the API's answer)."""
    host, port = base.removeprefix("http://").split(":")
    boundary = uuid.uuid4().hex
    header = b"id,x,k,letter\n"
    file_size = megabytes * 1_000_000
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nA gigabyte\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = _rows_block()
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    started = time.perf_counter()
    connection.putrequest("POST", f"/api/v1/workspaces/{workspace}/datasets")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + file_size + len(tail)))
    connection.endheaders()
    connection.send(head + header)
    sent = len(header)
    while sent < file_size:
        # Whole rows only, the last one cut where the size ends (its row is then shorter, still valid).
        part = block[:file_size - sent]
        if len(part) < len(block):
            part = part[:part.rfind(b"\n") + 1].ljust(file_size - sent, b"\n")
        connection.send(part)
        sent += len(part)
    connection.send(tail)
    answer = connection.getresponse()
    body = json.loads(answer.read() or b"{}")
    seconds = time.perf_counter() - started
    connection.close()
    if answer.status != 201:
        raise RuntimeError(f"the upload was answered {answer.status}: {body}")
    return seconds, file_size, body


def wait_ready(base: str, token: str, dataset_id: int, timeout: float) -> tuple[str, float]:
    """The new version's final status, and how long after the upload it came."""
    started = time.perf_counter()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    while time.perf_counter() - started < timeout:
        version = session.get(f"{base}/api/v1/datasets/{dataset_id}", timeout=30).json()["versions"][-1]
        if version.get("status") in ("ready", "failed"):
            return version["status"], time.perf_counter() - started
        time.sleep(0.2)
    return "timed out", time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1000, help="the file's size in 10^6 bytes")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="cupola-upload-"))
    env = {**os.environ, "CUPOLA_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    env.pop("DATABASE_URL", None)
    seeded = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seed_runs.py"), "--runs", "0"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600, check=True)
    seeded = json.loads(seeded.stdout.strip().splitlines()[-1])
    server = Server(data_dir, _free_port())
    try:
        server.start()
        # A small upload first: the first request to a worker loads code and fills caches, which
        # is not the file's doing.
        for _ in range(2):
            upload(server.base, seeded["token"], seeded["workspace"], 1)
        processes = _gunicorn_processes(server.process.pid)
        sampler = RssSampler(processes)
        sampler.start()
        seconds, size, body = upload(server.base, seeded["token"], seeded["workspace"], args.megabytes)
        sampler.stop.set()
        sampler.join()
        status, ingest_seconds = wait_ready(server.base, seeded["token"], body["id"], timeout=900)
    finally:
        server.stop()
    growth = sampler.growth()
    report = {
        "machine": machine(), "file_bytes": size, "upload_s": round(seconds, 2),
        "upload_mb_per_s": round(size / 1e6 / seconds, 1), "web_processes": len(processes),
        "web_rss_before_mib": round(max(sampler.before.values()) / 2**20, 1),
        "web_rss_growth_mib": round(growth / 2**20, 1), "growth_over_file": round(growth / size, 4),
        "growth_target": GROWTH_TARGET, "meets_target": growth / size < GROWTH_TARGET,
        "ingestion": status, "ingestion_s": round(ingest_seconds, 1),
    }
    print(json.dumps(report, indent=2))
    print(f"{size / 1e9:.2f} GB uploaded in {seconds:.1f} s; the largest web process grew by "
          f"{report['web_rss_growth_mib']} MiB ({report['growth_over_file']:.2%} of the file; target < 5 %); "
          f"ingestion {status} in {ingest_seconds:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
