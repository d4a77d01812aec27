"""A stand-in for the Globus cloud (Auth token + the Transfer calls the jobs make), served on
127.0.0.1 so that the real SLURM jobs, in their own processes, reach it through the SDK's
``GLOBUS_SDK_SERVICE_URL_*`` settings. Response bodies start from ``globus_sdk.testing``'s
registered fixtures; the "transfer" copies between local paths (both collections map to
this machine's filesystem) and fails the files the test names, as a real task reports
files it skipped (``skip_source_errors``)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import globus_sdk
from globus_sdk.testing import RegisteredResponse, get_response_set


def _fixture(method: Any) -> dict[str, Any]:
    """globus_sdk.testing's canned answer of ``method`` (a JSON object)."""
    response = get_response_set(method).lookup("default")
    assert isinstance(response, RegisteredResponse) and isinstance(response.json, dict)
    return dict(response.json)


class FakeGlobus:
    """``fail``: basenames the next transfers report as skipped errors (mutable).
    ``owner``: the local user the written files belong to (the collection's mapped user)."""

    def __init__(self, port: int, owner: str) -> None:
        self.port, self.owner = port, owner
        self.fail: set[str] = set()
        self.submissions: list[list[dict[str, str]]] = []  # items per POST /transfer
        self.tasks: dict[str, dict[str, list[dict[str, str]]]] = {}
        self.token_requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, body: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(*fake.post(urlparse(self.path).path, body))

            def do_GET(self) -> None:
                url = urlparse(self.path)
                self._send(*fake.get(url.path, parse_qs(url.query)))

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.port}/"
        return {"GLOBUS_SDK_SERVICE_URL_AUTH": url, "GLOBUS_SDK_SERVICE_URL_TRANSFER": url}

    def __enter__(self) -> FakeGlobus:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the API ---------------------------------------------------------------------
    def post(self, path: str, body: bytes) -> tuple[dict[str, Any], int]:
        if path == "/v2/oauth2/token":
            self.token_requests += 1
            tokens = globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens
            return _fixture(tokens), 200
        if path == "/v0.10/transfer":
            return self._transfer(json.loads(body)), 202
        return {"code": "NotFound", "message": path}, 404

    def get(self, path: str, query: dict[str, list[str]]) -> tuple[dict[str, Any], int]:
        parts = path.strip("/").split("/")
        if path == "/v0.10/submission_id":
            return {"value": str(uuid.uuid4())}, 200
        if parts[1:3] == ["operation", "endpoint"] and parts[-1] == "ls":
            return self._ls(query["path"][0]), 200
        if parts[1] == "task" and parts[2] in self.tasks:
            task = self.tasks[parts[2]]
            if len(parts) == 3:
                return {
                    "DATA_TYPE": "task",
                    "task_id": parts[2],
                    "status": "SUCCEEDED",
                    "nice_status": None,
                    "files": len(task["ok"]) + len(task["errors"]),
                }, 200
            kind = {"successful_transfers": "ok", "skipped_errors": "errors"}[parts[3]]
            return {"DATA_TYPE": parts[3], "next_marker": None, "DATA": task[kind]}, 200
        return {"code": "NotFound", "message": path}, 404

    def _ls(self, path: str) -> dict[str, Any]:
        entries = [
            {
                "DATA_TYPE": "file",
                "name": p.name,
                "type": "dir" if p.is_dir() else "file",
                "size": p.stat().st_size,
            }
            for p in sorted(Path(path).iterdir())
        ]
        return {"DATA_TYPE": "file_list", "path": path, "DATA": entries}

    def _transfer(self, doc: dict[str, Any]) -> dict[str, Any]:
        items = [
            {"source_path": i["source_path"], "destination_path": i["destination_path"]}
            for i in doc["DATA"]
        ]
        self.submissions.append(items)
        task: dict[str, list[dict[str, str]]] = {"ok": [], "errors": []}
        for item in items:
            if Path(item["source_path"]).name in self.fail:
                task["errors"].append(
                    {
                        **item,
                        "DATA_TYPE": "skipped_error",
                        "error_code": "PERMISSION_DENIED",
                        "error_details": "open: permission denied (fake)",
                    }
                )
                continue
            dest = Path(item["destination_path"])
            shutil.copyfile(item["source_path"], dest)
            shutil.chown(dest, self.owner, self.owner)
            os.chmod(dest, 0o600)
            task["ok"].append(item)
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = task
        return {
            **_fixture(globus_sdk.TransferClient.submit_transfer),
            "submission_id": doc["submission_id"],
            "task_id": task_id,
        }
