"""recforge: trustworthy, fast recommendations from interaction logs."""

from recforge.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    RecforgeError,
    UnknownIdError,
)

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataError",
    "NotFittedError",
    "RecforgeError",
    "UnknownIdError",
    "__version__",
]
