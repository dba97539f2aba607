"""The reference trainer: a small single-stream transformer that reads a labelled corpus's
shards with webdataset and shows, on held-out groups of samples, that each label teaches
what neither chance nor the text alone explains."""

from curate.train.data import Corpus, Example, corpus_split, decode_sample, open_corpus
from curate.train.loop import TrainSettings, train
from curate.train.report import format_metrics
from curate.train.split import Split, held_out
from curate.train.stats import chance_bar

__all__ = [
    "Corpus",
    "Example",
    "Split",
    "TrainSettings",
    "chance_bar",
    "corpus_split",
    "decode_sample",
    "format_metrics",
    "held_out",
    "open_corpus",
    "train",
]
