"""The reference trainer: a small single-stream transformer that reads a labelled corpus's
shards with webdataset and shows, on held-out samples, that each label can be learned."""

from curate.train.data import Corpus, Example, decode_sample, held_out, open_corpus
from curate.train.loop import TrainSettings, chance_bar, format_metrics, train

__all__ = [
    "Corpus",
    "Example",
    "TrainSettings",
    "chance_bar",
    "decode_sample",
    "format_metrics",
    "held_out",
    "open_corpus",
    "train",
]
