from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate.config import ImageConfig
from curate.errors import SampleFailure
from curate.media.image import process_image

MODES = ["no", "border", "keep_ratio", "keep_ratio_largest", "center_crop"]


def photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth photo-like RGB array (gradients plus blobs), so resizes are comparable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    chans = [
        np.sin(x * rng.uniform(3, 9) + rng.uniform(0, 6)) + np.cos(y * rng.uniform(3, 9))
        for _ in range(3)
    ]
    arr = (np.stack(chans, -1) + 2) / 4 * 255
    return np.clip(arr, 0, 255).astype(np.uint8)


def encode(arr: np.ndarray | Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    im = Image.fromarray(arr) if isinstance(arr, np.ndarray) else arr
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float64)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("w", "h"), [(900, 600), (300, 700), (120, 90)])
def test_resize_modes_match_img2dataset(mode: str, w: int, h: int) -> None:
    """Same output size as img2dataset's Resizer and pixels within a close tolerance."""
    from img2dataset.resizer import Resizer

    data = encode(photo(w, h), quality=95)
    ref_bytes, rw, rh, row, roh, err = Resizer(
        256, mode, False, encode_format="png", encode_quality=3
    )(io.BytesIO(data))
    assert err is None
    ours = process_image(data, ImageConfig(size=256, resize_mode=mode, encode_format="png"))
    assert (ours.width, ours.height, ours.original_width, ours.original_height) == (
        rw,
        rh,
        row,
        roh,
    )
    a, b = decode(ours.data), decode(ref_bytes)
    assert a.shape == b.shape
    # Pillow box/lanczos vs OpenCV area/lanczos4 (+ DCT-scaled JPEG decode): close, not equal.
    assert np.abs(a - b).mean() < 3.0, np.abs(a - b).mean()


@pytest.mark.parametrize("mode", MODES)
def test_resize_only_if_bigger_keeps_small_images(mode: str) -> None:
    data = encode(photo(100, 80))
    out = process_image(data, ImageConfig(size=256, resize_mode=mode, resize_only_if_bigger=True))
    assert (out.width, out.height) == (100, 80)


@pytest.mark.parametrize(
    ("fmt", "magic"), [("jpg", b"\xff\xd8\xff"), ("png", b"\x89PNG"), ("webp", b"RIFF")]
)
def test_encode_formats(fmt: str, magic: bytes) -> None:
    out = process_image(encode(photo(400, 300)), ImageConfig(size=128, encode_format=fmt))  # type: ignore[arg-type]
    assert out.data.startswith(magic) and out.ext == fmt
    assert Image.open(io.BytesIO(out.data)).size == (128, 128)


def test_jpeg_quality_changes_size() -> None:
    data = encode(photo(600, 400))
    lo = process_image(data, ImageConfig(encode_quality=30)).data
    hi = process_image(data, ImageConfig(encode_quality=95)).data
    assert len(lo) < len(hi)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w×h: the pixel cap must fire before any decoding."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def reason_of(data: bytes, cfg: ImageConfig | None = None) -> str:
    with pytest.raises(SampleFailure) as exc:
        process_image(data, cfg or ImageConfig())
    return exc.value.reason


def test_failures_have_specific_reasons() -> None:
    assert reason_of(png_header_only(30000, 30000)) == "too_many_pixels"
    assert (
        reason_of(png_header_only(4000, 4000), ImageConfig(max_pixels=1_000_000))
        == "too_many_pixels"
    )
    assert reason_of(b"") == "empty"
    assert reason_of(b"<!doctype html><html><body>hi</body></html>") == "not_image"
    full = encode(photo(400, 300))
    assert reason_of(full[: len(full) // 2]) == "decode_error"
    assert reason_of(encode(photo(64, 64), "TIFF")) == "format_not_allowed"
    assert reason_of(encode(photo(30, 5)), ImageConfig(min_side=10)) == "too_small"


def pixel(data: bytes, xy: tuple[int, int]) -> tuple[int, ...]:
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel(xy)  # type: ignore[return-value]


def near(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_modes_normalise_to_rgb() -> None:
    cfg = ImageConfig(size=64, resize_mode="no", encode_format="png")
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    out = process_image(encode(rgba, "PNG"), cfg).data
    assert near(pixel(out, (10, 10)), (0, 0, 255)) and near(pixel(out, (50, 10)), (255, 255, 255))

    pal = Image.new("P", (64, 64), 0)
    pal.putpalette([0, 255, 0] + [200, 0, 0] * 255)
    pal.paste(1, (32, 0, 64, 64))
    out = process_image(encode(pal, "PNG", transparency=1), cfg).data
    assert near(pixel(out, (10, 10)), (0, 255, 0)) and near(pixel(out, (50, 10)), (255, 255, 255))

    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # red in CMYK
    out = process_image(encode(cmyk, "JPEG", quality=95), cfg).data
    assert near(pixel(out, (32, 32)), (255, 0, 0), tol=30)

    sixteen = Image.fromarray(np.full((64, 64), 32768, dtype=np.uint16))
    out = process_image(encode(sixteen, "PNG"), cfg).data
    assert near(pixel(out, (5, 5)), (128, 128, 128), tol=2)

    frames = [Image.new("RGB", (64, 64), c) for c in [(255, 0, 0), (0, 0, 255)]]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    out = process_image(gif.getvalue(), cfg).data
    assert near(pixel(out, (5, 5)), (255, 0, 0), tol=20)


def test_exif_rotation_is_applied() -> None:
    im = Image.new("RGB", (80, 40), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 40, 40))  # left half blue in the stored orientation
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    data = encode(im, "JPEG", quality=95, exif=exif.tobytes())
    out = process_image(data, ImageConfig(size=64, resize_mode="no", encode_format="png"))
    assert (out.width, out.height) == (40, 80)
    assert (out.original_width, out.original_height) == (40, 80)
    # after a clockwise turn, the stored left half is on top
    assert near(pixel(out.data, (20, 10)), (0, 0, 255), tol=30)
    assert near(pixel(out.data, (20, 70)), (255, 0, 0), tol=30)
    # the same through the DCT-scaled fast path (a downscale)
    small = process_image(data, ImageConfig(size=20, resize_mode="keep_ratio", encode_format="png"))
    assert (small.width, small.height) == (20, 40)
    assert near(pixel(small.data, (10, 5)), (0, 0, 255), tol=40)
    assert near(pixel(small.data, (10, 35)), (255, 0, 0), tol=40)


def test_grayscale_and_progressive_jpegs_take_the_fast_path() -> None:
    gray = encode(Image.fromarray(photo(600, 400)[..., 0]), "JPEG", quality=90)
    out = process_image(gray, ImageConfig(size=100, resize_mode="keep_ratio", encode_format="png"))
    assert (out.width, out.height) == (150, 100)
    prog = encode(photo(600, 400), "JPEG", quality=90, progressive=True)
    out = process_image(prog, ImageConfig(size=100, resize_mode="keep_ratio", encode_format="png"))
    assert (out.width, out.height) == (150, 100)
    assert reason_of(prog[: len(prog) // 2], ImageConfig(size=100)) == "decode_error"


def test_draft_decode_stays_close_to_full_decode() -> None:
    """DCT-scaled decoding (for speed) matches a full decode + resize closely."""
    data = encode(photo(1600, 1200, seed=3), quality=92)
    fast = decode(
        process_image(
            data, ImageConfig(size=256, resize_mode="keep_ratio", encode_format="png")
        ).data
    )
    full = Image.open(io.BytesIO(data)).convert("RGB").resize((341, 256), Image.Resampling.BOX)
    assert fast.shape == (256, 341, 3)
    assert np.abs(fast - np.asarray(full, dtype=np.float64)).mean() < 2.0


def test_other_formats_are_named() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    assert reason_of(svg) == "format_not_allowed"
    assert reason_of(b"<svg><rect/></svg>") == "format_not_allowed"
    assert reason_of(b"%PDF-1.7\n...") == "format_not_allowed"
    pages = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), c) for c in [(1, 2, 3), (4, 5, 6)]]
    frames[0].save(pages, "TIFF", save_all=True, append_images=frames[1:])
    tiff_ok = ImageConfig(allowed_formats=["TIFF"])
    assert reason_of(pages.getvalue(), tiff_ok) == "format_not_allowed"  # multi-page
    single = encode(photo(16, 16), "TIFF")
    assert process_image(single, tiff_ok).width == 256


def test_extreme_shapes_are_normalised_or_named() -> None:
    tiny = process_image(encode(photo(1, 1), "PNG"), ImageConfig(size=32, resize_mode="border"))
    assert (tiny.width, tiny.height) == (32, 32)
    strip = encode(photo(1000, 10), "PNG")
    out = process_image(strip, ImageConfig(size=100, resize_mode="border"))
    assert (out.width, out.height, out.original_width) == (100, 100, 1000)
    assert reason_of(strip, ImageConfig(max_aspect_ratio=20)) == "bad_aspect_ratio"


def test_decompression_bomb_is_rejected_with_low_memory(tmp_path: Path) -> None:
    """A real, valid 40000x40000 PNG (1.6 gigapixels, ~200 kB on disk): rejected from the
    header, in a fresh process whose peak RSS stays far below the 4.8 GB a decode would take."""
    import subprocess
    import sys

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    side = 40_000
    comp = zlib.compressobj(9)
    row = b"\0" + bytes(side // 8)  # 1-bit greyscale rows, filter byte 0
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    code = (
        "import resource, sys, pathlib\n"
        "from curate.config import ImageConfig\n"
        "from curate.errors import SampleFailure\n"
        "from curate.media.image import process_image\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    process_image(pathlib.Path({str(path)!r}).read_bytes(), ImageConfig())\n"
        "except SampleFailure as e:\n"
        "    print(e.reason, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    reason, grew_kib = out.stdout.split()
    assert reason == "too_many_pixels"
    assert int(grew_kib) < 50_000, f"peak RSS grew by {grew_kib} KiB"
