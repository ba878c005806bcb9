"""Settings read the environment strictly and name the variable that is wrong."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from webapp import env

ROOT = Path(__file__).resolve().parents[3]


def _load_settings(tmp_path, **overrides) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    environment.update(CUPOLA_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="webapp.settings", **overrides)
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_bad_database_url_is_an_error_naming_it(tmp_path):
    result = _load_settings(tmp_path, DATABASE_URL="mysql://somewhere/db")
    assert result.returncode != 0
    assert "DATABASE_URL must start with postgres://" in result.stderr


def test_a_non_integer_upload_limit_is_an_error_naming_it(tmp_path):
    result = _load_settings(tmp_path, CUPOLA_MAX_UPLOAD_MB="lots")
    assert result.returncode != 0
    assert "CUPOLA_MAX_UPLOAD_MB must be an integer; got 'lots'" in result.stderr


def test_the_checkpoints_kept_are_a_count_or_all(tmp_path, monkeypatch):
    result = _load_settings(tmp_path, CUPOLA_KEEP_CHECKPOINTS="-1")
    assert result.returncode != 0 and "CUPOLA_KEEP_CHECKPOINTS must be at least 0" in result.stderr, result.stderr
    for raw, expected in ((" ALL ", None), ("7", 7), ("", 20)):
        monkeypatch.setenv("CUPOLA_KEEP_CHECKPOINTS", raw)
        assert env.env_count_or_all("CUPOLA_KEEP_CHECKPOINTS", 20) == expected


def test_the_days_of_prediction_log_kept_are_a_count_or_all(tmp_path):
    result = _load_settings(tmp_path, CUPOLA_KEEP_PREDICTION_LOGS="a year")
    assert result.returncode != 0 and "CUPOLA_KEEP_PREDICTION_LOGS must be an integer; got 'a year'" in result.stderr


def test_production_mode_requires_a_secret_key(tmp_path):
    result = _load_settings(tmp_path, CUPOLA_PRODUCTION="1", ALLOWED_HOSTS="cupola.example.org")
    assert result.returncode != 0
    assert "CUPOLA_SECRET_KEY must be set" in result.stderr


def test_production_settings_pass_the_deploy_check(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    environment.update(CUPOLA_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="webapp.settings",
                       CUPOLA_PRODUCTION="1", CUPOLA_SECRET_KEY="x" * 64 + "-deploy-check-key-with-entropy-0123456789",
                       ALLOWED_HOSTS="cupola.example.org")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgres://cupola:s%40cret@db.internal:5433/cupola", {"HOST": "db.internal", "PORT": "5433", "NAME": "cupola", "PASSWORD": "s@cret"}),
        ("sqlite:////var/lib/cupola/db.sqlite3", {"NAME": "/var/lib/cupola/db.sqlite3"}),
    ],
)
def test_it_parses_database_urls(url, expected):
    parsed = env.parse_database_url(url)
    for key, value in expected.items():
        assert parsed[key] == value


@pytest.mark.parametrize("url", ["postgres://host-only", "postgres://h:notaport/db", "ftp://x/y", "sqlite://"])
def test_it_rejects_malformed_database_urls(url):
    with pytest.raises(env.ConfigError, match="DATABASE_URL"):
        env.parse_database_url(url)


def test_booleans_must_be_spelled_plainly(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(env.ConfigError, match="DEBUG must be one of"):
        env.env_bool("DEBUG", False)


@pytest.mark.parametrize("given", [None, "/elsewhere/cupy"])
def test_cupy_kernels_are_cached_in_the_data_folder_unless_told_otherwise(tmp_path, given):
    environment = {k: v for k, v in os.environ.items() if k != "CUPY_CACHE_DIR"}
    environment.update(CUPOLA_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="webapp.settings")
    if given:
        environment["CUPY_CACHE_DIR"] = given
    code = "import django, os; django.setup(); print(os.environ['CUPY_CACHE_DIR'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == (given or str(tmp_path.resolve() / "cache" / "cupy"))
