"""A real S3-compatible server on 127.0.0.1: moto's server mode, in a thread of the tests.

Its state lives in the test process, so `stop()` then `start()` on the same port is an
outage and a recovery: the objects written before are still there afterwards. Servers
under test reach it through `env()` (the `CONTACTCARD_S3_*` settings and static keys the
AWS credential chain picks up from the environment).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from tests.support.processes import free_port

# moto accepts any key pair; these are dummies the tests grep the logs for.
ACCESS_KEY = "AKIATESTONLY0000000"
SECRET_KEY = "test-only-secret-never-logged-5c1e"
REGION = "us-east-1"


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self.running = False

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self._server.start()
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def new_bucket(self) -> str:
        name = f"images-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str) -> dict[str, Any]:
        """Settings for an in-process server (its credentials from the environment)."""
        return {
            "s3_bucket": bucket,
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": REGION,
            "s3_addressing_style": "path",
        }

    def env(self, bucket: str) -> dict[str, str]:
        """The same for a server process: settings and the AWS chain's variables."""
        return {
            "CONTACTCARD_S3_BUCKET": bucket,
            "CONTACTCARD_S3_ENDPOINT_URL": self.endpoint_url,
            "CONTACTCARD_S3_REGION": REGION,
            "CONTACTCARD_S3_ADDRESSING_STYLE": "path",
            **credentials(),
        }


def credentials() -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
