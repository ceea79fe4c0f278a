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
