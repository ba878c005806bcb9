"""`python manage.py up`: everything Cupola needs on one machine, in one command."""

from __future__ import annotations

import fcntl
import os
import signal
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from webapp import env
from webapp.core import housekeeping, runtime


class Command(BaseCommand):
    help = "Start Cupola on this machine: database, Redis, one worker and the web server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("CUPOLA_HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("CUPOLA_PORT", "8000"))
        parser.add_argument("--concurrency", default=os.environ.get("CUPOLA_WORKER_CONCURRENCY", "2"))
        parser.add_argument("--web-workers", default=os.environ.get("CUPOLA_WEB_WORKERS", "2"))

    def handle(self, *args, **options):
        try:
            port = env.parse_int("--port", str(options["port"]), minimum=1, maximum=65535)
            concurrency = env.parse_int("--concurrency", str(options["concurrency"]), minimum=1, maximum=64)
            web_workers = env.parse_int("--web-workers", str(options["web_workers"]), minimum=1, maximum=64)
        except env.ConfigError as error:
            raise CommandError(str(error)) from None
        host = options["host"]
        data_dir = settings.DATA_DIR
        for folder in (data_dir, data_dir / "logs", data_dir / "tmp", settings.MEDIA_ROOT):
            folder.mkdir(parents=True, exist_ok=True)
        lock = open(data_dir / "up.lock", "w")  # noqa: SIM115 (held for the life of the command)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CommandError(f"another `up` is already running on {data_dir}") from None
        os.environ["CUPOLA_DATA_DIR"] = str(data_dir)

        call_command("migrate", interactive=False, verbosity=0)
        housekeeping.clean_tmp()  # partial uploads left by a web server that was killed
        self.children: list[runtime.Child] = []
        self.stopping = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            self._start_all(data_dir, host, port, concurrency, web_workers)
            self._announce(host, port, data_dir)
            self._supervise()
        finally:
            self._stop_all()
            lock.close()
        self.stdout.write("Cupola stopped.")

    def _start_all(self, data_dir, host, port, concurrency, web_workers):
        logs = data_dir / "logs"
        if not os.environ.get("REDIS_URL"):
            socket_path = settings.REDIS_SOCKET
            socket_path.unlink(missing_ok=True)  # a stale socket from a crash would confuse the wait
            redis = runtime.Child("redis", runtime.redis_server_argv(data_dir, socket_path), logs / "redis.log")
            redis.start()
            self.children.append(redis)
            runtime.wait_for_socket(socket_path, redis)
        queues = ["default", "cpu"] + (["gpu"] if _gpu_visible() else [])
        # On one machine the worker shares the cores with the web server: training runs at a lower
        # priority so pages and live charts stay quick while a run uses every core.
        worker = runtime.Child("worker", runtime.worker_argv(data_dir, queues, concurrency), logs / "worker.log",
                               niceness=10)
        worker.start()
        self.children.append(worker)
        web = runtime.Child("web", runtime.web_argv(host, port, web_workers), logs / "web.log")
        web.start()
        self.children.append(web)
        runtime.wait_for_http(host, port, web)

    def _announce(self, host, port, data_dir):
        url = f"http://{host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"Cupola is running at {url}"))
        if get_user_model().objects.exists():
            self.stdout.write(f"Log in at {url}accounts/login/")
        else:
            self.stdout.write(f"First start: open {url}accounts/signup/ — the first account becomes the administrator.")
        self.stdout.write(f"Data folder: {data_dir}  (logs in {data_dir / 'logs'})")
        self.stdout.write("Press Ctrl-C to stop.")
        self.stdout.flush()

    def _supervise(self):
        while not self.stopping:
            for child in self.children:
                if not child.running() and not self.stopping:
                    if child.name != "worker" or child.restarts >= 3:
                        raise CommandError(f"{child.name} exited with code {child.process.returncode}; see {child.log_path}")
                    # A worker that died (killed, out of memory) is replaced; its runs resume from checkpoints.
                    self.stderr.write(f"worker exited with code {child.process.returncode}; starting a new one")
                    child.restarts += 1
                    time.sleep(2 ** child.restarts)
                    child.start()
            time.sleep(0.5)

    def _on_signal(self, signum, frame):
        self.stopping = True

    def _stop_all(self):
        for child in reversed(self.children):
            child.stop(grace=15.0 if child.name == "worker" else 10.0)


def _gpu_visible() -> bool:
    try:
        import trainer.backend

        return bool(trainer.backend.gpu_available())
    except Exception:  # noqa: BLE001 - no usable GPU, whatever the reason
        return False
