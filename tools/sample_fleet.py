"""Moved to tests/support/sample_fleet.py; kept only for tests/test_cli.py's imports (delete it with them)."""

from tests.support.sample_fleet import LONDON_OFFICE, URL_PATH, schedule_server, seed

__all__ = ["LONDON_OFFICE", "URL_PATH", "schedule_server", "seed"]
