"""Configuration: pydantic models, YAML + ``${VAR}`` loading, resolution, JSON Schema.

```python
config = load_config("mirror.yaml", plugins)      # ConfigError (exit code 3) when invalid
for mapping in config.mappings:                   # ResolvedMapping: defaults applied
    ...
```

Every problem of a file is reported at once, one ``<file>: <path>: <what>`` line each.
See docs/configuration.md for every key.
"""

from ocync_core.config._interpolate import interpolate_text
from ocync_core.config._load import (
    Config,
    ResolvedMapping,
    ResolvedTarget,
    config_json_schema,
    load_config,
    parse_config,
)
from ocync_core.config._models import (
    AUTH_TYPES,
    DEFAULT_CACHE,
    ArtifactSettings,
    Credentials,
    Defaults,
    GlobalSettings,
    MappingModel,
    RegistryBase,
    TagFilter,
    build_models,
)
from ocync_core.config._problems import ConfigProblems, Problem
from ocync_core.config._types import format_duration, parse_duration

__all__ = [
    "AUTH_TYPES",
    "DEFAULT_CACHE",
    "ArtifactSettings",
    "Config",
    "ConfigProblems",
    "Credentials",
    "Defaults",
    "GlobalSettings",
    "MappingModel",
    "Problem",
    "RegistryBase",
    "ResolvedMapping",
    "ResolvedTarget",
    "TagFilter",
    "build_models",
    "config_json_schema",
    "format_duration",
    "interpolate_text",
    "load_config",
    "parse_config",
    "parse_duration",
]
