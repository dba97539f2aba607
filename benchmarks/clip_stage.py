"""CLIP scoring throughput: naive open_clip against curate's stage, fp32 and bf16, same pairs.

What it measures. N image–caption pairs from the synthetic web (photos and drawn scenes,
stored as the pipeline stores them: 256 px "border" JPEGs; captions as served, so some repeat).
Three ways to score them, each on the same pairs, in this process, one after another:

- naive: what a first script does — per-sample PIL preprocessing, batches of B, captions
  tokenized to the full 77-token context, fp32 weights, `encode_image` / `encode_text`;
- curate fp32: `curate.features.clip` — same preprocessing and weights, text batches trimmed
  to their longest caption (exact for causal text towers), each distinct caption once;
- curate bf16: the same with the transformer trunks in bf16 (ends in fp32).

Timing uses ViT-B-32 with random weights (no model hub here), which costs the same FLOPs as
trained ones; both precisions are built from the same seed, so they hold the same weights.
Agreement (max |Δscore| and Spearman against naive fp32) is printed for that model and for
the bundled trained tiny CLIP, whose scores are meaningful (random-weight scores all sit in
a narrow band near 0, so their Spearman is fragile). Goals (issue 5):
fp32 ≥ 1.3× naive with max |Δ| ≤ 1e-4; bf16 ≥ 3× naive with Spearman ≥ 0.99, |Δ| ≤ 0.01.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pairs(n: int, workdir: Path) -> tuple[list[bytes], list[str]]:
    import polars as pl

    from curate.config import ImageConfig
    from curate.errors import SampleFailure
    from curate.media.image import process_image
    from curate.testing import build_web

    web = build_web(workdir / "web", n_items=int(n * 1.25) + 20, seed=2024)
    cfg = ImageConfig(size=256, resize_mode="border", encode_quality=95)
    images, texts = [], []
    for r in web.truth.filter(pl.col("expected_status") == "ok").iter_rows(named=True):
        try:
            stored = process_image(
                (web.files_dir / r["route"].rsplit("/", 1)[-1]).read_bytes(), cfg
            )
        except SampleFailure:
            continue
        images.append(stored.data)
        texts.append(r["caption"])
        if len(images) == n:
            break
    return images, texts


def naive(cm: Any, images: list[bytes], texts: list[str], batch: int) -> np.ndarray:
    import torch
    from PIL import Image

    out = []
    for s in range(0, len(images), batch):
        ims = [
            cm.preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images[s : s + batch]
        ]
        tok = cm.tokenizer(texts[s : s + batch])
        with torch.inference_mode():
            a = cm.model.encode_image(torch.stack(ims))
            t = cm.model.encode_text(tok)
        a = torch.nn.functional.normalize(a.float(), dim=-1)
        t = torch.nn.functional.normalize(t.float(), dim=-1)
        out.append((a * t).sum(-1).numpy())
    return np.concatenate(out)


def ours(cm: Any, images: list[bytes], texts: list[str], batch: int) -> np.ndarray:
    from curate.features.clip import encode_images, encode_texts, scores

    return scores(encode_images(cm, images, batch), encode_texts(cm, texts))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def timed(fn: Any, *args: Any) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    res = fn(*args)
    return res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--model", default="ViT-B-32")
    args = ap.parse_args()
    import torch

    from curate.features.clip_model import TINY_MODEL, load_clip

    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        images, texts = pairs(args.n, Path(tmp))
    print(f"# {len(images)} pairs, {len(set(texts))} distinct captions; batch {args.batch}")
    print(f"# timing model: {args.model} with RANDOM weights (no model hub here)")
    torch.manual_seed(0)  # the same random weights in both precisions, or Δ compares two models
    fp32 = load_clip(args.model, None, "cpu", "fp32")
    torch.manual_seed(0)
    bf16 = load_clip(args.model, None, "cpu", "bf16")
    ours(fp32, images[:8], texts[:8], 8)  # warm-up: first-call allocations
    ours(bf16, images[:8], texts[:8], 8)
    base, t_naive = timed(naive, fp32, images, texts, args.batch)
    s32, t32 = timed(ours, fp32, images, texts, args.batch)
    s16, t16 = timed(ours, bf16, images, texts, args.batch)
    n = len(images)
    head = ("method", "seconds", "pairs/s", "vs naive", "max|Δ|", "spearman")
    print(f"{head[0]:<14} " + " ".join(f"{h:>8}" for h in head[1:]))
    for name, sc, t in (
        ("naive fp32", base, t_naive),
        ("curate fp32", s32, t32),
        ("curate bf16", s16, t16),
    ):
        print(
            f"{name:<14} {t:8.1f} {n / t:8.1f} {t_naive / t:7.2f}× "
            f"{np.abs(sc - base).max():9.2e} {spearman(sc, base):8.4f}"
        )
    tiny32 = load_clip(TINY_MODEL, None, "cpu", "fp32")
    tiny16 = load_clip(TINY_MODEL, None, "cpu", "bf16")
    tb = naive(tiny32, images, texts, args.batch)
    t32s, t16s = ours(tiny32, images, texts, args.batch), ours(tiny16, images, texts, args.batch)
    print(f"# agreement on the trained {TINY_MODEL} (meaningful scores):")
    print(f"curate fp32: max|Δ| {np.abs(t32s - tb).max():.2e}, spearman {spearman(t32s, tb):.4f}")
    print(f"curate bf16: max|Δ| {np.abs(t16s - tb).max():.2e}, spearman {spearman(t16s, tb):.4f}")
    ok32 = t_naive / t32 >= 1.3 and np.abs(s32 - base).max() <= 1e-4
    ok16 = t_naive / t16 >= 3.0 and np.abs(t16s - tb).max() <= 0.01 and spearman(t16s, tb) >= 0.99
    print(f"fp32 goal (>= 1.3x, |Δ| <= 1e-4): {'MET' if ok32 else 'MISSED'}")
    print(
        f"bf16 goal (>= 3x; on the trained model |Δ| <= 0.01, spearman >= 0.99): "
        f"{'MET' if ok16 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
