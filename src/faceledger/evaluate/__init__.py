"""Accuracy evaluation: datasets, pure metric functions, protocols (LFW pairs, open-set splits), reports.

The names below are imported on first use (PEP 562), so that importing `faceledger.evaluate.cli` (which
every `faceledger` command does) does not load the datasets and the image pipeline behind them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .datasets import (
        EmbeddingSet,
        FolderDataset,
        Pair,
        SyntheticDataset,
        embed_folder,
        parse_pairs,
    )

__all__ = ["EmbeddingSet", "FolderDataset", "Pair", "SyntheticDataset", "embed_folder", "parse_pairs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
