"""The trainer's loader against plain webdataset decoding of the same labelled shards.

    .venv/bin/python benchmarks/train_loader.py demo-out/corpus --seconds 5 --rounds 3
    .venv/bin/python benchmarks/train_loader.py --photos 2000   # web-size photos, labelled

`--photos N` first builds a labelled corpus (mlm, patchmask, regions, itm) from N of the
web-size benchmark photos (benchmarks/_bench_images.py; cached under /tmp/curate-bench)
with `curate.run`, stored as the demo stores them (256 px, JPEG q90), and measures it too:
the demo's synthetic pictures compress to ~5 KB, a photo to several times that.

Anchor: `webdataset.WebDataset(shards).decode("pil")` iterated over every sample, each
member decoded by webdataset's own handlers (JPEG to PIL, json, npy, npz, txt). curate:
the same shards through `curate.train`'s loader, every label decoded into the arrays a
training step takes (region thumbnails, masks, token ids, negatives' tokens, frames in
their drawn order). Rounds alternate so both see the same machine; whole passes, after a
warm-up pass (imports and the tokenizer's cache are not a loader's speed). Goal (issue 11):
curate / plain >= 0.8.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from curate.train.data import open_corpus, plain_rate, trainer_rate

BENCH = Path("/tmp/curate-bench")


def photo_corpus(n: int) -> Path:
    """A labelled run over n benchmark photos (built once, then reused)."""
    from _bench_images import ensure_images

    import curate

    out = BENCH / f"train-photos-{n}"
    if (out / "shards" / "sizes.json").exists():
        return out
    pairs, _ = ensure_images(BENCH, n)
    src = BENCH / f"train-photos-{n}-src"
    src.mkdir(parents=True, exist_ok=True)
    for name, caption in pairs:  # the folder source reads a caption from NAME.txt
        link = src / name
        if not link.exists():
            link.symlink_to(BENCH / "files" / name)
        (src / name).with_suffix(".txt").write_text(caption)
    cfg = {
        "sources": [{"kind": "folder", "path": str(src)}],
        "image": {"size": 256, "resize_mode": "border", "encode_quality": 90},
        "clip": {"enabled": False},
        "labels": {"tasks": ["mlm", "patchmask", "regions", "itm"]},
        "engine": {"n_workers": 2},
    }
    curate.run(cfg, out, progress=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("corpus", nargs="*", help="labelled run directories (or shards/ folders)")
    p.add_argument("--photos", type=int, default=0, help="also N web-size photos, labelled")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    folders = [*args.corpus, *([str(photo_corpus(args.photos))] if args.photos else [])]
    print(f"{'corpus':<32} {'samples':>7} {'plain/s':>9} {'curate/s':>9} {'ratio':>6}  rounds")
    for folder in folders:
        corpus = open_corpus(Path(folder))
        plain, ours = [], []
        for _ in range(args.rounds):
            plain.append(plain_rate(corpus, args.seconds)[0])
            ours.append(trainer_rate(corpus, args.seconds)[0])
        ratios = [o / p for o, p in zip(ours, plain, strict=True)]
        print(
            f"{folder:<32} {corpus.samples:>7} {statistics.median(plain):>9.0f} "
            f"{statistics.median(ours):>9.0f} {statistics.median(ratios):>6.2f}  "
            f"{min(ratios):.2f}-{max(ratios):.2f}"
        )


if __name__ == "__main__":
    main()
