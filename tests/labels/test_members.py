"""Label members: the same bytes every time, decodable, and each broken variant named."""

from __future__ import annotations

import io
import json

import numpy as np

from curate.config import LabelsConfig
from curate.labels import mask_caption, rng_for
from curate.labels.members import (
    Expect,
    audiomask_member,
    check_member,
    fom_member,
    itm_member,
    mlm_member,
    patchmask_member,
    regions_member,
    sample_regions,
)
from curate.labels.negatives import Negative
from curate.labels.regions import fit_codebook, region_features

SPEC = LabelsConfig(seed=5, codebook_size=4)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def test_mlm_bytes_are_stable_and_hold_the_masking() -> None:
    data = mlm_member("a dog on a red sofa", "u1", SPEC)
    assert data == mlm_member("a dog on a red sofa", "u1", SPEC)
    with np.load(io.BytesIO(data)) as z:
        want = mask_caption("a dog on a red sofa", rng_for(5, "mlm", "u1"), 0.15)
        assert z["input_ids"].tolist() == want.input_ids.tolist()
        assert z["labels"].tolist() == want.labels.tolist()
    assert check_member("mlm.npz", data, SPEC, Expect()) == []
    bad = _npz(input_ids=np.full(77, 60000, np.int32), labels=np.full(77, -100, np.int32))
    assert "outside the vocabulary" in check_member("mlm.npz", bad, SPEC, Expect())[0]
    short = _npz(input_ids=np.zeros(10, np.int32), labels=np.zeros(10, np.int32))
    assert "shapes" in check_member("mlm.npz", short, SPEC, Expect())[0]


def test_patchmask_follows_the_stored_image_grid() -> None:
    data = patchmask_member(100, 60, "u1", SPEC)
    mask = np.load(io.BytesIO(data))
    assert mask.shape == (4, 7) and mask.sum() == round(0.4 * 28)
    assert check_member("patchmask.npy", data, SPEC, Expect(width=100, height=60)) == []
    wrong_grid = check_member("patchmask.npy", data, SPEC, Expect(width=224, height=224))
    assert "want bool (14, 14)" in wrong_grid[0]
    flipped = _npy(~mask)
    assert "masked" in check_member("patchmask.npy", flipped, SPEC, Expect(width=100, height=60))[0]


def test_regions_carry_boxes_classes_and_masked_indices() -> None:
    img = np.zeros((60, 80, 3), np.uint8)
    img[:30] = (255, 0, 0)
    regions = sample_regions(img, SPEC)
    book = fit_codebook(region_features(regions), 4, rng_for(5, "codebook", "corpus"))
    data = regions_member(regions, "u1", SPEC, book)
    doc = json.loads(data)
    assert len(doc["regions"]) == 16 and len(doc["masked"]) == 4
    assert {r["class"] for r in doc["regions"]} == {0, 1}  # two colours, two codes
    assert check_member("regions.json", data, SPEC, Expect(width=80, height=60)) == []
    small = check_member("regions.json", data, SPEC, Expect(width=40, height=60))
    assert small and all("outside the image" in p for p in small)


def test_itm_negatives_must_name_samples_of_the_corpus() -> None:
    negs = [Negative(1, 0.5, "hard"), Negative(2, None, "random")]
    data = itm_member(negs, ["k0", "k1", "k2"], ["c0", "c1", "c2"])
    assert json.loads(data)["negatives"][0] == {
        "key": "k1",
        "caption": "c1",
        "similarity": 0.5,
        "kind": "hard",
    }
    assert check_member("itm.json", data, SPEC, Expect(keys=frozenset({"k1", "k2"}))) == []
    gone = check_member("itm.json", data, SPEC, Expect(keys=frozenset({"k1"})))
    assert gone == ["itm.json: negative k2 is no sample of the corpus"]


def test_frame_order_and_audio_spans_are_checked() -> None:
    data = fom_member(8, "u1", SPEC)
    assert check_member("fom.json", data, SPEC, Expect(frames=8)) == []
    assert check_member("fom.json", data, SPEC, Expect(frames=6))
    spans = audiomask_member(4.0, "u1", SPEC)
    assert check_member("audiomask.json", spans, SPEC, Expect(duration=4.0)) == []
    assert check_member("audiomask.json", spans, SPEC, Expect(duration=0.2))


def test_garbage_is_named_not_raised() -> None:
    for name in ("mlm.npz", "patchmask.npy", "regions.json", "itm.json", "fom.json"):
        (problem,) = check_member(name, b"\x00garbage", SPEC, Expect(width=10, height=10))
        assert problem.startswith(f"{name} does not decode")
    assert check_member("x.bin", b"", SPEC, Expect()) == ["x.bin: not a label member"]
