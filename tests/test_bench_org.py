"""bench/org.py end to end on a tiny organization: it runs, its chunks act on every target, and it replaces its
own section of the report, leaving the rest as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "# Benchmarks\n\nThe fleet benchmarks' results.\n\n"
OLD_SECTION = "## An organization at scale\n\nold figures\n\n<!-- bench/org.py: end -->\n"
AFTER = "\n## Written after it\n\nkept\n"


def test_the_organization_benchmark_runs_and_replaces_only_its_section(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text(BEFORE + OLD_SECTION + AFTER)
    command = [
        sys.executable,
        str(ROOT / "bench" / "org.py"),
        "--sweep-accounts", "2",
        "--workers", "4",
        "--accounts", "5",
        "--dispatch-accounts", "8",
        "--chunk-size", "8",
        "--latency", "0.01",
        "--out", str(report),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert completed.returncode == 0, completed.stdout + completed.stderr  # it checks every target was acted on
    text = report.read_text(encoding="utf-8")
    assert text.startswith(BEFORE) and text.endswith(AFTER) and "old figures" not in text
    assert text.count("## An organization at scale") == 1
    assert "| 6 x 4 | 24 | 3 |" in text  # the own account and 5 members, 4 regions, chunks of 8
    assert "| 9 x 4 | 36 | 5 | " in text and "not run" in text
