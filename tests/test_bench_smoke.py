"""bench/run.py end to end on a tiny fleet: it runs, writes its table, and the handler makes the minimum API calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_on_a_tiny_fleet_and_makes_the_minimum_calls(tmp_path: Path) -> None:
    report, raw = tmp_path / "benchmarks.md", tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--sizes", "200",
            "--mixes", "shared,url",
            "--xml", "lean",
            "--reps", "1",
            "--import-reps", "1",
            "--warm-calls", "2",
            "--profile", "200:distinct:lean",
            "--before", "HEAD",
            "--before-cases", "shared:lean",
            "--out", str(report),
            "--json", str(raw),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    text = report.read_text(encoding="utf-8")
    assert "| N | mix | XML |" in text and "| 200 | shared | lean |" in text and "| 200 | url | lean |" in text
    assert "## Goals" in text and "## Import time" in text and "Where the handler's CPU goes" in text
    results = json.loads(raw.read_text(encoding="utf-8"))
    assert [case["mix"] for case in results["cases"]] == ["shared", "url"]
    for case in results["cases"]:
        assert case["problems"] == []
        assert case["instances"] == 200
        assert case["calls"] == case["minimum"], case["mix"]
        assert case["calls_other"] == {}
        assert case["floor_calls"] == {op: n for op, n in case["minimum"].items() if n}  # the same calls
        assert case["starts"] + case["stops"] > 0
    assert results["cases"][0]["before_cpu_ratio"] > 0  # the code at --before ran beside it
    assert [profile["code"] for profile in results["profiles"]][-1] == "this code" and len(results["profiles"]) == 2
    assert "warm run on 1 instance(s)" in text
    url_case = results["cases"][1]
    assert url_case["url_requests"] == url_case["distinct_urls"] == 10
