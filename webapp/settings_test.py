"""Settings for the test suite: the real settings, on a throw-away data folder.

The folder is chosen before the real settings load, and exported, so the worker and web
processes that integration tests start see the same database file and Redis socket.
"""

import os
import tempfile

os.environ.setdefault("CUPOLA_DATA_DIR", tempfile.mkdtemp(prefix="cupola-test-"))

from webapp.settings import *

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
