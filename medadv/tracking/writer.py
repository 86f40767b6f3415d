"""One writer per run: a lock held as the run's `medadv.writer` tag, `host:pid:since:heartbeat`.

The step that writes a run sets the tag and refreshes its heartbeat while it works; a resume of a run whose
writer is alive refuses, saying who holds it. A writer is dead when, on this host, its pid is gone, or,
on another host, its heartbeat is older than `STALE_S`: then its lock is taken over.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
from mlflow.exceptions import MlflowException

from medadv.contract import WRITER_TAG
from medadv.errors import MedadvError

HEARTBEAT_S = 30.0
STALE_S = 4 * HEARTBEAT_S
SETTLE_S = 1.0  # two resumes that read "free" at once both write; after this, the last write wins


class RunLocked(MedadvError):
    """Another live process writes this run: the run id given cannot be written now."""


@dataclass(frozen=True)
class Writer:
    host: str
    pid: int
    since: int  # Unix seconds
    heartbeat: int

    @classmethod
    def me(cls, since: int | None = None) -> Writer:
        now = int(time.time())
        return cls(socket.gethostname(), os.getpid(), since or now, now)

    @classmethod
    def parse(cls, text: str) -> Writer | None:
        try:
            host, pid, since, heartbeat = text.rsplit(":", 3)
            return cls(host, int(pid), int(since), int(heartbeat))
        except ValueError:
            return None  # not ours: treated as no lock

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.since}:{self.heartbeat}"

    def same_process(self, other: Writer) -> bool:
        return (self.host, self.pid, self.since) == (other.host, other.pid, other.since)

    def alive(self) -> bool:
        if self.host != socket.gethostname():
            return time.time() - self.heartbeat < STALE_S
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's live process
        return True

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.host} pid {self.pid} since {since}"


def holder(run_id: str) -> Writer | None:
    """The live writer of `run_id` other than this process, if any."""
    writer = Writer.parse(mlflow.MlflowClient().get_run(run_id).data.tags.get(WRITER_TAG, ""))
    if writer is None or not writer.alive() or (writer.host, writer.pid) == (socket.gethostname(), os.getpid()):
        return None
    return writer


def check_free(run_id: str) -> None:
    """Refuse, in one line, to write a run that a live process writes."""
    writer = holder(run_id)
    if writer is not None:
        raise RunLocked(f"run {run_id} is being written by {writer.describe()}; wait for it to end or stop it")


def acquire(run_id: str) -> Writer:
    """Take the lock of an existing run (a resume), or refuse in one line; call it before the run is started,
    so that a refusal leaves the other writer's run as it is."""
    client = mlflow.MlflowClient()
    check_free(run_id)
    me = Writer.me()
    client.set_tag(run_id, WRITER_TAG, str(me))
    time.sleep(SETTLE_S)
    current = Writer.parse(client.get_run(run_id).data.tags.get(WRITER_TAG, ""))
    if current is not None and not current.same_process(me):
        raise RunLocked(f"run {run_id} was taken at the same moment by {current.describe()}")
    return me


@contextmanager
def hold(run_id: str, me: Writer) -> Iterator[None]:
    """Hold the run's lock for the block, refreshing its heartbeat; released when the block ends. The lock is
    `me`'s already: a resume took it with `acquire`, a new run was created with it among its tags.

    A writer that dies keeps its tag; the next resume sees it dead and takes the lock over.
    """
    client = mlflow.MlflowClient()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with suppress(MlflowException, OSError):  # an outage: the main thread reports it, not this one
                client.set_tag(run_id, WRITER_TAG, str(Writer.me(since=me.since)))

    thread = threading.Thread(target=beat, name="medadv-writer-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with suppress(MlflowException, OSError):  # left behind, it is taken over as a dead writer's
            client.delete_tag(run_id, WRITER_TAG)
