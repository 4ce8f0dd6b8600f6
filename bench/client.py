"""One measured client run, in a fresh process started by bench/run.py.

    python bench/client.py floor --actions actions.json  # the floor: a bare boto3 loop (see floor_run)
    python bench/client.py handler --time 2026-11-23T08:07:00Z
    python bench/client.py profile --time ... --out profile.txt
    python bench/client.py imports  # import times of boto3 and of ec2_powercycle after it
    python bench/client.py warm --calls 6 --time ...  # handler calls in one process (a warm Lambda)

The endpoint comes from AWS_ENDPOINT_URL (and settings from EC2_POWERCYCLE_*),
as in Lambda. Imports are done before the clock starts (import time is measured
on its own); the timed part of both runs includes creating the EC2 client.
Prints one JSON line: wall and CPU seconds of the timed part, peak RSS (KiB) of
the process, and what the run saw.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/run.py measures a snapshot of ec2_powercycle.py taken when it starts (others may edit the tree meanwhile).
MODULE_DIR = os.environ.get("BENCH_MODULE_DIR") or str(ROOT)


def import_snapshot() -> Any:
    """Import ec2_powercycle from MODULE_DIR (with its .pyc there, if any), whatever else is on sys.path.

    By file location: an editable install of the project, or a checkout that is
    the working directory, would otherwise shadow the snapshot.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("ec2_powercycle", os.path.join(MODULE_DIR, "ec2_powercycle.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ec2_powercycle"] = module
    spec.loader.exec_module(module)
    return module


def _rss_kib() -> int:
    """Peak RSS of this process image (KiB).

    VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve, so a client forked
    from a big parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def floor_run(
    tag: str, page_size: int, states: list[str], actions: str, batch_size: int, group_page_size: int
) -> dict[str, Any]:
    """Only what any scheduler must do: page through the tagged instances and Auto Scaling groups once,
    then make the same StartInstances / StopInstances calls as the scheduler, in batches (the IDs come
    from the file `actions`, {"start": [...], "stop": [...]}, read before the clock starts)."""
    import boto3

    todo: dict[str, list[str]] = {"start": [], "stop": []}
    if actions:
        todo.update(json.loads(Path(actions).read_text(encoding="utf-8")))

    baseline = _rss_kib()
    wall, cpu = time.perf_counter(), time.process_time()
    ec2 = boto3.session.Session().client("ec2")
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag-key", "Values": [tag]}, {"Name": "instance-state-name", "Values": states}],
        PaginationConfig={"PageSize": page_size},
    )
    instances = 0
    for page in pages:
        for reservation in page["Reservations"]:
            instances += len(reservation["Instances"])
    groups = 0
    paginator = boto3.session.Session().client("autoscaling").get_paginator("describe_auto_scaling_groups")
    for page in paginator.paginate(
        Filters=[{"Name": "tag-key", "Values": [tag]}], PaginationConfig={"PageSize": group_page_size}
    ):
        groups += len(page["AutoScalingGroups"])
    for operation, ids in ((ec2.start_instances, todo["start"]), (ec2.stop_instances, todo["stop"])):
        for first in range(0, len(ids), batch_size):
            operation(InstanceIds=ids[first : first + batch_size])
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "rss_kib": _rss_kib(),
        "baseline_rss_kib": baseline,
        "instances": instances,
        "groups": groups,
    }


def handler_run(event_time: str) -> dict[str, Any]:
    ec2_powercycle = import_snapshot()

    baseline = _rss_kib()
    wall, cpu = time.perf_counter(), time.process_time()
    summary = ec2_powercycle.handler({"time": event_time})
    result = {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "rss_kib": _rss_kib(),
        "baseline_rss_kib": baseline,
        "instances": summary["instances"],
        "started": len(summary["started"]),
        "stopped": len(summary["stopped"]),
        "skipped": len(summary["skipped"]),
        "errors": len(summary["errors"]),
        "error_samples": [entry["error"] for entry in summary["errors"][:3]],
        "groups": summary.get("groups", 0),
        "groups_started": len(summary.get("groups_started", ())),
        "groups_stopped": len(summary.get("groups_stopped", ())),
    }
    return result


def warm_run(event_time: str, calls: int) -> dict[str, Any]:
    """Several handler calls in one process, as a warm execution environment makes them.

    Dry runs, so that every call does the same work; the first pays for the
    session and the EC2 model, the later ones reuse them.
    """
    os.environ["EC2_POWERCYCLE_DRY_RUN"] = "true"
    ec2_powercycle = import_snapshot()

    walls, cpus = [], []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        summary = ec2_powercycle.handler({"time": event_time})
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"walls": walls, "cpus": cpus, "instances": summary["instances"]}


CATEGORIES = (
    ("/croniter/", "croniter"),
    ("/dateutil/", "dateutil (botocore timestamps, croniter)"),
    ("/botocore/parsers.py", "botocore response parsing"),
    ("xml/etree", "botocore response parsing"),
    ("/botocore/", "botocore request, signing, hooks"),
    ("/urllib3/", "HTTP (urllib3, http.client, socket)"),
    ("http/client", "HTTP (urllib3, http.client, socket)"),
    ("socket.py", "HTTP (urllib3, http.client, socket)"),
    ("ssl.py", "HTTP (urllib3, http.client, socket)"),
    ("/requests/", "schedule URL fetching (requests)"),
    ("ec2_powercycle.py", "ec2_powercycle own code"),
    ("zoneinfo", "zoneinfo"),
    ("/json/", "json"),
    ("/logging/", "logging"),
    ("/re/", "re (regex compile)"),
    ("sre_", "re (regex compile)"),
)


def category(filename: str, function: str) -> str:
    """A coarse owner of a profiled function, by the file it lives in."""
    if filename == "~":
        return "builtins"
    for marker, name in CATEGORIES:
        if marker in filename:
            return name
    return "other"


class _InlineExecutor:
    """Stands in for ThreadPoolExecutor while profiling: map() runs in the calling thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, function: Any, *iterables: Any) -> Any:
        return map(function, *iterables)


def profile_run(event_time: str, out: str, top: int) -> dict[str, Any]:
    import cProfile
    import io
    import pstats

    ec2_powercycle = import_snapshot()

    # cProfile sees only its own thread: run the per-region work in this one.
    ec2_powercycle.ThreadPoolExecutor = _InlineExecutor
    profiler = cProfile.Profile()
    cpu = time.process_time()
    profiler.enable()
    summary = ec2_powercycle.handler({"time": event_time})
    profiler.disable()
    cpu = time.process_time() - cpu
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    Path(out).write_text(stream.getvalue(), encoding="utf-8")
    rows = []
    groups: dict[str, float] = {}
    for (filename, line, function), (_cc, calls, tottime, cumtime, callers) in stats.stats.items():
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}({function})",
                "calls": calls,
                "tottime": tottime,
                "cumtime": cumtime,
            }
        )
        if filename == "~" and callers:
            # A builtin's own time goes to whoever called it, in proportion.
            spent = sum(caller[2] for caller in callers.values()) or 1.0
            for (caller_file, _l, caller_function), caller in callers.items():
                group = category(caller_file, caller_function)
                groups[group] = groups.get(group, 0.0) + tottime * caller[2] / spent
        else:
            group = category(filename, function)
            groups[group] = groups.get(group, 0.0) + tottime
    return {"cpu_profiled": cpu, "instances": summary["instances"], "functions": rows, "groups": groups}


def imports_run() -> dict[str, Any]:
    start = time.perf_counter()
    import boto3  # noqa: F401

    middle = time.perf_counter()
    import_snapshot()
    end = time.perf_counter()
    return {
        "boto3": middle - start,
        "ours": end - middle,
        "requests_loaded": "requests" in sys.modules,
        "croniter_loaded": "croniter" in sys.modules,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("floor", "handler", "profile", "imports", "warm"))
    parser.add_argument("--calls", type=int, default=6, help="handler calls of a warm run")
    parser.add_argument("--time", default="2026-11-23T08:07:00Z", help="event time of the handler run")
    parser.add_argument("--tag", default=os.environ.get("EC2_POWERCYCLE_TAG", "ec2Powercycle"))
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--states", default="pending,running,stopping,stopped")
    parser.add_argument("--actions", default="", help="floor: JSON file of the IDs to start and stop")
    parser.add_argument("--batch-size", type=int, default=100, help="floor: instance IDs per start/stop call")
    parser.add_argument("--group-page-size", type=int, default=100, help="floor: Auto Scaling groups per page")
    parser.add_argument("--out", default="profile.txt")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    if args.mode == "floor":
        result = floor_run(
            args.tag, args.page_size, args.states.split(","), args.actions, args.batch_size, args.group_page_size
        )
    elif args.mode == "handler":
        result = handler_run(args.time)
    elif args.mode == "profile":
        result = profile_run(args.time, args.out, args.top)
    elif args.mode == "warm":
        result = warm_run(args.time, args.calls)
    else:
        result = imports_run()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
