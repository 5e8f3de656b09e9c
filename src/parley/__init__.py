"""Parley: a self-hostable backend for AI assistants."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("parley")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
