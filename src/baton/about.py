"""Build facts: the installed version of Baton."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("baton")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
