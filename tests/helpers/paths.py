"""Where the tests find the repository, its configs, the committed fixtures and utility tables."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
CONF = ROOT / "conf"
SHARED_DATA = Path(os.environ.get("UAE_DATA_DIR", ROOT.parent / "shared" / "data" / "qasper"))
COMMITTED = sorted((ROOT / "experiments").glob("*/utilities/*.parquet"))  # the committed utility tables
