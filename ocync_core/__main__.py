"""`python -m ocync_core` runs the `ocync` command."""

from ocync_core.cli import main

main()
