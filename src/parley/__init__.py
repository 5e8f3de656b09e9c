"""Parley: a self-hostable backend for AI assistants."""

import sys
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("parley")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

# `httpx` (which the model SDKs import) loads its command-line client whenever click, rich and
# pygments are installed, memory and start-up time a server never uses (bench/findings.md). A
# None entry makes that one import fail, and httpx then goes without its CLI (its own fallback).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
