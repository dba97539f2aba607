"""Load a CLIP model through open_clip, whether real weights or the bundled tiny one.

Every model, `curate-tiny` included, goes through `open_clip.create_model_and_transforms`
and `open_clip.get_tokenizer`, so tests that run the tiny model offline exercise the same
loading code as a production run with real weights. The tiny model's architecture is an
open_clip config in `models/` (registered with open_clip on first use) and its weights a
checkpoint next to it; a missing checkpoint is retrained from the synthetic web.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "TINY_MODEL",
    "ClipModel",
    "input_dtype",
    "load_clip",
    "models_dir",
    "register_model_configs",
    "tiny_checkpoint",
    "to_bf16_trunks",
]

TINY_MODEL = "curate-tiny"
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
# A built-in open_clip config cannot carry preprocessing, so it is set here. The tiny model
# was trained on whole frames squashed to a square: its scene captions name shapes on the
# left and right, which open_clip's default centre crop would cut off.
_RESIZE_MODE: dict[str, str] = {TINY_MODEL: "squash"}
_LOCK = threading.Lock()


def models_dir() -> Path:
    """Folder of bundled open_clip configs and checkpoints; ships as package data."""
    return Path(__file__).resolve().parent / "models"


def tiny_checkpoint() -> Path:
    """The tiny model's weights; `curate.testing.tiny_clip` regenerates them."""
    return models_dir() / f"{TINY_MODEL}.pt"


@dataclass(frozen=True)
class ClipModel:
    """A loaded model with the preprocessing and tokenizer that belong to it."""

    model: Any
    """open_clip CLIP module, in eval mode, on `device`, in `precision`."""
    preprocess: Callable[[Any], Any]
    """PIL image -> CHW float32 tensor (open_clip's validation transform)."""
    tokenizer: Callable[[list[str]], Any]
    """Captions -> LongTensor (n, context_length)."""
    name: str
    pretrained: str | None
    device: str
    precision: str


@functools.cache
def register_model_configs() -> None:
    """Make the bundled configs known to open_clip; once, since each add rescans every path."""
    import open_clip

    open_clip.add_model_config(models_dir())


def _known_model(name: str) -> bool:
    import open_clip

    if name.startswith(("hf-hub:", "local-dir:")):
        return True  # open_clip reads these configs from the hub or the folder
    return open_clip.get_model_config(name.replace("/", "-")) is not None


def _checkpoint(model: str, pretrained: str | None) -> str | None:
    """The `pretrained` value for open_clip: a tag, an existing file, or None (random init)."""
    import open_clip

    if pretrained is None:
        if model != TINY_MODEL:
            return None
        path = tiny_checkpoint()
        if not path.is_file():
            raise ConfigError(
                f"{path}: the bundled tiny CLIP checkpoint is missing; regenerate it with "
                "`python -m curate.testing.tiny_clip --out curate/features/models/curate-tiny.pt`"
            )
        return str(path)
    if open_clip.get_pretrained_cfg(model, pretrained):
        return pretrained  # a known tag: open_clip downloads (or finds cached) weights
    if not Path(pretrained).is_file():
        raise ConfigError(
            f"pretrained checkpoint {pretrained!r} for model {model!r} does not exist "
            "and is not an open_clip tag for that model"
        )
    return pretrained


@functools.lru_cache(maxsize=8)
def _load(model: str, pretrained: str | None, device: str, precision: str) -> ClipModel:
    import open_clip

    if not _known_model(model):
        raise ConfigError(f"model {model!r} is not an open_clip model config")
    weights = _checkpoint(model, pretrained)
    net, _, preprocess = open_clip.create_model_and_transforms(
        model,
        pretrained=weights,
        precision="fp32",
        device=device,
        image_resize_mode=_RESIZE_MODE.get(model),
    )
    net.eval()
    if precision == "bf16":
        to_bf16_trunks(net)
    tokenizer = open_clip.get_tokenizer(model)
    return ClipModel(net, preprocess, tokenizer, model, pretrained, device, precision)


def _bf16_boundary(module: Any) -> None:
    """Run `module` in bf16 between fp32 neighbours: cast its inputs in and its output out."""
    import torch

    def cast(x: Any, dtype: Any) -> Any:
        return x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    def before(_: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return (
            tuple(cast(a, torch.bfloat16) for a in args),
            {k: cast(v, torch.bfloat16) for k, v in kwargs.items()},
        )

    module.to(torch.bfloat16)
    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(lambda _m, _a, out: cast(out, torch.float32))


def to_bf16_trunks(net: Any) -> None:
    """bf16 where the FLOPs are, fp32 where rounding costs agreement and time does not.

    The transformer trunks of both towers (all but a few percent of the FLOPs) run in bf16.
    The ends stay fp32: the patch embedding sees the normalised pixels (rounding them to bf16
    alone doubled the worst score error on a trained ViT), and the final norms and
    projections make the embedding that is compared. A tower that is not a transformer
    (e.g. a ModifiedResNet) has no such trunk and runs wholly in bf16.
    """
    import torch

    visual = getattr(net, "visual", None)
    trunk = getattr(visual, "transformer", None)
    if trunk is not None and hasattr(visual, "conv1"):
        _bf16_boundary(trunk)
    elif visual is not None:
        visual.to(torch.bfloat16)
    # CLIP keeps the text tower's parts on the model; CustomTextCLIP nests them in `.text`.
    tower = net if hasattr(net, "token_embedding") else getattr(net, "text", None)
    text = getattr(tower, "transformer", None)
    if text is not None and hasattr(tower, "token_embedding"):
        _bf16_boundary(text)
    elif tower is not None:
        tower.to(torch.bfloat16)


def input_dtype(cm: ClipModel) -> Any:
    """The dtype the image tower takes its pixels in (its first parameter's)."""
    return next(cm.model.visual.parameters()).dtype


def load_clip(
    model: str, pretrained: str | None = None, device: str = "cpu", precision: str = "fp32"
) -> ClipModel:
    """Load (once per process: Dask tasks call this per partition) a model for scoring.

    `pretrained` is an open_clip tag (downloads), a local checkpoint path, or None: random
    init, except for `curate-tiny`, whose bundled checkpoint is used (if it is missing, the
    error names the command that regenerates it).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    register_model_configs()
    with _LOCK:  # threads of one worker must not load the same model twice
        return _load(model, pretrained, device, precision)
