"""Accuracy evaluation: datasets, pure metric functions, protocols (LFW pairs, open-set splits), reports."""

from .datasets import EmbeddingSet, FolderDataset, Pair, SyntheticDataset, embed_folder, parse_pairs

__all__ = ["EmbeddingSet", "FolderDataset", "Pair", "SyntheticDataset", "embed_folder", "parse_pairs"]
