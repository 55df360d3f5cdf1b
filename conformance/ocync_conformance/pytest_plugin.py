"""pytest plugin of the ocync conformance kit (entry point `pytest11`).

Kept import-light: registry fixtures live in `ocync_conformance.fixtures` and are imported
only when pytest loads this plugin.
"""
