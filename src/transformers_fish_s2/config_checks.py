"""Checks shared by the model config and the codec config: size limits that stop a corrupt or hostile
config file before any module is built."""

from __future__ import annotations

MAX_PARAMETERS = 100_000_000_000
"""Largest parameter count a config may describe: 100 B, about 20× s2-pro (4.6 B) and 200 GB of bf16 weights.
A bigger value comes from a corrupt or hostile config file; refusing it before any module is built avoids
minutes of construction followed by an out-of-memory kill."""

MAX_LAYERS = 1024
"""Most transformer (or codec) layers a config may describe; s2-pro has 36 + 4. Every layer is a Python
module, so 10^9 of them would hang construction even with tiny widths."""


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(message)


def check_model_size(name: str, num_parameters: int, num_layers: int, fields: str) -> None:
    """Refuse configs beyond :data:`MAX_LAYERS` / :data:`MAX_PARAMETERS`.

    ``fields`` names the config values the counts come from, for the message.
    """
    require(
        num_layers <= MAX_LAYERS,
        f"{name} describes {num_layers} layers ({fields}); the limit is {MAX_LAYERS} (MAX_LAYERS). The config "
        "file is probably corrupt",
    )
    require(
        num_parameters <= MAX_PARAMETERS,
        f"{name} describes {num_parameters:.3g} parameters ({fields}); the limit is {MAX_PARAMETERS:.0e} "
        "(MAX_PARAMETERS). The config file is probably corrupt",
    )


MAX_MODEL_BYTES = 40 * 10**9
"""Default cap on the bytes of weights ``from_pretrained`` allocates (40 GB; s2-pro is 9.1 GB in bfloat16 and
18.2 GB in float32, its codec 0.7 GB). Pass ``max_model_bytes=`` to raise it. A config under
:data:`MAX_PARAMETERS` can still ask for more than a machine has (``vocab_size=10**9`` is 128 GB of bfloat16);
this refuses it from the numbers, before anything is allocated."""


def check_model_bytes(name: str, num_parameters: int, bytes_per_parameter: int, max_bytes: int) -> None:
    """Refuse a model whose weights would take more than ``max_bytes`` (checked before it is built)."""
    require(
        isinstance(max_bytes, int) and not isinstance(max_bytes, bool) and max_bytes > 0,
        f"max_model_bytes must be a positive integer, got {max_bytes!r}",
    )
    size = num_parameters * bytes_per_parameter
    require(
        size <= max_bytes,
        f"{name} would allocate {size / 1e9:.1f} GB of weights ({num_parameters:.3g} parameters x "
        f"{bytes_per_parameter} bytes); the limit is {max_bytes / 1e9:.1f} GB (max_model_bytes, default "
        f"MAX_MODEL_BYTES = {MAX_MODEL_BYTES / 1e9:.0f} GB). Check the config file, or pass a larger "
        "max_model_bytes= if the model really is this large",
    )
