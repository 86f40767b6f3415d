"""A real `mlflow server` on a free 127.0.0.1 port, stopped with every worker it spawned, and step runs against it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mlflow_server(root: Path, extra_args: tuple[str, ...] = (), port: int | None = None) -> Iterator[str]:
    """Start a server with a SQLite store and served artifacts under `root`; yield its URL.

    `port` (default: a free one) lets a test restart a server where its clients expect it.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("a")  # a restarted server's log follows the first one's
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
        *extra_args,
    ]  # fmt: skip
    # Its own session, so the whole process group (server and workers) can be stopped at once.
    # No background job runner (seven huey consumers the tests never use).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        stop_process_group(process)
        log.close()


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group, SIGKILL what is left after 10 s, and check that nothing of it survives."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_alive(process.pid):
            process.poll()
            time.sleep(0.2)
        if not group_alive(process.pid):
            break
    process.wait(timeout=5)
    assert not group_alive(process.pid), "mlflow server workers survived teardown"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies still count for killpg; treat a group of only zombies as gone.
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def step_env(**extra: str) -> dict[str, str]:
    """This process's environment for a step subprocess, less the experiment and run that in-process
    `mlflow.set_experiment` / `start_run` export (a user's shell would not carry them)."""
    inherited = {key: value for key, value in os.environ.items() if key not in MLFLOW_SESSION_ENV}
    return inherited | extra


MLFLOW_SESSION_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


def run_step(script: str, *args: str, tracking_uri: str, cwd: Path, timeout: float = 600):  # type: ignore[no-untyped-def]
    """Run `steps/<script>` as a user would, against `tracking_uri`; returns the CompletedProcess."""
    env = step_env(MLFLOW_TRACKING_URI=tracking_uri, MEDADV_HOME=str(cwd / ".medadv"))
    return subprocess.run(
        [sys.executable, str(REPO / "steps" / script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
