"""The seam to the CDN that hosts rehosted images: put a blob, get it back.

`LocalFolderCdn` keeps blobs in a folder and this server serves them under `/cdn`;
an S3-compatible store can implement the same `BlobStore` protocol.
"""

from contactcard.cdn.base import Blob, BlobStore
from contactcard.cdn.local import LocalFolderCdn

__all__ = ["Blob", "BlobStore", "LocalFolderCdn"]
