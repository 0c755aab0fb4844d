"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), for several server hosts.

boto3 rather than aioboto3 or obstore: it is the reference client every S3-compatible
server is tested against, it resolves the standard credential chain (environment,
shared profile, container and instance roles) without our help, and the `BlobStore`
seam is blocking by contract anyway (the use cases call it from a worker thread), so an
async client would buy nothing. Its timeouts and retries are bounded here, because its
defaults (60 s reads, several attempts) would hold a request for minutes when the store
is gone; and each call as a whole waits at most `timeout`, because botocore has no total
deadline: a server that accepts connections and never answers would cost every attempt's
read timeout in turn.

Objects live under `contact-card/<sha256>.<ext>`: a CDN placed in front of the bucket
serves them at `<cdn base URL>/contact-card/<name>`, the same path this server's own
`/cdn` route answers when it proxies them.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from contactcard.cdn.base import BLOB_NAME, IMMUTABLE, Blob, BlobStoreUnavailable, content_type, etag

PREFIX = "contact-card/"
T = TypeVar("T")


class S3Cdn:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "auto",
        timeout: float = 2.0,
        attempts: int = 2,
        connections: int = 20,
    ) -> None:
        # Imported here: a server on the local folder never loads boto3 (~40 MiB, ~0.3 s).
        import boto3
        from botocore.config import Config

        self._bucket = bucket
        self._deadline = timeout
        # The calls run here, so that the caller can stop waiting at the deadline; a call
        # that outlives it ends by botocore's own timeouts. Bounded like the connection pool.
        self._calls = concurrent.futures.ThreadPoolExecutor(max_workers=connections, thread_name_prefix="s3")
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            # "standard" retries only what is worth retrying (throttling, 5xx, connection
            # errors), with a capped backoff; `attempts` counts the first try.
            retries={"max_attempts": attempts, "mode": "standard"},
            max_pool_connections=connections,
            s3={"addressing_style": addressing_style},
        )
        # No keys passed: boto3's default chain finds them (AWS_* variables, AWS_PROFILE,
        # web identity, container or instance role), as operators expect.
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        from botocore.exceptions import BotoCoreError, ClientError

        self._failures: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self._client_error = ClientError

    def put(self, name: str, data: bytes) -> None:
        if not BLOB_NAME.fullmatch(name):
            raise ValueError(f"not a content-addressed blob name: {name!r}")
        # No existence check first: the same name always holds the same bytes, so writing
        # again is harmless and saves a round trip on every new image. A put that outlives
        # the deadline may still land: an unreferenced object, never a wrong one.
        self._bounded(
            lambda: self._client.put_object(
                Bucket=self._bucket,
                Key=PREFIX + name,
                Body=data,
                ContentType=content_type(name),
                CacheControl=IMMUTABLE,
            )
        )

    def get(self, name: str) -> Blob | None:
        if not BLOB_NAME.fullmatch(name):
            return None

        def fetch() -> bytes | None:
            try:
                found = self._client.get_object(Bucket=self._bucket, Key=PREFIX + name)
            except self._client_error as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            data: bytes = found["Body"].read()
            return data

        data = self._bounded(fetch)
        if data is None:
            return None
        # Our own ETag (the content hash), not S3's MD5: the same on every store.
        return Blob(data=data, content_type=content_type(name), etag=etag(name))

    def ping(self) -> None:
        self._bounded(lambda: self._client.head_bucket(Bucket=self._bucket))

    def _bounded(self, call: Callable[[], T]) -> T:
        """`call()` on the S3 threads, waiting at most the deadline; every failure of the
        store, the deadline included, is `BlobStoreUnavailable`."""
        future = self._calls.submit(call)
        try:
            return future.result(timeout=self._deadline)
        except concurrent.futures.TimeoutError:
            future.cancel()  # if it has not started yet
            raise BlobStoreUnavailable(f"no answer within {self._deadline:g} s") from None
        except self._failures as exc:
            raise BlobStoreUnavailable(_reason(exc)) from None


def _reason(exc: Exception) -> str:
    """A short cause for the log: the class and botocore's message, which names the
    operation and endpoint but never the credentials."""
    return f"{type(exc).__name__}: {exc}"
