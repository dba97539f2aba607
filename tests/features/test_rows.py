"""Per-sample feature rows: what makes two samples the "same URL and caption"."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from curate.features.rows import feature_row


def _members(color: tuple[int, int, int]) -> dict[str, bytes]:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, "JPEG", quality=90)
    return {"jpg": buf.getvalue(), "txt": b"a red square"}


def _record(uid: str, url: str | None, path: str | None) -> dict[str, Any]:
    sizes = {"width": 32, "height": 24, "original_width": 32, "original_height": 24}
    return {"uid": uid, "url": url, "path": path, "caption": "a red square", **sizes}


def test_in_source_images_captioned_alike_have_no_url_caption_key() -> None:
    a = feature_row(_record("a", None, None), _members((200, 0, 0)))
    b = feature_row(_record("b", None, None), _members((0, 0, 200)))
    assert a["url_caption_hash"] == b["url_caption_hash"] == ""
    assert a["caption_hash"] == b["caption_hash"] != ""  # caption dedup still sees them


def test_the_same_url_or_file_with_the_same_caption_shares_a_key() -> None:
    url = "http://example.com/x.jpg"
    a = feature_row(_record("a", url, None), _members((200, 0, 0)))
    b = feature_row(_record("b", url, None), _members((0, 0, 200)))
    c = feature_row(_record("c", None, "/data/x.jpg"), _members((200, 0, 0)))
    assert a["url_caption_hash"] == b["url_caption_hash"] != ""
    assert c["url_caption_hash"] not in ("", a["url_caption_hash"])
