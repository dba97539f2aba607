"""pHash and thumbnail distance on real photos (scikit-image's bundled ones), real JPEG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

import curate
from curate.features.hashes import VERIFY_THRESHOLD, phash_gray, signature, thumb_distance
from curate.testing._photos import load_photo


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _dist(a: int, b: int) -> int:
    return int(bin(a ^ b).count("1"))


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return load_photo("astronaut").resize((256, 256))


def test_phash_accepts_every_input_kind_and_agrees(photo: Image.Image, tmp_path: Path) -> None:
    data = _jpeg(photo)
    (tmp_path / "a.jpg").write_bytes(data)
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    h = curate.phash([data, tmp_path / "a.jpg", str(tmp_path / "a.jpg"), decoded])
    assert h.dtype == np.uint64 and h.shape == (4,)
    assert len(set(h[:3].tolist())) == 1  # same bytes, same hash
    assert _dist(int(h[0]), int(h[3])) <= 2  # reduced JPEG decode vs full decode
    assert curate.phash([np.asarray(decoded)])[0] == h[3]


def test_edited_copies_stay_close_and_other_photos_do_not(photo: Image.Image) -> None:
    w, h = photo.size
    edits = [
        photo.resize((160, 160)),
        Image.open(io.BytesIO(_jpeg(photo, 40))),
        photo.crop((8, 6, w - 5, h - 7)),
        ImageEnhance.Brightness(photo).enhance(1.1),
    ]
    base_h, base_t = signature(_jpeg(photo))
    for edit in edits:
        eh, et = signature(_jpeg(edit))
        assert _dist(base_h, eh) <= 8
        assert thumb_distance(base_t[None], et[None])[0] < VERIFY_THRESHOLD
    for other in ("coffee", "chelsea", "rocket"):
        oh, ot = signature(_jpeg(load_photo(other).resize((256, 256))))
        assert _dist(base_h, oh) > 16
        assert thumb_distance(base_t[None], ot[None])[0] > VERIFY_THRESHOLD


def test_thumbnails_tell_apart_lookalike_flat_scenes() -> None:
    """pHash sees only luminance layout; the colour check must split these."""

    def scene(shape: str, colour: str) -> bytes:
        im = Image.new("RGB", (256, 256), "white")
        draw = ImageDraw.Draw(im)
        if shape == "circle":
            draw.ellipse((150, 40, 210, 100), fill=colour)
        else:
            draw.rectangle((150, 40, 210, 100), fill=colour)
        return _jpeg(im)

    (ha, ta), (hb, tb) = signature(scene("circle", "red")), signature(scene("square", "pink"))
    assert _dist(ha, hb) <= 8  # a pHash candidate...
    assert thumb_distance(ta[None], tb[None])[0] > VERIFY_THRESHOLD  # ...that verification vetoes
    assert thumb_distance(ta[None], ta[None])[0] == 0.0


def test_phash_gray_checks_its_input() -> None:
    with pytest.raises(ValueError, match="32×32"):
        phash_gray(np.zeros((16, 16)))
    flat = phash_gray(np.zeros((3, 32, 32)))
    assert flat.shape == (3,) and flat.dtype == np.uint64
