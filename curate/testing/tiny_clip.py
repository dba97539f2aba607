"""Train `curate-tiny`, a CLIP small enough to ship, on the synthetic web, in seconds on a CPU.

CLIP stages need a model whose scores mean something in hermetic tests (no network, no
multi-hundred-MB weights). This one learns the synthetic web's two kinds of item: crops of
scikit-image photos (20 sources, a few captions each) and drawn scenes with compositional
captions ("a red circle on the left and a blue star on the right, on a white background"),
so its score separates true captions from planted mismatched ones on webs it never saw.

Data: the ok rows of one built web (with their true captions), plus more photo crops and
scenes drawn by the same generators (cheaper than a bigger web, and more scenes is what the
compositional captions need). Every image is pre-rendered at the model's input size in a few
variants that mimic what the pipeline stores (whole frame, white border to a square, small
JPEG re-encodes, mild crops), so a step is only tensor work. Never flipped: captions say left
and right. The loss is CLIP's symmetric contrastive loss with every same-content pair in the
batch counted as a positive (photo captions repeat within a batch).

Webs use seeds `_WEB_SEED_BASE + seed`, far from the small seeds tests hold out (101, ...).
Run: `python -m curate.testing.tiny_clip --out curate/features/models/curate-tiny.pt`.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from curate.testing._photos import PHOTO_SOURCES, crop_window, load_photo
from curate.testing._scenes import BACKGROUNDS, COLORS, SHAPES, Scene, _draw, random_scene
from curate.testing.web import build_web

if TYPE_CHECKING:
    import torch

__all__ = ["train_tiny_clip"]

_WEB_SEED_BASE = 10_000
_VARIANTS = 4
_FOILS_PER_STEP = 48
_WORK_SIDE = 160  # decoded images are shrunk to this longest side before variants are made
_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip's defaults, used by the val transform
_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class _Sample:
    image: Image.Image
    caption: str
    group: str
    """Items with the same group share content: a photo source, or a scene's exact caption."""
    foils: tuple[str, ...] = ()
    """Captions one detail away from the truth, trained as negatives so details matter."""


def _shrink(im: Image.Image) -> Image.Image:
    im = im.convert("RGB")
    if max(im.size) > _WORK_SIDE:
        im.thumbnail((_WORK_SIDE, _WORK_SIDE), Image.Resampling.BOX)
    return im


def _web_samples(work: Path, n_items: int, seed: int) -> list[_Sample]:
    """Ok rows of a freshly built web, captioned with what the image really shows."""
    web = build_web(work / f"web-{seed}", n_items=n_items, seed=seed)
    rows = web.truth.filter(web.truth["expected_status"] == "ok")
    out = []
    for route, caption, kind, source in rows.select(
        "route", "true_caption", "kind", "source"
    ).iter_rows():
        path = web.files_dir / str(route).rsplit("/", 1)[-1]
        try:
            with Image.open(path) as im:
                im.draft("RGB", (_WORK_SIDE, _WORK_SIDE))
                img = _shrink(im)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # a planted broken file
        out.append(_Sample(img, caption, source if kind == "photo" else caption))
    return out


def _extra_scenes(n: int, rng: np.random.Generator) -> list[_Sample]:
    """Scenes from the web's own generator, drawn small (2x then box-filtered, as the web)."""
    out = []
    for _ in range(n):
        scene = random_scene(rng)
        k = _WORK_SIDE / max(scene.width, scene.height)
        size = (max(1, round(scene.width * k)), max(1, round(scene.height * k)))
        img = _draw(scene, 2 * k).resize(size, Image.Resampling.BOX)
        out.append(_Sample(img, scene.caption, scene.caption, _foils(scene, rng)))
    return out


def _foils(scene: Scene, rng: np.random.Generator) -> tuple[str, ...]:
    """The caption with one color, one shape, the background, or the outer shapes changed."""
    shapes = list(scene.shapes)
    i = int(rng.integers(len(shapes)))
    taken = {s.color for s in shapes} | {scene.background}
    color = str(rng.choice([c for c in COLORS if c not in taken]))
    shape = str(rng.choice([s for s in SHAPES if s != shapes[i].shape]))
    background = str(rng.choice([c for c in BACKGROUNDS if c not in taken] or [color]))
    variants = [
        replace(scene, shapes=(*shapes[:i], replace(shapes[i], color=color), *shapes[i + 1 :])),
        replace(scene, shapes=(*shapes[:i], replace(shapes[i], shape=shape), *shapes[i + 1 :])),
        replace(scene, background=background),
    ]
    first, last = shapes[0], shapes[-1]
    if len(shapes) > 1 and (first.color, first.shape) != (last.color, last.shape):
        moved = (
            replace(first, color=last.color, shape=last.shape),
            *shapes[1:-1],
            replace(last, color=first.color, shape=first.shape),
        )
        variants.append(replace(scene, shapes=moved))
    return tuple(v.caption for v in variants if v.caption != scene.caption)


def _extra_photos(n: int, rng: np.random.Generator) -> list[_Sample]:
    """Random crops of the photo sources, framed like the web's (subject kept in view)."""
    out = []
    for i in range(n):
        src = PHOTO_SOURCES[i % len(PHOTO_SOURCES)]
        fw, fh = rng.uniform(src.min_frac, min(0.95, src.min_frac + 0.3), size=2)
        x0, y0 = rng.uniform(0.0, 1.0 - fw), rng.uniform(0.0, 1.0 - fh)
        window = (float(x0), float(y0), float(x0 + fw), float(y0 + fh))
        img = crop_window(load_photo(src.name), window, _WORK_SIDE)
        out.append(_Sample(img, str(rng.choice(src.captions)), src.name))
    return out


def _square(im: Image.Image, side: int) -> NDArray[np.uint8]:
    """The model's val transform before normalising: a bicubic squash to side x side."""
    return np.asarray(im.resize((side, side), Image.Resampling.BICUBIC), dtype=np.uint8)


def _border(im: Image.Image) -> Image.Image:
    """The pipeline's `border` resize mode: centred on a white square."""
    side = max(im.size)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return canvas


def _variants(im: Image.Image, side: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    """(V, side, side, 3): whole frame, bordered, small re-encoded JPEG, mild crop."""
    out = [_square(im, side), _square(_border(im), side)]
    small = _border(im) if rng.uniform() < 0.5 else im
    longest = int(rng.choice([64, 96, 128]))
    k = longest / max(small.size)
    small = small.resize(
        (max(1, round(small.width * k)), max(1, round(small.height * k))),
        Image.Resampling.BICUBIC,
    )
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
    out.append(_square(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), side))
    fw, fh = rng.uniform(0.85, 1.0, size=2)
    x0, y0 = rng.uniform(0.0, 1.0 - fw), rng.uniform(0.0, 1.0 - fh)
    w, h = im.size
    box = (x0 * w, y0 * h, (x0 + fw) * w, (y0 + fh) * h)
    out.append(np.asarray(im.resize((side, side), Image.Resampling.BICUBIC, box=box)))
    return np.stack(out)


class _Texts:
    """Every caption and foil, tokenized once, with a trainable table of only the used tokens.

    The token table has 49408 rows but captions use a few hundred; training a copy of those
    rows (written back before saving) spares each step a dense gradient and AdamW update of
    the whole table. Unused rows keep their initial values.
    """

    def __init__(self, samples: list[_Sample], tokenizer: Any, model: Any) -> None:
        import torch

        self.strings = sorted({s.caption for s in samples} | {f for s in samples for f in s.foils})
        index = {c: i for i, c in enumerate(self.strings)}
        tokens = tokenizer(self.strings)
        self.tokens = tokens[:, : int((tokens != 0).sum(dim=1).max())]
        self.used = torch.unique(self.tokens)
        remap = torch.zeros(int(self.tokens.max()) + 1, dtype=torch.long)
        remap[self.used] = torch.arange(len(self.used))
        self.compact = remap[self.tokens]
        weight = model.token_embedding.weight
        self.table = torch.nn.Parameter(weight.detach()[self.used].clone())
        weight.requires_grad_(False)

        group_names = sorted({s.group for s in samples})
        group_id = {g: i for i, g in enumerate(group_names)}
        # A foil that is some other image's true caption belongs to that image's group.
        by_caption = {s.caption: group_id[s.group] for s in samples}
        fresh = iter(range(len(group_names), len(group_names) + len(self.strings)))
        self.group = torch.tensor([by_caption.get(c, -1) for c in self.strings])
        for i in torch.nonzero(self.group < 0).flatten().tolist():
            self.group[i] = next(fresh)
        self.sample_caption = torch.tensor([index[s.caption] for s in samples])
        self.sample_group = torch.tensor([group_id[s.group] for s in samples])
        self.foils = [torch.tensor([index[f] for f in s.foils], dtype=torch.long) for s in samples]

    def columns(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The batch's distinct true captions and one random foil for each of a few images.

        Foils are capped: the text tower costs as much as the image tower at ~200 captions.
        """
        import torch

        picks = [self.sample_caption[idx]]
        for i in idx.tolist():
            f = self.foils[i]
            if len(f):
                picks.append(f[torch.randint(len(f), (1,), generator=gen)])
            if len(picks) > _FOILS_PER_STEP:
                break
        return torch.unique(torch.cat(picks))

    def encode(self, model: Any, cols: torch.Tensor) -> torch.Tensor:
        """CLIP.encode_text, trimmed to the longest caption (exact: the tower is causal)."""
        import torch.nn.functional as F
        from open_clip.transformer import text_global_pool

        tokens = self.tokens[cols]
        length = tokens.shape[1]
        x = F.embedding(self.compact[cols], self.table) + model.positional_embedding[:length]
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        x = model.ln_final(x)
        x = text_global_pool(x, tokens, model.text_pool_type)
        return x @ model.text_projection

    def write_back(self, model: Any) -> None:
        """Copy the trained rows into the model's token table."""
        import torch

        with torch.no_grad():
            model.token_embedding.weight[self.used] = self.table.detach()
        model.token_embedding.weight.requires_grad_(True)


def _loss(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy against uniform targets over each row's positives.

    Text-to-image rows are only the captions with an image in the batch: foils have none.
    """
    import torch

    def side(lg: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        target = pos / pos.sum(dim=1, keepdim=True)
        return -(torch.log_softmax(lg, dim=1) * target).sum(dim=1).mean()

    has_image = positive.sum(dim=0) > 0
    return (side(logits, positive) + side(logits.T[has_image], positive.T[has_image])) / 2


def _optimizer(model: Any, table: torch.nn.Parameter, lr: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on gains, biases, embeddings and the temperature."""
    import torch

    decay: list[torch.nn.Parameter] = []
    rest = [table]
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (rest if plain else decay).append(p)
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def _fit(
    model: Any,
    pixels: torch.Tensor,
    text: _Texts,
    steps: int,
    batch_size: int,
    lr: float,
    gen: torch.Generator,
) -> list[float]:
    """The training loop; returns the loss per step."""
    import torch

    mean = torch.tensor(_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(_STD).view(1, 3, 1, 1) * 255
    model.to(memory_format=torch.channels_last)  # faster convolutions on CPU (the patch stem)
    model.train()
    opt = _optimizer(model, text.table, lr)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * i / steps))
    )
    losses: list[float] = []
    for _ in range(steps):
        idx = torch.randint(len(pixels), (batch_size,), generator=gen)
        var = torch.randint(pixels.shape[1], (batch_size,), generator=gen)
        x = ((pixels[idx, var].float() - mean) / std).contiguous(memory_format=torch.channels_last)
        cols = text.columns(idx, gen)
        img = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        txt = torch.nn.functional.normalize(text.encode(model, cols), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        positive = (text.sample_group[idx][:, None] == text.group[cols][None, :]).float()
        loss = _loss(logits, positive)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
    model.eval().to(memory_format=torch.contiguous_format)
    text.write_back(model)
    return losses


def _save(model: Any, out: Path) -> None:
    """fp16 weights in the {"state_dict": ...} form open_clip loads from `pretrained=<path>`.

    Written to a temporary file and renamed: processes that train on first use at the same
    time never leave a torn checkpoint.
    """
    import torch

    state = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is package data
        torch.save({"state_dict": state}, tmp)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def train_tiny_clip(
    out: Path,
    seed: int = 0,
    n_items: int = 500,
    extra_scenes: int = 2500,
    extra_photos: int = 200,
    steps: int = 240,
    batch_size: int = 128,
    lr: float = 3e-3,
    work_dir: Path | None = None,
) -> dict[str, float]:
    """Train from scratch and write `out`; returns metrics (loss, seconds, sizes).

    Same seed, same machine: same weights. The web is built under `work_dir` (a temporary
    folder in it; the system's default when None) and removed afterwards.
    """
    import open_clip
    import torch

    from curate.features.clip_model import TINY_MODEL, register_model_configs

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        samples = _web_samples(Path(tmp), n_items, _WEB_SEED_BASE + seed) if n_items else []
    samples += _extra_scenes(extra_scenes, rng) + _extra_photos(extra_photos, rng)
    if not samples:
        raise ValueError("no training images: n_items, extra_scenes and extra_photos are all 0")

    register_model_configs()
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG state alone
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_MODEL)
        size = model.visual.image_size
        side = int(size if isinstance(size, int) else size[0])
        variants = [_variants(s.image, side, rng) for s in samples]
        pixels = torch.from_numpy(np.stack(variants)).permute(0, 1, 4, 2, 3)  # N,V,3,H,W
        text = _Texts(samples, open_clip.get_tokenizer(TINY_MODEL), model)
        t_data = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        losses = _fit(model, pixels, text, steps, batch_size, lr, gen)
    out = Path(out)
    _save(model, out)
    t1 = time.perf_counter()
    tail = losses[-max(1, steps // 10) :]
    return {
        "seconds": t1 - t0,
        "data_seconds": t_data - t0,
        "train_seconds": t1 - t_data,
        "final_loss": float(np.mean(tail)) if tail else float("nan"),
        "steps": float(steps),
        "images": float(len(samples)),
        "captions": float(len(text.strings)),
        "parameters": float(sum(p.numel() for p in model.parameters())),
        "bytes": float(out.stat().st_size),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: train, write the checkpoint, print the metrics."""
    parser = argparse.ArgumentParser(
        prog="python -m curate.testing.tiny_clip",
        description="Train the bundled curate-tiny CLIP on the synthetic web.",
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--n-items", type=int, default=500, help="size of the web to build")
    parser.add_argument("--extra-scenes", type=int, default=2500)
    parser.add_argument("--extra-photos", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--work-dir", type=Path, default=None, help="where to build the web")
    args = parser.parse_args(argv)
    metrics = train_tiny_clip(
        args.out,
        seed=args.seed,
        n_items=args.n_items,
        extra_scenes=args.extra_scenes,
        extra_photos=args.extra_photos,
        steps=args.steps,
        batch_size=args.batch_size,
        work_dir=args.work_dir,
    )
    for key, value in metrics.items():
        print(f"{key}: {value:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
