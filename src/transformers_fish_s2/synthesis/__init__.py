"""Corpus synthesis: many texts into a ``datasets`` audio dataset, resumable and split across processes.

See ``docs/synthesize.md``; the command is ``fish-s2 synthesize``.
"""

from ..lazy_exports import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Row", "read_rows"), ".inputs"),
    **dict.fromkeys(("SingleProcess", "Summary", "process_state", "synthesize"), ".runner"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)  # `fish-s2 --help` imports .cli without the engine
__all__ = sorted(_EXPORTS)
