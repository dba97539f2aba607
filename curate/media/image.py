"""Decode, normalise, resize and encode one image, safely.

The pixel cap is checked from the header before any pixel is decoded, truncated files are
rejected (never LOAD_TRUNCATED_IMAGES), and JPEGs that the resize will shrink are decoded
straight to (at least) the target scale with libjpeg-turbo's DCT scaling — a full decode
followed by a resize costs about twice as much.
Resize modes follow img2dataset: `no`, `keep_ratio` (shorter side = size), `center_crop`
(keep_ratio then a centred square), `keep_ratio_largest` (longer side = size) and `border`
(keep_ratio_largest, then padded with white to a centred square).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from curate.config import ImageConfig
from curate.errors import SampleFailure

__all__ = [
    "IMAGE_EXTS",
    "ProcessedImage",
    "decode_image",
    "encode_image",
    "is_picture",
    "pictures",
    "process_image",
    "resize_image",
]

IMAGE_EXTS = ("jpg", "png", "webp")  # a stored image's member
_FRAME = re.compile(r"f\d{2}\.jpg")  # a clip's sampled frames: f00.jpg, f01.jpg, ...


def is_picture(ext: str) -> bool:
    """Whether a member's extension names a picture `pictures` returns (image or frame)."""
    return ext in IMAGE_EXTS or _FRAME.fullmatch(ext) is not None


def pictures(members: dict[str, bytes]) -> list[bytes]:
    """Every picture of a sample in order: its image, or a clip's sampled frames (none for
    an audio segment). Features, labels and validate all read a sample's pictures here."""
    ext = next((e for e in IMAGE_EXTS if e in members), None)
    if ext is not None:
        return [members[ext]]
    return [members[m] for m in sorted(m for m in members if _FRAME.fullmatch(m))]


_PIL_FORMAT = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    ext: str
    width: int
    height: int
    original_width: int
    original_height: int


def _open(data: bytes, allowed: list[str]) -> Image.Image:
    """Open the header only, with just the allowed decoders; name what was refused."""
    if not data:
        raise SampleFailure("empty", "zero-byte body")
    try:
        with warnings.catch_warnings():
            # our own max_pixels check follows; Pillow's hard limit still raises the Error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=allowed)
    except Image.DecompressionBombError as err:
        raise SampleFailure("too_many_pixels", str(err)) from None
    except Image.UnidentifiedImageError:
        pass
    except (OSError, ValueError, SyntaxError) as err:
        raise SampleFailure("decode_error", str(err)) from None
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        raise SampleFailure("format_not_allowed", "format SVG is not allowed")
    if head.startswith(b"%pdf-"):
        raise SampleFailure("format_not_allowed", "format PDF is not allowed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = Image.open(io.BytesIO(data))
        raise SampleFailure("format_not_allowed", f"format {other.format} is not allowed")
    except Image.DecompressionBombError:
        raise SampleFailure("format_not_allowed", "a huge image in a format not allowed") from None
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise SampleFailure("not_image", "bytes are not a recognised image") from None


def _target_scale(w: int, h: int, cfg: ImageConfig) -> float | None:
    """The uniform scale the resize mode applies, or None when it leaves the size alone."""
    if cfg.resize_mode == "no":
        return None
    side = min(w, h) if cfg.resize_mode in ("keep_ratio", "center_crop") else max(w, h)
    if cfg.resize_only_if_bigger and side <= cfg.size:
        return None
    return cfg.size / side


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any mode to RGB: alpha composited on white, 16-bit scaled down, CMYK converted."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode.startswith("I"):
        sixteen = im.mode.startswith("I;16")
        im = im.convert("I")
        hi = im.getextrema()[1]
        peak = 65535 if sixteen or (isinstance(hi, int | float) and hi > 255) else 255
        im = im.point(lambda v: v * (255 / peak)).convert("L")
    elif im.mode == "F":
        im = im.convert("L")
    if im.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return im.convert("RGB") if im.mode != "RGB" else im


_T = Image.Transpose
_ORIENT: dict[int, Callable[[Image.Image], Image.Image]] = {
    2: lambda im: im.transpose(_T.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(_T.ROTATE_180),
    4: lambda im: im.transpose(_T.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(_T.TRANSPOSE),
    6: lambda im: im.transpose(_T.ROTATE_270),
    7: lambda im: im.transpose(_T.TRANSVERSE),
    8: lambda im: im.transpose(_T.ROTATE_90),
}


def _fast_jpeg(data: bytes, size: tuple[int, int]) -> Image.Image:
    """libjpeg-turbo's DCT-domain scaling straight to at least `size` (simplejpeg).

    strict=True turns libjpeg's "premature end of data" warnings into errors, so a
    truncated JPEG is a decode_error here too.
    """
    import simplejpeg

    arr = simplejpeg.decode_jpeg(
        data,
        colorspace="RGB",
        min_width=size[0],
        min_height=size[1],
        fastdct=True,
        fastupsample=True,
        strict=True,
    )
    return Image.fromarray(arr, "RGB")


def decode_image(data: bytes, cfg: ImageConfig) -> tuple[Image.Image, int, int]:
    """Decode to an upright RGB image; returns it with the original (upright) width, height."""
    im = _open(data, cfg.allowed_formats)
    w, h = im.size
    if w * h > cfg.max_pixels:
        raise SampleFailure("too_many_pixels", f"{w}x{h} exceeds max_pixels={cfg.max_pixels}")
    if getattr(im, "n_frames", 1) > 1 and im.format == "TIFF":
        raise SampleFailure("format_not_allowed", "multi-page TIFF")
    orientation = im.getexif().get(0x0112, 1)
    ow, oh = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    if min(ow, oh) < cfg.min_side:
        raise SampleFailure("too_small", f"{ow}x{oh} has a side under min_side={cfg.min_side}")
    if cfg.max_aspect_ratio is not None and max(ow, oh) / min(ow, oh) > cfg.max_aspect_ratio:
        raise SampleFailure(
            "bad_aspect_ratio", f"{ow}x{oh} exceeds max_aspect_ratio={cfg.max_aspect_ratio}"
        )
    scale = _target_scale(w, h, cfg)
    size = (max(1, round(w * scale)), max(1, round(h * scale))) if scale else (w, h)
    try:
        if im.format == "JPEG" and scale is not None and scale < 1 and im.mode in ("RGB", "L"):
            im = _fast_jpeg(data, size)
        else:
            if im.format == "JPEG" and scale is not None and scale < 1:
                im.draft(im.mode, size)
            im.seek(0)
            im.load()
            im = _to_rgb(im)
        turn = _ORIENT.get(orientation)
        if turn is not None:
            im = turn(im)
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise SampleFailure("decode_error", str(err)) from None
    return im, ow, oh


def resize_image(im: Image.Image, ow: int, oh: int, cfg: ImageConfig) -> Image.Image:
    """Apply the resize mode; sizes are computed from the original, not the drafted, image."""
    scale = _target_scale(ow, oh, cfg)
    if scale is None:
        return im
    nw, nh = max(1, round(ow * scale)), max(1, round(oh * scale))
    if (nw, nh) != im.size:
        shrink = nw < im.width or nh < im.height
        im = im.resize((nw, nh), Image.Resampling.BOX if shrink else Image.Resampling.LANCZOS)
    s = cfg.size
    if cfg.resize_mode == "center_crop":
        left, top = (nw - s) // 2, (nh - s) // 2
        im = im.crop((left, top, left + s, top + s))
    elif cfg.resize_mode == "border" and (nw < s or nh < s):
        canvas = Image.new("RGB", (max(s, nw), max(s, nh)), (255, 255, 255))
        canvas.paste(im, ((canvas.width - nw) // 2, (canvas.height - nh) // 2))
        im = canvas
    return im


def encode_image(im: Image.Image, cfg: ImageConfig) -> bytes:
    buf = io.BytesIO()
    fmt = _PIL_FORMAT[cfg.encode_format]
    if fmt == "PNG":
        im.save(buf, format=fmt, optimize=False, compress_level=6)
    elif fmt == "WEBP":
        im.save(buf, format=fmt, quality=cfg.encode_quality, method=4)
    else:
        im.save(buf, format=fmt, quality=cfg.encode_quality)
    return buf.getvalue()


def process_image(data: bytes, cfg: ImageConfig) -> ProcessedImage:
    """Bytes in, resized encoded bytes out; raises SampleFailure with a specific reason."""
    im, ow, oh = decode_image(data, cfg)
    im = resize_image(im, ow, oh, cfg)
    return ProcessedImage(
        data=encode_image(im, cfg),
        ext=cfg.encode_format,
        width=im.width,
        height=im.height,
        original_width=ow,
        original_height=oh,
    )
