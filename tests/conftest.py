"""Settings every test package shares."""

from __future__ import annotations

import os

from hypothesis import settings

# In CI the fuzz tests draw the same examples every run: a failure there is reproducible
# from the log, never a new draw that fails one run in many. Locally they explore freely.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
