"""Settings every test process and the processes it starts share."""

from __future__ import annotations

import os
import secrets


# Ray turns token authentication on by default and, without a token, writes one to
# ~/.ray/auth_token. Every Ray node a test starts, and every driver (the pytest process and the
# `greedylr` / `ray` subprocesses), must hold the same token. Ray reads these variables when
# `ray` is first imported, so they are set here, before any test module is.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
