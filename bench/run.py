"""Benchmarks of ec2-powercycle against a fast local EC2 endpoint: `make bench`.

For each fleet size, schedule mix (see bench/fleets.py) and XML size it seeds the
benchmark EC2 endpoint (tests/support/ec2_endpoint.py, in a process of its own), then
runs, each in a fresh client process (bench/client.py), in interleaved pairs:

* the floor: a bare boto3 loop that pages DescribeInstances (and
  DescribeAutoScalingGroups) with the scheduler's filters and page sizes and
  makes the StartInstances / StopInstances calls the fleet needs, in the
  scheduler's batches;
* the handler, at the fleet's event time;
* with --before REF, the handler of ec2_powercycle.py at git REF too (same fleet, same pairs).

XML sizes: ``full`` answers DescribeInstances as AWS does (about 4 KB an
instance); ``lean`` with only the fields the scheduler reads, so that the
scheduler's own work is not hidden behind botocore's parsing.

It reads the API calls the endpoint served and the requests the loopback
schedule server answered, compares them with the minimum, and measures the
client's wall time, CPU time and peak RSS, plus the module's import time next
to a bare `import boto3`. It prints a table and writes docs/benchmarks.md.

    python bench/run.py                                   # the full run (~30 min on 2 cores)
    python bench/run.py --sizes 1000 --mixes shared,url --xml lean   # a quick subset

Only 127.0.0.1 is ever contacted; everything started is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import py_compile
import queue
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import fleets  # noqa: E402

import ec2_powercycle  # noqa: E402
from tests.support.local_endpoint import DUMMY_CREDENTIALS, stop_process  # noqa: E402
from tests.support.sample_fleet import ScheduleHandler, serve_schedules  # noqa: E402

SIZES = (10_000, 100_000)
WARM_SIZE = 1  # instances of the warm-invocation figure: what a call costs beyond its work
WARM_BUDGET_MS = 50.0  # CPU of a warm one-instance run
LOAD = [0.0]  # the 1-minute load average when the run started
SNAPSHOT = ROOT  # main() points this at a copy of ec2_powercycle.py taken when the run starts
COMMAND = ["python", "bench/run.py"]  # main() adds its arguments: the report says how it was made
BEFORE: list[tuple[str, Path]] = []  # with --before REF: (REF, a directory holding ec2_powercycle.py at REF)
CLIENT_TIMEOUT = 900.0
LAMBDA_MIN_MIB = 128
IMPORT_BUDGET_MS = 30.0
XML_SIZES = ("lean", "full")
# Client CPU over the floor's, by (XML size, mix): issue 21's on lean XML, where the scheduler's own work shows.
CPU_GOALS = {("lean", "shared"): 1.10, ("lean", "distinct"): 1.3, ("full", "shared"): 1.25, ("full", "distinct"): 2.0}
GOAL_SIZES = (10_000, 100_000)


# --- Processes and servers --------------------------------------------------------


def _pin(pid: int, cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(pid, {cpus[cpu % len(cpus)]})


@contextlib.contextmanager
def endpoint_process(pin: bool, timeout: float = 30.0) -> Iterator[str]:
    """tests/support/ec2_endpoint.py in its own process on 127.0.0.1; yield its URL; stop it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.ec2_endpoint", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        if pin:
            _pin(process.pid, 1)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"benchmark endpoint did not start within {timeout:g} s") from None
        if not line.startswith("READY "):
            raise RuntimeError(f"benchmark endpoint failed to start (exit code {process.poll()})")
        yield line.split()[1]
    finally:
        stop_process(process)


def _admin(url: str, path: str, payload: Any = None, timeout: float = 120.0) -> Any:
    """GET (no payload) or POST JSON to the endpoint's /_bench/ paths."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def _clean_environment(module_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EC2_POWERCYCLE_"))}
    env["BENCH_MODULE_DIR"] = str(module_dir or SNAPSHOT)
    return env


def client_environment(endpoint: str, schedules: str, module_dir: Path | None = None) -> dict[str, str]:
    """A clean environment: dummy credentials, the local endpoint, no instance metadata lookups."""
    env = _clean_environment(module_dir)
    env.update(DUMMY_CREDENTIALS)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "EC2_POWERCYCLE_URL_ALLOW": schedules + fleets.URL_PREFIX,
            "EC2_POWERCYCLE_MAX_EVENT_AGE_MINUTES": "0",  # the fleets' event time is fixed (fleets.EVENT_TIME)
        }
    )
    return env


def run_client(args: list[str], env: dict[str, str], pin: bool) -> dict[str, Any]:
    """bench/client.py in a fresh process; its JSON line."""
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "client.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    if pin:
        _pin(process.pid, 0)
    try:
        out, err = process.communicate(timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise RuntimeError(f"client {args[0]} took longer than {CLIENT_TIMEOUT:g} s") from None
    if process.returncode != 0:
        raise RuntimeError(f"client {args[0]} failed ({process.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


# --- Measurements -----------------------------------------------------------------


def minimum_calls(instances: int, starts: int, stops: int, groups: int = 0) -> dict[str, int]:
    return {
        "DescribeInstances": max(1, math.ceil(instances / ec2_powercycle.DESCRIBE_PAGE_SIZE)),
        "StartInstances": math.ceil(starts / ec2_powercycle.ACTION_BATCH_SIZE),
        "StopInstances": math.ceil(stops / ec2_powercycle.ACTION_BATCH_SIZE),
        # Every region is asked for its tagged Auto Scaling groups: one page when none carries the tag.
        "DescribeAutoScalingGroups": max(1, math.ceil(groups / ec2_powercycle.GROUP_PAGE_SIZE)),
    }


def seed(endpoint: str, fleet: fleets.Fleet, xml: str) -> dict[str, list[str]]:
    """Seed the endpoint with the fleet; the IDs the floor starts and stops (what the handler should)."""
    ids = _admin(endpoint, "/_bench/seed", {"instances": fleet.instances, "xml": xml}, timeout=600)["ids"]
    return {
        action: [instance_id for instance_id, expected in zip(ids, fleet.expected, strict=True) if expected == action]
        for action in ("start", "stop")
    }


def minimum_group_calls(groups: int, starts: int, stops: int) -> dict[str, int]:
    """A region of `groups` tagged groups and no instances: pages, then each group acted on."""
    return {
        **minimum_calls(0, 0, 0, groups),
        "UpdateAutoScalingGroup": starts + stops,  # one group a call: the API takes one
        "CreateOrUpdateTags": stops,  # a stop saves the sizes first
        "DeleteTags": starts,  # a start removes them after
        "DescribeScalingActivities": 0,  # read only for a group out of step with its schedule: none here
    }


def groups_case(size: int, endpoint: str, schedules: str, pin: bool) -> dict[str, Any]:
    """`size` tagged Auto Scaling groups in one region, a quarter each due to start and to stop at the event time."""
    groups = fleets.build_groups(size)
    _admin(endpoint, "/_bench/seed", {"instances": [], "groups": groups.groups}, timeout=600)
    _admin(endpoint, "/_bench/reset", {})
    result = run_client(["handler", "--time", fleets.EVENT_TIME], client_environment(endpoint, schedules), pin)
    calls = _admin(endpoint, "/_bench/counts")["calls"]
    minimum = minimum_group_calls(size, groups.starts, groups.stops)
    problems = []
    if (result["groups_started"], result["groups_stopped"]) != (groups.starts, groups.stops):
        problems.append(
            f"handler started/stopped {result['groups_started']}/{result['groups_stopped']} groups, "
            f"expected {groups.starts}/{groups.stops}"
        )
    if result["errors"]:
        problems.append(f"{result['errors']} errors: {result['error_samples']}")
    return {
        "groups": size,
        "starts": result["groups_started"],
        "stops": result["groups_stopped"],
        "calls": {op: calls.get(op, 0) for op in minimum},
        "calls_other": {op: n for op, n in calls.items() if op not in minimum},
        "minimum": minimum,
        "wall": result["wall"],
        "cpu": result["cpu"],
        "rss_mib": result["rss_kib"] / 1024,
        "problems": problems,
    }


def bench_case(
    mix: str,
    size: int,
    reps: int,
    endpoint: str,
    schedules: str,
    urls: type[ScheduleHandler],
    pin: bool,
    xml: str = "full",
    before: bool = False,
) -> dict[str, Any]:
    fleet = fleets.build(mix, size, schedules)
    urls.documents = {path: json.dumps(doc).encode() for path, doc in fleet.documents.items()}
    actions = seed(endpoint, fleet, xml)
    env = client_environment(endpoint, schedules)
    before_env = client_environment(endpoint, schedules, BEFORE[0][1]) if before and BEFORE else None
    floors, handlers, befores = [], [], []
    floor_calls: dict[str, int] = {}
    handler_calls: dict[str, int] = {}
    url_requests: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        actions_file = Path(tmp) / "actions.json"
        actions_file.write_text(json.dumps(actions), encoding="utf-8")
        floor_args = [
            "floor",
            "--tag",
            fleets.TAG,
            "--page-size",
            str(ec2_powercycle.DESCRIBE_PAGE_SIZE),
            "--states",
            ",".join(ec2_powercycle.READ_STATES),
            "--actions",
            str(actions_file),
            "--batch-size",
            str(ec2_powercycle.ACTION_BATCH_SIZE),
            "--group-page-size",
            str(ec2_powercycle.GROUP_PAGE_SIZE),
        ]
        for _ in range(reps):
            _admin(endpoint, "/_bench/reset", {})
            floors.append(run_client(floor_args, env, pin))
            floor_calls = _admin(endpoint, "/_bench/counts")["calls"]
            _admin(endpoint, "/_bench/reset", {})
            urls.requests.clear()
            handlers.append(run_client(["handler", "--time", fleets.EVENT_TIME], env, pin))
            handler_calls = _admin(endpoint, "/_bench/counts")["calls"]
            url_requests = Counter(urls.requests)
            if before_env is not None:
                _admin(endpoint, "/_bench/reset", {})
                befores.append(run_client(["handler", "--time", fleets.EVENT_TIME], before_env, pin))
    last = handlers[-1]
    expected_instances = size
    problems = []
    if last["instances"] != expected_instances:
        problems.append(f"handler read {last['instances']} instances, expected {expected_instances}")
    if floors[-1]["instances"] != expected_instances:
        problems.append(f"floor read {floors[-1]['instances']} instances, expected {expected_instances}")
    if (last["started"], last["stopped"]) != (fleet.starts, fleet.stops):
        problems.append(
            f"handler started/stopped {last['started']}/{last['stopped']}, expected {fleet.starts}/{fleet.stops}"
        )
    minimum = minimum_calls(size, fleet.starts, fleet.stops)
    floor_cpu = statistics.median(r["cpu"] for r in floors)
    handler_cpu = statistics.median(r["cpu"] for r in handlers)
    # Medians of the pairs' ratios: a floor and a handler run side by side see the same load on the host.
    ratios = [h["cpu"] / f["cpu"] for f, h in zip(floors, handlers, strict=True) if f["cpu"]]
    before_ratios = [b["cpu"] / f["cpu"] for f, b in zip(floors, befores, strict=False) if f["cpu"]]
    return {
        "mix": mix,
        "size": size,
        "xml": xml,
        "reps": reps,
        "instances": last["instances"],
        "starts": last["started"],
        "stops": last["stopped"],
        "skipped": last["skipped"],
        "errors": last["errors"],
        "expected_starts": fleet.starts,
        "expected_stops": fleet.stops,
        "calls": {op: handler_calls.get(op, 0) for op in minimum},
        "calls_other": {op: n for op, n in handler_calls.items() if op not in minimum},
        "minimum": minimum,
        "floor_calls": floor_calls,
        "url_requests": sum(url_requests.values()),
        "distinct_urls": fleet.distinct_urls,
        "floor_wall": statistics.median(r["wall"] for r in floors),
        "handler_wall": statistics.median(r["wall"] for r in handlers),
        "floor_cpu": floor_cpu,
        "handler_cpu": handler_cpu,
        "cpu_ratio": statistics.median(ratios) if ratios else float("nan"),
        "before_cpu_ratio": statistics.median(before_ratios) if before_ratios else None,
        "before_cpu_all": [r["cpu"] for r in befores],
        "before_rss_mib": max((r["rss_kib"] for r in befores), default=0) / 1024,
        "floor_cpu_all": [r["cpu"] for r in floors],
        "handler_cpu_all": [r["cpu"] for r in handlers],
        "handler_rss_mib": max(r["rss_kib"] for r in handlers) / 1024,
        "handler_baseline_rss_mib": max(r["baseline_rss_kib"] for r in handlers) / 1024,
        "floor_rss_mib": max(r["rss_kib"] for r in floors) / 1024,
        "problems": problems,
    }


def measure_warm(
    size: int, calls: int, endpoint: str, schedules: str, urls: type[ScheduleHandler], pin: bool
) -> dict[str, Any]:
    """Handler calls in one process on a small fleet: the first (a cold start's) against the later (warm) ones."""
    fleet = fleets.build("shared", size, schedules)
    urls.documents = {}
    seed(endpoint, fleet, "full")
    arguments = ["warm", "--calls", str(calls), "--time", fleets.EVENT_TIME]
    result = run_client(arguments, client_environment(endpoint, schedules), pin)
    later_cpu, later_wall = result["cpus"][1:], result["walls"][1:]
    return {
        "size": size,
        "calls": calls,
        "instances": result["instances"],
        "first_cpu": result["cpus"][0],
        "first_wall": result["walls"][0],
        "warm_cpu": statistics.median(later_cpu),
        "warm_wall": statistics.median(later_wall),
    }


def measure_imports(reps: int) -> dict[str, Any]:
    """Import times in fresh processes: the module from a .pyc, and compiled from source.

    From source is what a cold start pays when the deployment has no .pyc for the
    module (Lambda's code directory is read-only, so Python cannot write one there).
    """
    env = _clean_environment()
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cache = SNAPSHOT / "__pycache__"
    shutil.rmtree(cache, ignore_errors=True)
    source = [run_client(["imports"], env, pin=False) for _ in range(reps + 1)][1:]  # the first warms caches
    top = _import_breakdown(env)
    py_compile.compile(str(SNAPSHOT / "ec2_powercycle.py"), doraise=True)
    compiled = [run_client(["imports"], env, pin=False) for _ in range(reps + 1)][1:]
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "reps": reps,
        "boto3_ms": statistics.median(r["boto3"] for r in compiled + source) * 1000,
        "ours_ms": statistics.median(r["ours"] for r in compiled) * 1000,
        "ours_source_ms": statistics.median(r["ours"] for r in source) * 1000,
        "requests_loaded": any(r["requests_loaded"] for r in compiled + source),
        "top": top,
    }


def _import_breakdown(env: dict[str, str]) -> list[tuple[str, float]]:
    """The modules ec2_powercycle itself brings in after boto3, by cumulative import time (ms)."""
    code = f"import sys; sys.path.insert(0, {str(SNAPSHOT)!r}); import boto3; import ec2_powercycle"
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    rows: list[tuple[str, float]] = []
    after_boto3 = False
    for line in completed.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        self_us, cumulative_us, name = int(fields[0]), int(fields[1]), fields[2].strip()
        depth = (len(fields[2]) - len(fields[2].lstrip()) - 1) // 2
        if name == "boto3" and depth == 0:
            after_boto3 = True
        elif after_boto3 and depth <= 1:
            rows.append((name, (self_us if name == "ec2_powercycle" else cumulative_us) / 1000))
    own = [row for row in rows if row[0] == "ec2_powercycle"]
    others = sorted((row for row in rows if row[0] != "ec2_powercycle"), key=lambda row: -row[1])[:8]
    return [(f"{name} (its own code)", ms) for name, ms in own] + others


def profile_case(
    mix: str,
    size: int,
    endpoint: str,
    schedules: str,
    urls: type[ScheduleHandler],
    xml: str = "full",
    before: tuple[str, Path] | None = None,
) -> dict[str, Any]:
    """cProfile of one handler run; with `before` (REF, directory) of ec2_powercycle.py at REF instead."""
    fleet = fleets.build(mix, size, schedules)
    urls.documents = {path: json.dumps(doc).encode() for path, doc in fleet.documents.items()}
    seed(endpoint, fleet, xml)
    env = client_environment(endpoint, schedules, before[1] if before else None)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.txt"
        result = run_client(["profile", "--time", fleets.EVENT_TIME, "--out", str(out)], env, True)
    rows = result["functions"]
    total = sum(row["tottime"] for row in rows) or 1.0
    groups = result["groups"]
    ours = sorted(
        (row for row in rows if row["function"].startswith("ec2_powercycle.py")), key=lambda row: -row["cumtime"]
    )[:12]
    top = sorted(rows, key=lambda row: -row["tottime"])[:12]
    return {
        "mix": mix,
        "size": size,
        "xml": xml,
        "code": f"before: ec2_powercycle.py at {before[0]}" if before else "this code",
        "total": total,
        "groups": sorted(((name, t / total) for name, t in groups.items()), key=lambda g: -g[1]),
        "cpu": result["cpu_profiled"],
        "ours": [(row["function"], row["calls"], row["cumtime"], row["cumtime"] / total) for row in ours],
        "top": [(row["function"], row["calls"], row["tottime"], row["tottime"] / total) for row in top],
    }


# --- Report -----------------------------------------------------------------------


def _versions() -> dict[str, str]:
    versions = {"Python": platform.python_version()}
    for package in ("boto3", "botocore", "croniter", "requests"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _machine() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return f"{model}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}"


def _code_state() -> str:
    """Which ec2_powercycle.py was measured: commit, uncommitted changes, content hash."""
    source = ROOT / "ec2_powercycle.py"
    digest = hashlib.sha256((SNAPSHOT / source.name).read_bytes()).hexdigest()[:12]
    if digest != hashlib.sha256(source.read_bytes()).hexdigest()[:12]:
        return f"a snapshot of ec2_powercycle.py taken at the start (sha256 {digest}); the file changed since"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", source.name], capture_output=True, text=True, cwd=ROOT, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"ec2_powercycle.py sha256 {digest}"
    state = " with uncommitted changes" if dirty else ""
    return f"ec2_powercycle.py at commit {commit or 'unknown'}{state} (sha256 {digest}), copied at the start"


def _calls_cell(case: dict[str, Any], op: str) -> str:
    return f"{case['calls'][op]} ({case['minimum'][op]})"


def table(cases: list[dict[str, Any]]) -> list[str]:
    head = (
        "| N | mix | XML | starts / stops | Describe (min) | Start (min) | Stop (min) | calls / min | URL requests / "
        "distinct URLs | wall s: floor / handler | CPU s: floor / handler | CPU ratio (before) | CPU µs per "
        "instance: floor / handler | peak RSS MiB (after imports) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for case in cases:
        total = sum(case["calls"].values()) + sum(case["calls_other"].values())
        minimum = sum(case["minimum"].values())
        urls = f"{case['url_requests']} / {case['distinct_urls']}" if case["distinct_urls"] else "-"
        before = f" ({case['before_cpu_ratio']:.2f}x)" if case.get("before_cpu_ratio") else ""
        lines.append(
            f"| {case['size']:,} | {case['mix']} | {case['xml']} | {case['starts']:,} / {case['stops']:,} "
            f"| {_calls_cell(case, 'DescribeInstances')} | {_calls_cell(case, 'StartInstances')} "
            f"| {_calls_cell(case, 'StopInstances')} | {total / minimum:.2f} | {urls} "
            f"| {case['floor_wall']:.2f} / {case['handler_wall']:.2f} "
            f"| {case['floor_cpu']:.2f} / {case['handler_cpu']:.2f} | {case['cpu_ratio']:.2f}x{before} "
            f"| {case['floor_cpu'] / case['size'] * 1e6:.0f} / {case['handler_cpu'] / case['size'] * 1e6:.0f} "
            f"| {case['handler_rss_mib']:.0f} ({case['handler_baseline_rss_mib']:.0f}) |"
        )
    return lines


def goals(cases: list[dict[str, Any]], imports: dict[str, Any] | None, warm: dict[str, Any] | None = None) -> list[str]:
    lines = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    for case in cases:
        total = sum(case["calls"].values()) + sum(case["calls_other"].values())
        minimum = sum(case["minimum"].values())
        extra = {op: case["calls"][op] - case["minimum"][op] for op in case["minimum"]}
        extra = {op: n for op, n in extra.items() if n}
        why = f" (extra: {extra})" if extra else ""
        lines.append(
            f"- API calls = minimum, N={case['size']:,} {case['mix']} {case['xml']}: {verdict(total == minimum)}, "
            f"{total} / {minimum} = {total / minimum:.2f}x{why}"
        )
    for case in cases:
        if case["distinct_urls"]:
            ok = case["url_requests"] == case["distinct_urls"]
            lines.append(
                f"- one request per distinct URL, N={case['size']:,} {case['mix']} {case['xml']}: {verdict(ok)}, "
                f"{case['url_requests']} requests / {case['distinct_urls']} URLs"
            )
    for case in cases:
        goal = CPU_GOALS.get((case["xml"], case["mix"]))
        if goal is None or case["size"] not in GOAL_SIZES:
            continue
        ok = case["cpu_ratio"] <= goal
        by = "" if ok else f"; over by {case['cpu_ratio'] / goal:.2f}x the goal"
        before = f"; before: {case['before_cpu_ratio']:.2f}x" if case.get("before_cpu_ratio") else ""
        lines.append(
            f"- client CPU <= {goal}x floor, N={case['size']:,} {case['mix']} {case['xml']}: {verdict(ok)}, "
            f"{case['cpu_ratio']:.2f}x (median of {case['reps']} pairs' ratios; medians {case['handler_cpu']:.2f} s / "
            f"{case['floor_cpu']:.2f} s){by}{before}"
        )
    for case in cases:
        if case["size"] != 100_000:
            continue
        ok = case["handler_rss_mib"] <= LAMBDA_MIN_MIB
        lines.append(
            f"- peak memory <= {LAMBDA_MIN_MIB} MiB at N=100,000 {case['mix']} {case['xml']}: {verdict(ok)}, "
            f"{case['handler_rss_mib']:.0f} MiB ({case['handler_rss_mib'] / LAMBDA_MIN_MIB:.2f}x; "
            f"{case['handler_baseline_rss_mib']:.0f} MiB after imports, the floor peaks at "
            f"{case['floor_rss_mib']:.0f} MiB)"
        )
    if imports:
        ok = imports["ours_ms"] < IMPORT_BUDGET_MS
        lines.append(
            f"- importing ec2_powercycle adds < {IMPORT_BUDGET_MS:g} ms to `import boto3`, with a .pyc: "
            f"{verdict(ok)}, +{imports['ours_ms']:.1f} ms on {imports['boto3_ms']:.0f} ms "
            f"({imports['ours_ms'] / IMPORT_BUDGET_MS:.2f}x the budget; requests loaded at import: "
            f"{'yes' if imports['requests_loaded'] else 'no'})"
        )
        fits = imports["ours_source_ms"] < IMPORT_BUDGET_MS
        lines.append(
            f"- for comparison, not a goal: compiled from source (no .pyc in the deployment), "
            f"+{imports['ours_source_ms']:.1f} ms ({imports['ours_source_ms'] / IMPORT_BUDGET_MS:.2f}x the budget): "
            + ("byte code in the zip no longer pays for itself" if fits else "why `package.sh` ships byte code")
        )
    if warm:
        ok = warm["warm_cpu"] * 1000 < WARM_BUDGET_MS
        lines.append(
            f"- a warm run on {warm['instances']:,} instance(s) takes < {WARM_BUDGET_MS:g} ms of CPU: {verdict(ok)}, "
            f"{warm['warm_cpu'] * 1000:.1f} ms (median of {warm['calls'] - 1} warm calls)"
        )
    return lines


def report(
    cases: list[dict[str, Any]],
    imports: dict[str, Any] | None,
    profiles: list[dict[str, Any]],
    started: datetime,
    elapsed: float,
    warm: dict[str, Any] | None = None,
    groups: dict[str, Any] | None = None,
) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in _versions().items())
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python bench/run.py`); do not edit by hand.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC (run took {elapsed / 60:.1f} min): `{shlex.join(COMMAND)}`",
        f"- Machine: {_machine()}",
        f"- Versions: {versions}",
        f"- Code: {_code_state()}",
        f"- Load average (1 min) at start / end: {LOAD[0]:.2f} / {os.getloadavg()[0]:.2f} (other work on the "
        "machine inflates times; the ratios compare runs made side by side)",
        f"- Event time {fleets.EVENT_TIME}, window 15 min, catch-up 60 min (the defaults), page size "
        f"{ec2_powercycle.DESCRIBE_PAGE_SIZE}, batch size {ec2_powercycle.ACTION_BATCH_SIZE}.",
        "",
        "## Method",
        "",
        "- The EC2 endpoint is `tests/support/ec2_endpoint.py`, in a process of its own (pinned to one core, the "
        "client to the other), answering EC2 XML of two sizes: `full`, real EC2 XML (about 4 KB per instance, as "
        "AWS's), and `lean`, only the fields the scheduler reads (ID, state, type, launch time, state reason, tags: "
        "about 0.4 KB), so that the scheduler's own work is not hidden behind botocore's parsing; "
        "`tests/test_bench_endpoint.py` checks that the handler gets the same results from it as from moto.",
        "- Every client run is a fresh process (`bench/client.py`). Timed: from creating the EC2 client to the end "
        "of the run; imports are timed apart. CPU is the client process's `time.process_time()` (all threads); "
        "peak memory is its peak RSS, `VmHWM` (imports included; the figure in brackets is after imports, "
        "before the run).",
        "- The floor is a bare boto3 loop paging DescribeInstances with the scheduler's filters (`tag-key`, "
        "`instance-state-name`) and page size against the same endpoint and fleet, and DescribeAutoScalingGroups "
        "(`tag-key`), then making the same StartInstances / StopInstances calls in the scheduler's batches (the IDs "
        "given to it): the minimum calls below. It is plain "
        "boto3, which parses every timestamp in the responses with dateutil; the handler's session leaves them as text "
        "(`ec2_powercycle.aws_session`: it reads none), which is why the handler can cost less than the floor. "
        "The floor pages with botocore's paginator, which keeps the previous page (about 12 MiB at 1,000 "
        "instances) alive while it reads the next; the handler pages by hand and holds one page at a time.",
        "- Minimum API calls: ceil(N / page size) DescribeInstances + ceil(starts / batch) StartInstances + "
        "ceil(stops / batch) StopInstances + one DescribeAutoScalingGroups (no group carries the tag).",
        "- Mixes (bench/fleets.py), each about half due: `shared` one inline schedule (start due; half stopped); "
        "`distinct` every instance its own schedule and one of 60 zones; `url` ten schedule URLs on a loopback "
        "server; `mixed` 40% four team schedules, 30% distinct, 20% URLs, 10% protected / Auto Scaling / bad tag. "
        "Each fleet also holds untagged (1 in 20) and terminated (1 in 100) instances the filters drop.",
        "- Each repetition runs the floor and the handler one after the other (and, where a before column shows, the "
        "handler of the earlier code third) on the same fleet: the host is shared, so CPU time, not wall time, "
        "is compared, within a pair. The CPU ratio is the median of the pairs' ratios; times are medians over the "
        "repetitions shown; calls and memory are from the handler runs.",
        "",
        "## Results",
        "",
        *table(cases),
        "",
        "Repetitions: " + ", ".join(f"{c['size']:,} {c['mix']} {c['xml']}: {c['reps']}" for c in cases) + ".",
        "",
    ]
    problems = [f"- N={c['size']:,} {c['mix']} {c['xml']}: {p}" for c in cases for p in c["problems"]]
    if problems:
        out += ["Problems seen:", "", *problems, ""]
    if imports:
        out += [
            "## Import time",
            "",
            f"Median of {imports['reps']} fresh processes each: `import boto3` {imports['boto3_ms']:.1f} ms; "
            f"`import ec2_powercycle` after it +{imports['ours_ms']:.1f} ms from a .pyc, "
            f"+{imports['ours_source_ms']:.1f} ms compiled from source (what a cold start pays when the zip "
            "carries no .pyc for the module: Lambda cannot write one). What the module brings in beyond boto3 "
            "(`python -X importtime`, from source, cumulative ms, one run):",
            "",
            "| module | ms |",
            "|---|---|",
            *(f"| {name} | {ms:.1f} |" for name, ms in imports["top"]),
            "",
        ]
    if warm:
        out += [
            "## Warm invocations",
            "",
            f"{warm['calls']} handler calls in one process on a fleet of {warm['instances']:,} (`shared`, dry runs "
            "so that each call does the same work), as a warm Lambda execution environment makes them: the first "
            "builds the boto3 session and loads the EC2 model; later ones reuse the session, the clients and any "
            "assumed roles' credentials, and keep only the run's memo per call.",
            "",
            "| call | CPU s | wall s |",
            "|---|---|---|",
            f"| first (cold) | {warm['first_cpu']:.3f} | {warm['first_wall']:.3f} |",
            f"| later (warm, median) | {warm['warm_cpu']:.3f} | {warm['warm_wall']:.3f} |",
            "",
        ]
    if groups:
        out += [*groups_section(groups), ""]
    out += ["## Goals", "", *goals(cases, imports, warm), ""]
    for prof in profiles:
        out += [
            f"## Where the handler's CPU goes: N={prof['size']:,} {prof['mix']}, {prof['xml']} XML, {prof['code']} "
            "(cProfile)",
            "",
            f"Profiled total {prof['total']:.2f} s (cProfile slows Python code down, so shares matter, not times).",
            "",
            "| share | where (own time; a builtin's time goes to its caller's file) |",
            "|---|---|",
            *(f"| {share * 100:.0f}% | {name} |" for name, share in prof["groups"] if share >= 0.005),
            "",
            "| ec2_powercycle function | calls | cumulative s | share |",
            "|---|---|---|---|",
            *(f"| `{f}` | {n:,} | {t:.2f} | {s * 100:.0f}% |" for f, n, t, s in prof["ours"]),
            "",
            "| top functions by own time | calls | own s | share |",
            "|---|---|---|---|",
            *(f"| `{f}` | {n:,} | {t:.2f} | {s * 100:.0f}% |" for f, n, t, s in prof["top"]),
            "",
        ]
    return "\n".join(out)


def groups_section(case: dict[str, Any]) -> list[str]:
    total, minimum = sum(case["calls"].values()) + sum(case["calls_other"].values()), sum(case["minimum"].values())
    calls = ", ".join(f"{op} {n} ({case['minimum'][op]})" for op, n in case["calls"].items())
    return [
        "## Auto Scaling groups",
        "",
        f"{case['groups']:,} tagged groups in one region (bench/fleets.py `build_groups`: a quarter at zero with "
        "saved sizes and due to start, a quarter running and due to stop, the rest already as their schedules "
        f"want), no instances; one handler run at {fleets.EVENT_TIME}: {case['starts']:,} started, "
        f"{case['stops']:,} stopped, wall {case['wall']:.2f} s, CPU {case['cpu']:.2f} s, peak RSS "
        f"{case['rss_mib']:.0f} MiB. Calls (minimum in brackets): {calls}; {total} in all against a minimum of "
        f"{minimum}. Deciding costs the pages alone (ceil(N / {ec2_powercycle.GROUP_PAGE_SIZE})); acting costs "
        "one UpdateAutoScalingGroup a group (the API takes one group) and one tag call (a stop saves the sizes, "
        "a start removes them). The endpoint answers at once: against AWS each call adds its round trip.",
    ]


# The sections bench/org.py and bench/slow_urls.py write in the same report (their SECTION headings).
LATER_SECTIONS = ("## An organization at scale", "## Slow schedule URLs")


def _kept_sections(report: Path) -> str:
    """What follows this script's part of the report being replaced, kept as it is: the sections
    bench/org.py and bench/slow_urls.py write, and any written by hand after them."""
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    starts = [text.index(heading) for heading in LATER_SECTIONS if heading in text]
    return "\n" + text[min(starts) :].rstrip("\n") + "\n" if starts else ""


# --- Main -------------------------------------------------------------------------


def _list(text: str, allowed: tuple[Any, ...], kind: type) -> list[Any]:
    items = [kind(item.strip().replace("_", "")) for item in text.split(",") if item.strip()]
    bad = [item for item in items if kind is str and item not in allowed]
    if bad:
        raise SystemExit(f"unknown {bad}; expected some of {', '.join(map(str, allowed))}")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated fleet sizes")
    parser.add_argument("--mixes", default=",".join(fleets.MIXES), help="comma-separated mixes")
    parser.add_argument("--xml", default=",".join(XML_SIZES), help="comma-separated XML sizes: lean, full")
    parser.add_argument("--before", default="", help="a git ref: also run its ec2_powercycle.py (see --before-cases)")
    parser.add_argument(
        "--before-cases", default="distinct:lean", help="MIX:XML cases in which --before's handler runs too"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per case below 100,000 instances")
    parser.add_argument("--reps-large", type=int, default=3, help="repetitions per lean case at 100,000+ instances")
    parser.add_argument(
        "--reps-large-full", type=int, default=1, help="repetitions per full-XML case at 100,000+ instances"
    )
    parser.add_argument("--import-reps", type=int, default=15, help="fresh processes for import time (0: skip)")
    parser.add_argument(
        "--profile",
        default="10000:distinct:lean",
        help="SIZE:MIX[:XML] cases to profile with cProfile ('' none); with --before, its code's too",
    )
    parser.add_argument("--warm-calls", type=int, default=6, help="handler calls in one warm process (0: skip)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="report file ('' none)")
    parser.add_argument("--json", default="", help="also write the raw results here")
    parser.add_argument("--no-pin", action="store_true", help="do not pin endpoint and client to separate cores")
    parser.add_argument("--groups", type=int, default=2000, help="tagged Auto Scaling groups in one region (0: skip)")
    parser.add_argument(
        "--groups-only", action="store_true", help="run only the groups case and print it (no report written)"
    )
    args = parser.parse_args(argv)
    COMMAND[2:] = sys.argv[1:] if argv is None else argv
    global SNAPSHOT
    SNAPSHOT = Path(tempfile.mkdtemp(prefix="ec2-powercycle-bench-"))
    shutil.copy2(ROOT / "ec2_powercycle.py", SNAPSHOT / "ec2_powercycle.py")
    if args.before:
        before = SNAPSHOT / "before"
        before.mkdir()
        source = subprocess.run(
            ["git", "show", f"{args.before}:ec2_powercycle.py"], capture_output=True, cwd=ROOT, check=True
        ).stdout
        (before / "ec2_powercycle.py").write_bytes(source)
        commit = subprocess.run(
            ["git", "rev-parse", "--short", args.before], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
        BEFORE[:] = [(f"commit {commit}", before)]
    try:
        return _main(args)
    finally:
        shutil.rmtree(SNAPSHOT, ignore_errors=True)


def _main(args: argparse.Namespace) -> int:
    LOAD[0] = os.getloadavg()[0]
    sizes = _list(args.sizes, (), int)
    mixes = _list(args.mixes, fleets.MIXES, str)
    xml_sizes = _list(args.xml, XML_SIZES, str)
    before_cases = {tuple(item.strip().split(":")) for item in args.before_cases.split(",") if item.strip()}
    profile_cases = [
        (int(fields[0]), fields[1], fields[2] if len(fields) > 2 else "full")
        for fields in (item.strip().split(":") for item in args.profile.split(",") if item.strip())
    ]
    pin = not args.no_pin
    started = datetime.now(UTC)
    clock = time.monotonic()
    cases: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    if args.groups_only:
        with endpoint_process(pin) as endpoint, serve_schedules() as (schedules, _):
            case = groups_case(args.groups, endpoint, schedules, pin)
        print("\n".join(groups_section(case)))
        print(json.dumps(case, indent=1))
        return 1 if case["problems"] else 0
    groups = None
    with endpoint_process(pin) as endpoint, serve_schedules() as (schedules, urls):
        if args.groups > 0:
            print(f"{args.groups:,} Auto Scaling groups ...", flush=True)
            groups = groups_case(args.groups, endpoint, schedules, pin)
        for size in sizes:
            for xml in xml_sizes:
                for mix in mixes:
                    reps = args.reps if size < 100_000 else args.reps_large if xml == "lean" else args.reps_large_full
                    before = (mix, xml) in before_cases and bool(BEFORE)
                    runs = "floor, handler, before" if before else "floor, handler"
                    print(f"N={size:,} {mix} {xml}: {reps} x ({runs}) ...", end=" ", flush=True)
                    case = bench_case(mix, size, reps, endpoint, schedules, urls, pin, xml, before)
                    cases.append(case)
                    then = f", before {case['before_cpu_ratio']:.2f}x" if case["before_cpu_ratio"] else ""
                    print(
                        f"CPU {case['floor_cpu']:.2f} / {case['handler_cpu']:.2f} s ({case['cpu_ratio']:.2f}x{then}), "
                        f"calls {sum(case['calls'].values())} (min {sum(case['minimum'].values())}), "
                        f"RSS {case['handler_rss_mib']:.0f} MiB",
                        flush=True,
                    )
                    for problem in case["problems"]:
                        print(f"  problem: {problem}", flush=True)
        for size, mix, xml in profile_cases:
            for code in [*BEFORE, None]:
                print(f"profiling N={size:,} {mix} {xml} {code[0] if code else 'this code'} ...", flush=True)
                profiles.append(profile_case(mix, size, endpoint, schedules, urls, xml, code))
        warm = None
        if args.warm_calls > 1:
            print(f"warm invocations: {args.warm_calls} handler calls in one process, N={WARM_SIZE} ...", flush=True)
            warm = measure_warm(WARM_SIZE, args.warm_calls, endpoint, schedules, urls, pin)
    imports = None
    if args.import_reps > 0:
        print(f"import time: {args.import_reps} fresh processes ...", flush=True)
        imports = measure_imports(args.import_reps)
    text = report(cases, imports, profiles, started, time.monotonic() - clock, warm, groups)
    print()
    print("\n".join(table(cases)))
    print()
    print("\n".join(goals(cases, imports, warm)))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n" + _kept_sections(out), encoding="utf-8")
        print(f"\nwrote {args.out}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"cases": cases, "imports": imports, "profiles": profiles}, indent=1), encoding="utf-8"
        )
    return 1 if any(case["problems"] for case in cases) or (groups and groups["problems"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
