"""The sample fleet of the demo: a few instances with typical, and a few bad, schedules."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

TAG = "ec2Powercycle"
LONDON_OFFICE = {"start": "0 8 * * MON-FRI", "stop": "0 18 * * MON-FRI", "tz": "Europe/London"}
NEW_YORK_OFFICE = {"start": "0 8 * * 1-5", "stop": "30 18 * * 1-5", "tz": "America/New_York", "skip": ["holidays:US"]}
FLEET_DOCUMENT = {"start": "0 7 * * 1-5", "stop": "0 19 * * 1-5", "tz": "Europe/Berlin"}
URL_PATH = "/schedules/fleet.json"


def sample_instances(schedule_url: str) -> list[dict[str, Any]]:
    """(name, tag value, extra tags, initial state) of each sample instance."""
    return [
        {"name": "web-london-1", "schedule": json.dumps(LONDON_OFFICE), "state": "stopped"},
        {"name": "web-london-2", "schedule": json.dumps(LONDON_OFFICE), "state": "stopped"},
        {"name": "api-new-york", "schedule": json.dumps(NEW_YORK_OFFICE), "state": "stopped"},
        {"name": "build-berlin", "schedule": schedule_url, "state": "stopped"},
        {"name": "nightly-stop", "schedule": ' {"stop": "0 20 * * *"} ', "state": "running"},
        {"name": "db-production", "schedule": json.dumps(LONDON_OFFICE), "state": "stopped", "environment": "P"},
        {"name": "typo-in-tag", "schedule": '{"stat": "0 8 * * 1-5"}', "state": "stopped"},
    ]


def seed(ec2: Any, schedule_url: str, image_id: str | None = None) -> dict[str, str]:
    """Launch the sample fleet through an EC2 client; return name -> instance ID.

    Any image ID works on moto; passing one saves the look-up (about a second).
    """
    image_id = image_id or ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ids: dict[str, str] = {}
    for spec in sample_instances(schedule_url):
        tags = [{"Key": "Name", "Value": spec["name"]}, {"Key": TAG, "Value": spec["schedule"]}]
        if "environment" in spec:
            tags.append({"Key": "environment", "Value": spec["environment"]})
        launched = ec2.run_instances(
            ImageId=image_id,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
        ids[spec["name"]] = launched["Instances"][0]["InstanceId"]
    to_stop = [ids[spec["name"]] for spec in sample_instances(schedule_url) if spec["state"] == "stopped"]
    ec2.stop_instances(InstanceIds=to_stop)
    return ids


class ScheduleHandler(BaseHTTPRequestHandler):
    """Answers GET with the document at that path (404 otherwise) and counts the requests per path."""

    disable_nagle_algorithm = True
    documents: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[Counter[str]] = Counter()
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.requests[self.path] += 1
        body = self.documents.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_schedules(documents: dict[str, Any] | None = None) -> Iterator[tuple[str, type[ScheduleHandler]]]:
    """Serve schedule documents on 127.0.0.1; yield the base URL and the handler class.

    The class's `documents` (path -> body) can be changed while it serves, and its
    `requests` counts what it answered.
    """
    handler = type("Handler", (ScheduleHandler,), {"documents": {}, "requests": Counter()})
    handler.documents = {path: json.dumps(doc).encode() for path, doc in (documents or {}).items()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def schedule_server(documents: dict[str, Any] | None = None) -> Iterator[str]:
    """Serve schedule documents (default: the sample fleet's) on 127.0.0.1; yield the base URL."""
    with serve_schedules(documents or {URL_PATH: FLEET_DOCUMENT}) as (url, _):
        yield url
