"""The seam to the CDN that hosts rehosted images: put a blob, get it back.

`LocalFolderCdn` keeps blobs in a folder and this server serves them under `/cdn`;
`S3Cdn` (`cdn/s3.py`) keeps them in an S3-compatible bucket that several server hosts
share, served by a CDN in front of it or proxied by this server.
"""

from contactcard.cdn.base import Blob, BlobStore, BlobStoreUnavailable
from contactcard.cdn.local import LocalFolderCdn

__all__ = ["Blob", "BlobStore", "BlobStoreUnavailable", "LocalFolderCdn"]
