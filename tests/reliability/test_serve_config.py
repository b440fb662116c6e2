"""Safe to serve, in the settings the README's command reads: this machine only, no usage statistics,
no tracebacks for visitors."""

from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_served_on_localhost_without_tracebacks_or_usage_statistics() -> None:
    config = tomllib.loads(CONFIG.read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] in ("type", "none")  # no message, no trace, no paths
    assert config["browser"]["gatherUsageStats"] is False
