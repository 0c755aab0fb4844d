"""The benchmark suite of the contactcard server: `python -m bench` (see bench/README.md).

It starts the real server (`contactcard serve`) on loopback, drives it with `wrk` and a plain
sequential client, times the image pipeline in-process against pyvips, and reports every
figure as a ratio against a baseline measured in the same run, interleaved over rounds.
"""

ROOT_MARKER = "pyproject.toml"


class HarnessError(RuntimeError):
    """The benchmark harness itself could not do its work (not a slow server)."""


class MissingDependency(HarnessError):
    """A tool or package the benchmark needs is not installed."""
