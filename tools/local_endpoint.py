"""Moved to tests/support/local_endpoint.py; kept only for tests/test_cli.py's imports (delete it with them)."""

from tests.support.local_endpoint import DUMMY_CREDENTIALS, free_port, moto_server, reset

__all__ = ["DUMMY_CREDENTIALS", "free_port", "moto_server", "reset"]
