"""Load benchmark: the real server (`manage.py up`) under dashboard browsing and live-metrics polling.

Loopback only, bounded in time and in request count, stops by itself:

1. A throw-away data folder is seeded with a workspace of ``--runs`` finished runs
   (``benchmarks/seed_runs.py``).
2. ``python manage.py up`` starts Redis, one worker and gunicorn on a free loopback port.
3. Queue-to-start: ``--samples`` one-epoch runs are created one after another on the idle
   worker through the REST API; each one's ``started_at - created_at`` is measured.
4. A long run is started; while it trains, first the pollers alone for half of ``--duration`` (a
   control), then ``--metrics-clients`` clients poll its live metrics
   JSON the way the run page does (``live.json?since=<last epoch>``) and ``--dashboard-clients``
   clients load the workspace dashboard, each waiting ``--interval`` seconds between requests,
   for ``--duration`` seconds or ``--max-requests`` requests, whichever comes first.
5. The long run is cancelled and the server stopped. Then, in this process, each view is
   rendered once more under ``CaptureQueriesContext`` to count its SQL queries.

Prints a table; ``--json PATH`` writes the numbers for ``benchmarks/run_all.py``.

    python benchmarks/load_bench.py              # about a minute
    python benchmarks/load_bench.py --duration 10 --runs 200   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
TARGETS_MS = {"dashboard": 150.0, "live_metrics": 200.0}
QUEUE_TO_START_TARGET_S = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _iris_spec(epochs: int) -> dict:
    return {
        "input_shape": [4],
        "layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                   {"type": "Dense", "units": 3, "activation": "softmax"}],
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                    "metrics": ["accuracy"]},
        "fit": {"epochs": epochs, "batch_size": 16, "seed": 1},
    }


class Server:
    """``manage.py up`` on a data folder, in its own process group, stopped with SIGTERM."""

    def __init__(self, data_dir: Path, port: int):
        self.data_dir, self.port = data_dir, port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = data_dir / "up.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        env = {**os.environ, "CUPOLA_DATA_DIR": str(self.data_dir), "DJANGO_SETTINGS_MODULE": "webapp.settings"}
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it)
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "up", "--port", str(self.port), "--concurrency", "1", "--web-workers", "2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"`manage.py up` exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                health = requests.get(f"{self.base}/api/v1/health", timeout=2).json()
                if health.get("worker_count"):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the server did not come up within {timeout:.0f} s:\n"
                           f"{self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _login(base: str, username: str, password: str) -> dict:
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(f"{base}/accounts/login/", data={"username": username, "password": password,
                                                            "csrfmiddlewaretoken": token},
                          headers={"Referer": f"{base}/accounts/login/"}, timeout=10, allow_redirects=False)
    if answer.status_code != 302:
        raise RuntimeError(f"log-in failed with {answer.status_code}")
    return session.cookies.get_dict()


def _api(base: str, token: str):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _create_run(api, base: str, seeded: dict, epochs: int, name: str) -> dict:
    answer = api.post(f"{base}/api/v1/workspaces/{seeded['workspace']}/runs", json={
        "dataset_version": seeded["dataset_version"], "spec": _iris_spec(epochs), "name": name,
        "data_config": {"target": "species"}, "device": "cpu"}, timeout=30)
    if answer.status_code != 201:
        raise RuntimeError(f"creating a run failed: {answer.status_code} {answer.text[:500]}")
    return answer.json()


def _wait_run(api, base: str, run_id: int, until, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"{base}/api/v1/runs/{run_id}", timeout=30).json()
        if until(run):
            return run
        time.sleep(0.1)
    raise RuntimeError(f"run {run_id} did not reach the expected state in {timeout:.0f} s: {run}")


def measure_queue_to_start(api, base: str, seeded: dict, samples: int) -> dict:
    delays = []
    for i in range(samples):
        created = _create_run(api, base, seeded, epochs=1, name=f"queue-to-start {i + 1}")
        run = _wait_run(api, base, created["id"], lambda r: r["status"] in ("succeeded", "failed", "cancelled"))
        if run["status"] != "succeeded":
            raise RuntimeError(f"a one-epoch run did not succeed: {run['status']} {run['reason']}")
        started = datetime.fromisoformat(run["started_at"])
        delays.append((started - datetime.fromisoformat(run["created_at"])).total_seconds())
    return {"samples": samples, "median_s": statistics.median(delays), "max_s": max(delays), "min_s": min(delays),
            "all_s": [round(d, 4) for d in delays]}


class Client(threading.Thread):
    def __init__(self, kind: str, url_of, cookies: dict, interval: float, stop: threading.Event, budget, results):
        super().__init__(daemon=True)
        self.kind, self.url_of, self.interval, self.stop, self.budget, self.results = \
            kind, url_of, interval, stop, budget, results
        self.session = requests.Session()
        self.session.cookies.update(cookies)
        # A fresh connection per request: gunicorn closes idle keep-alive connections after 2 s, and a
        # request that races that close fails in `requests` where a browser would silently retry.
        self.session.headers["Connection"] = "close"
        self.state: dict = {}

    def run(self) -> None:
        while not self.stop.is_set() and self.budget():
            url = self.url_of(self.state)
            started = time.perf_counter()
            error = None
            try:
                answer = self.session.get(url, timeout=30)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    error = f"HTTP {answer.status_code}"
                elif self.kind == "live_metrics":
                    epochs = answer.json()["series"]["epoch"]
                    if epochs:
                        self.state["since"] = epochs[-1]
            except (requests.RequestException, ValueError, KeyError) as exc:
                elapsed = time.perf_counter() - started
                error = f"{type(exc).__name__}: {str(exc)[:120]}"
            self.results.append((self.kind, elapsed * 1000, error))
            self.stop.wait(self.interval)


def run_load(base: str, cookies: dict, seeded: dict, run_id: int, *, metrics_clients: int, dashboard_clients: int,
             duration: float, interval: float, max_requests: int) -> tuple[list, float]:
    results: list = []
    stop = threading.Event()
    ws = seeded["workspace"]

    def live_url(state):
        return f"{base}/w/{ws}/runs/{run_id}/live.json?since={state.get('since', 0)}"

    def dashboard_url(state):
        return f"{base}/w/{ws}/"

    def budget():
        return len(results) < max_requests

    clients = [Client("live_metrics", live_url, cookies, interval, stop, budget, results)
               for _ in range(metrics_clients)]
    clients += [Client("dashboard", dashboard_url, cookies, interval, stop, budget, results)
                for _ in range(dashboard_clients)]
    started = time.perf_counter()
    for client in clients:
        client.start()
        time.sleep(interval / max(1, len(clients)))  # spread the clients over one interval
    while time.perf_counter() - started < duration and budget():
        time.sleep(0.1)
    stop.set()
    for client in clients:
        client.join(timeout=40)
    return results, time.perf_counter() - started


def summarise(results: list, elapsed: float) -> dict:
    summary = {}
    for kind in ("dashboard", "live_metrics"):
        rows = [r for r in results if r[0] == kind]
        ok = [ms for _, ms, error in rows if error is None]
        errors = [error for _, _, error in rows if error is not None]
        summary[kind] = {"requests": len(rows), "errors": len(errors), "error_kinds": sorted(set(errors)),
                         "p50_ms": round(_percentile(ok, 50), 1), "p95_ms": round(_percentile(ok, 95), 1),
                         "max_ms": round(max(ok), 1) if ok else None,
                         "per_second": round(len(rows) / elapsed, 1), "target_p95_ms": TARGETS_MS[kind]}
        summary[kind]["meets_target"] = bool(ok) and not errors and summary[kind]["p95_ms"] < TARGETS_MS[kind]
    return summary


def count_queries(data_dir: Path, seeded: dict, run_id: int) -> dict:
    """Each view rendered once in this process, its SQL queries counted (the profile of the load)."""
    os.environ["CUPOLA_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client as TestClient
    from django.test.utils import CaptureQueriesContext

    client = TestClient(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=seeded["username"]))
    profile = {}
    ws = seeded["workspace"]
    for kind, url in (("dashboard", f"/w/{ws}/"), ("live_metrics", f"/w/{ws}/runs/{run_id}/live.json?since=0")):
        client.get(url)  # warm caches and imports
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            answer = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
        profile[kind] = {"status": answer.status_code, "queries": len(queries),
                         "in_process_ms": round(elapsed, 1), "bytes": len(answer.content)}
    return profile


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def print_table(report: dict) -> None:
    print(f"\nLoad benchmark — {report['date']} — {report['machine']}")
    print(f"{report['seed']['runs']} seeded runs; {report['config']['metrics_clients']} live-metrics clients + "
          f"{report['config']['dashboard_clients']} dashboard clients, {report['config']['interval']} s between a "
          f"client's requests, {report['elapsed_s']} s\n")
    print(f"{'endpoint':<14}{'requests':>9}{'req/s':>8}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
          f"{'target p95':>12}{'queries':>9}  ok")
    for kind, row in report["latency"].items():
        queries = report["queries"].get(kind, {}).get("queries", "")
        print(f"{kind:<14}{row['requests']:>9}{row['per_second']:>8}{row['errors']:>8}{row['p50_ms']:>9}"
              f"{row['p95_ms']:>9}{row['max_ms']!s:>9}{'< ' + str(int(row['target_p95_ms'])):>12}{queries!s:>9}  "
              f"{'yes' if row['meets_target'] else 'NO'}")
    row = report["live_metrics_alone"]
    print(f"{'(pollers alone, no dashboard clients):':<40}")
    print(f"{'live_metrics':<14}{row['requests']:>9}{row['per_second']:>8}{row['errors']:>8}{row['p50_ms']:>9}"
          f"{row['p95_ms']:>9}{row['max_ms']!s:>9}{'< ' + str(int(row['target_p95_ms'])):>12}{'':>9}  "
          f"{'yes' if row['meets_target'] else 'NO'}")
    q = report["queue_to_start"]
    print(f"\nqueue-to-start on an idle worker ({q['samples']} runs): median {q['median_s']:.3f} s, "
          f"max {q['max_s']:.3f} s (target < {QUEUE_TO_START_TARGET_S} s): "
          f"{'yes' if q['meets_target'] else 'NO'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Cupola load benchmark (loopback only, bounded).")
    parser.add_argument("--runs", type=int, default=1000, help="finished runs seeded in the workspace")
    parser.add_argument("--metrics-clients", type=int, default=20)
    parser.add_argument("--dashboard-clients", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds each client waits between requests (the run page polls every 2 s)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (at most 300)")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=5, help="runs timed for queue-to-start")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (its path is printed)")
    args = parser.parse_args(argv)
    args.duration = min(args.duration, 300.0)

    data_dir = Path(tempfile.mkdtemp(prefix="cupola-load-"))
    env = {**os.environ, "CUPOLA_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    env.pop("DATABASE_URL", None)
    seed_out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seed_runs.py"), "--runs", str(args.runs)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    if seed_out.returncode != 0:
        print(seed_out.stderr[-3000:], file=sys.stderr)
        return 1
    seeded = json.loads(seed_out.stdout.strip().splitlines()[-1])
    print(f"seeded {seeded['runs']} runs in {seeded['seconds']} s into {data_dir}", flush=True)

    server = Server(data_dir, _free_port())
    try:
        server.start()
        api = _api(server.base, seeded["token"])
        cookies = _login(server.base, seeded["username"], seeded["password"])
        queue_to_start = measure_queue_to_start(api, server.base, seeded, args.samples)
        queue_to_start["meets_target"] = queue_to_start["max_s"] < QUEUE_TO_START_TARGET_S
        print(f"queue-to-start: {queue_to_start['all_s']}", flush=True)
        long_run = _create_run(api, server.base, seeded, epochs=100_000, name="load: training under load")
        _wait_run(api, server.base, long_run["id"], lambda r: r["status"] == "running" and r["epochs_done"] >= 2)
        # Control: the pollers alone first, so a slow dashboard cannot hide behind (or cause) slow polling.
        alone, alone_elapsed = run_load(server.base, cookies, seeded, long_run["id"],
                                        metrics_clients=args.metrics_clients, dashboard_clients=0,
                                        duration=args.duration / 2, interval=args.interval,
                                        max_requests=args.max_requests // 2)
        results, elapsed = run_load(server.base, cookies, seeded, long_run["id"], metrics_clients=args.metrics_clients,
                                    dashboard_clients=args.dashboard_clients, duration=args.duration,
                                    interval=args.interval, max_requests=args.max_requests)
        trained = api.get(f"{server.base}/api/v1/runs/{long_run['id']}", timeout=30).json()
        api.post(f"{server.base}/api/v1/runs/{long_run['id']}/cancel", timeout=30)
        _wait_run(api, server.base, long_run["id"], lambda r: r["status"] not in ("queued", "running"), timeout=60)
    finally:
        server.stop()
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "command": "python benchmarks/load_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {"metrics_clients": args.metrics_clients, "dashboard_clients": args.dashboard_clients,
                   "interval": args.interval, "duration": args.duration, "max_requests": args.max_requests},
        "seed": {"runs": seeded["runs"], "epochs_per_run": seeded["epochs"]},
        "elapsed_s": round(elapsed, 1), "latency": summarise(results, elapsed), "queue_to_start": queue_to_start,
        "live_metrics_alone": summarise(alone, alone_elapsed)["live_metrics"],
        "training_under_load": {"epochs_done": trained["epochs_done"]},
        "queries": count_queries(data_dir, seeded, long_run["id"]),
    }
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.keep:
        print(f"data folder kept: {data_dir}")
    else:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
