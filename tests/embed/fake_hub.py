"""Stand-ins for the Hugging Face hub on 127.0.0.1: a fake hub that answers like huggingface.co, and an endpoint that
drops every connection, counting them (one connection per HTTP attempt: the count shows whether anything retried)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPOS = {  # what the fake hub serves: files by repo, or "gated"
    "org/ok": {"config.json": b'{"model_type": "vit"}', "model.safetensors": b"weights"},
    "org/onlybin": {"config.json": b"{}", "pytorch_model.bin": b"pickle"},
    "org/gated": "gated",
    "MahmoodLab/UNI": "gated",
}


class FakeHub(BaseHTTPRequestHandler):
    """Answers HEAD/GET /<org>/<name>/resolve/<rev>/<file> the way huggingface.co does, error headers included."""

    requests: list[str] = []

    def do_HEAD(self) -> None:  # noqa: N802 - the name http.server calls
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        FakeHub.requests.append(f"{self.command} {self.path}")
        parts = self.path.lstrip("/").split("/")
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
        files = REPOS.get(repo_id) if len(parts) > 4 and parts[2] == "resolve" else None
        if files is None:
            self._send(401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        elif files == "gated":
            code = 403 if self.headers.get("authorization") else 401
            self._send(code, {"X-Error-Code": "GatedRepo", "X-Error-Message": f"Access to {repo_id} is restricted."})
        elif filename not in files:
            self._send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        else:
            data = files[filename]
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{abs(hash(data))}"', "Content-Length": str(len(data))}
            self._send(200, headers, data if body else b"")

    def _send(self, code: int, headers: dict, data: bytes = b"") -> None:
        self.send_response(code)
        for key, value in {"Content-Length": "0", **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def serve_fake_hub() -> tuple[ThreadingHTTPServer, str]:
    """Start the fake hub; returns the server (call ``shutdown``) and its endpoint URL.

    Besides file requests it sees huggingface_hub's own ``GET /api/agent-harnesses`` (once per process).
    """
    FakeHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class DroppingEndpoint:
    """Reads each request line and closes the connection without an answer, like a network that cannot reach the
    hub; ``requests`` lists the lines (one per HTTP attempt, so retries show)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            connection.settimeout(2)
            try:
                self.requests.append(connection.recv(4096).decode(errors="replace").split("\r\n")[0])
            except OSError:
                self.requests.append("")
            connection.close()

    def hub_requests(self) -> list[str]:
        """The requests for repository files (huggingface_hub also fetches its agent registry once per process)."""
        return [line for line in self.requests if "/resolve/" in line]

    def close(self) -> None:
        self.listener.close()


class SilentEndpoint:
    """Accepts connections (the kernel does) and never answers, like a hub behind a black-holing firewall."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def close(self) -> None:
        self.listener.close()
