"""ocync: mirror OCI container images between registries."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ocync")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
