"""`python -m ocync_core` runs the `ocync` command."""

from ocync_core.entry import main

main()
