"""Corpus synthesis: many texts into a ``datasets`` audio dataset, resumable and split across processes.

See ``docs/synthesize.md``; the command is ``fish-s2 synthesize``.
"""

from .inputs import Row, read_rows
from .runner import SingleProcess, Summary, process_state, synthesize

__all__ = ["Row", "SingleProcess", "Summary", "process_state", "read_rows", "synthesize"]
