"""Hypothesis runs derandomized by default: the same examples on every run, so CI's verdict on a commit does not
depend on the draw (one random draw once failed a clean clone on an example no run before had met).
``HYPOTHESIS_PROFILE=explore pytest`` draws new examples, for hunting what the fixed ones miss."""
from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
