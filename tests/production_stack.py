"""A production-shaped MLflow stack on 127.0.0.1 for tests: PostgreSQL 15, an S3 endpoint (moto) and basic auth.

Each piece runs in its own process group on a free loopback port with its files in a temp dir, and is stopped
with everything it spawned; `stop_process_group` checks that nothing survives. The bucket credentials live in
the server's environment only: steps run with none of them, as workers behind `--serve-artifacts` do.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_server import REPO, free_port, step_env, stop_process_group

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_SUPERUSER = "medadv"
BUCKET = "medadv-artifacts"
# Credentials this shell may hold: no step inherits them (a worker reaches artifacts through the server alone),
# and the server gets only the stack's own.
CREDENTIAL_ENV = (
    "AWS_",
    "MLFLOW_S3_",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    @property
    def auth(self) -> tuple[str, str]:
        """For `requests`' basic auth."""
        return self.username, self.password

    def env(self) -> dict[str, str]:
        """How MLflow clients (and so medadv steps) are given credentials."""
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password}


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """What the tracking server (and only it) needs to write the bucket."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def object_keys(self) -> list[str]:
        import boto3

        client = boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )  # fmt: skip
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@dataclass(frozen=True)
class ProductionStack:
    """A running stack: server URL, its admin, one ordinary user, and the secrets that must never be logged."""

    url: str
    admin: Credentials
    user: Credentials
    s3: S3Endpoint
    secrets: dict[str, str]  # what each secret is -> its value

    def run_step(
        self, script: str, *args: str, cwd: Path, credentials: Credentials | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run `steps/<script>` as a worker would: tracking URI and credentials (default: `user`), nothing else."""
        env = {key: value for key, value in step_env().items() if not key.startswith(CREDENTIAL_ENV)}
        env |= {"MLFLOW_TRACKING_URI": self.url, "MEDADV_HOME": str(cwd / ".medadv")}
        env |= (credentials or self.user).env()
        return subprocess.run(
            [sys.executable, str(REPO / "steps" / script), *args],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


def missing_requirement() -> str | None:
    """Why the stack cannot start here (a pytest skip reason), or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 server binaries not found in {PG_BIN} (apt-get install postgresql-15)"
    if os.geteuid() == 0 and _unprivileged_owner() is None:
        return "running as root and neither a 'postgres' nor a 'nobody' user exists to own the database cluster"
    for module in ("psycopg", "boto3", "moto"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return None


@contextmanager
def production_stack(root: Path, s3: S3Endpoint | None = None) -> Iterator[ProductionStack]:
    """PostgreSQL + S3 + deploy/mlflow_server.sh (`--serve-artifacts --app-name basic-auth`), one user created.

    `s3`: an endpoint (with the bucket) that the caller runs; by default moto's server in a process of its own.
    """
    with ExitStack() as stack:
        pg_password = secrets.token_urlsafe(16)
        pg_port = stack.enter_context(postgres_cluster(pg_password, databases=("mlflow", "mlflow_auth")))
        s3 = s3 or stack.enter_context(s3_endpoint(root))
        admin = Credentials("admin", secrets.token_urlsafe(16))
        flask_secret = secrets.token_urlsafe(16)
        config = root / "basic_auth.ini"
        config.write_text(
            "[mlflow]\n"
            "default_permission = EDIT\n"  # as deploy/README.md: a lab shares experiments and models
            f"database_uri = {pg_uri(pg_port, 'mlflow_auth')}\n"
            f"admin_username = {admin.username}\n"
            f"admin_password = {admin.password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server_env = {  # the settings deploy/README.md lists; of this shell's environment, no credential
            **{key: value for key, value in os.environ.items() if not key.startswith(CREDENTIAL_ENV)},
            **s3.env(),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no background job runner: the tests never use it
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_BACKEND_STORE_URI": pg_uri(pg_port, "mlflow"),
            "PGPASSWORD": pg_password,  # libpq reads it: no password in a URI or a command line
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlartifacts",
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_secret,
            "MEDADV_PORT": str(port),
            "MEDADV_WORKERS": "1",
        }
        command = ["bash", str(REPO / "deploy" / "mlflow_server.sh")]
        stack.enter_context(service(command, root / "mlflow.log", lambda: _answers(f"{url}/health"), env=server_env))
        user = Credentials("worker", secrets.token_urlsafe(16))
        create_user(url, admin, user)
        yield ProductionStack(
            url, admin, user, s3,
            {"database password": pg_password, "admin password": admin.password, "user password": user.password,
             "bucket secret key": s3.secret_key, "server secret key": flask_secret},
        )  # fmt: skip


def pg_uri(port: int, database: str) -> str:
    return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{port}/{database}"


def create_user(url: str, admin: Credentials, user: Credentials) -> None:
    """Create `user` through the basic-auth REST API, as an administrator would."""
    import requests

    response = requests.post(
        f"{url}/api/2.0/mlflow/users/create",
        json={"username": user.username, "password": user.password},
        auth=admin.auth,
        timeout=30,
    )
    response.raise_for_status()


@contextmanager
def service(
    command: list[str], log_path: Path, ready: Callable[[], bool], env: Mapping[str, str] | None = None, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in its own process group until the block ends; wait until `ready()` first."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, **popen
        )
        try:
            deadline = time.monotonic() + 120
            while not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{log_path.stem} did not start: {log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.3)
            yield process
        finally:
            stop_process_group(process)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # up, just not happy with this request
    except OSError:
        return False


@contextmanager
def s3_endpoint(root: Path) -> Iterator[S3Endpoint]:
    """moto's standalone S3 server with one empty bucket."""
    import boto3

    port = free_port()
    s3 = S3Endpoint(f"http://127.0.0.1:{port}", "medadv-test-key", secrets.token_urlsafe(16))
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with service(command, root / "s3.log", lambda: _answers(f"{s3.url}/moto-api/")):
        client = boto3.client(
            "s3", endpoint_url=s3.url, aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
            region_name="us-east-1",
        )  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        yield s3


def _unprivileged_owner() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: the cluster belongs to `postgres` (Debian's package) or `nobody`."""
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@contextmanager
def postgres_cluster(password: str, databases: tuple[str, ...]) -> Iterator[int]:
    """A throwaway cluster (initdb) on a free 127.0.0.1 port, TCP only, with `databases`; yields the port.

    Its folder is a fresh one under the system temp dir, not pytest's (root-only) tmp_path, so that an
    unprivileged owner can reach it when the tests run as root.
    """
    import psycopg

    home = Path(tempfile.mkdtemp(prefix="medadv-pg-"))
    as_owner: dict[str, Any] = {"cwd": home}  # an owner other than root may not enter the current folder
    if os.geteuid() == 0:
        owner = _unprivileged_owner()
        assert owner is not None, missing_requirement()
        os.chown(home, owner.pw_uid, owner.pw_gid)
        as_owner |= {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    try:
        password_file = home / "password"
        password_file.write_text(password)
        if "user" in as_owner:
            os.chown(password_file, as_owner["user"], as_owner["group"])
        data = home / "data"
        initdb = subprocess.run(
            [PG_BIN / "initdb", "-D", data, "-U", PG_SUPERUSER, "--pwfile", password_file, "--auth", "scram-sha-256",
             "--no-locale", "-E", "UTF8", "--no-sync"],
            capture_output=True, text=True, **as_owner,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr[-2000:]}")
        port = free_port()
        command = [
            str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",  # TCP on loopback only
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",  # throwaway: speed
        ]  # fmt: skip

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(
                host="127.0.0.1", port=port, user=PG_SUPERUSER, password=password, dbname="postgres",
                connect_timeout=2, autocommit=True,
            )  # fmt: skip

        def ready() -> bool:
            try:
                connect().close()
                return True
            except psycopg.OperationalError:
                return False

        with service(command, home / "postgres.log", ready, **as_owner) as postmaster:
            with connect() as connection:
                for database in databases:
                    connection.execute(f'CREATE DATABASE "{database}"')
            try:
                yield port
            finally:
                postmaster.send_signal(signal.SIGINT)  # fast shutdown: end sessions, checkpoint, stop
                postmaster.wait(timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)
