"""The held-out split groups samples by source: a caption or a video held out is nowhere in
training, whatever the order samples are read in."""

from __future__ import annotations

import json

import pytest

from curate.train.split import Split, held_out, pick_held, sources_of, split_groups


def test_the_held_out_hash_is_stable_and_nested() -> None:
    keys = [f"{i:09d}" for i in range(4000)]
    picked = [k for k in keys if held_out(k, 0.2)]
    assert abs(len(picked) / len(keys) - 0.2) < 0.03
    assert picked == [k for k in keys if held_out(k, 0.2)]
    assert set(picked) <= {k for k in keys if held_out(k, 0.5)}


def test_a_clip_s_source_is_its_video_and_a_picture_s_its_caption_and_group() -> None:
    # subtitles repeat across videos: a clip is grouped by its video alone
    meta = json.dumps({"parent": "vid", "uid": "vid_00001"}).encode()
    assert sources_of("vid_00001", {"txt": b"thank you", "json": meta}) == ["parent:vid"]
    assert sources_of("vid_00002", {"txt": b"thank you"}) == ["parent:vid"]
    photo = json.dumps({"group": 7}).encode()
    assert sources_of("abc", {"txt": b" a red sky \n", "json": photo}) == [
        "txt:a red sky",
        "group:7",
    ]
    assert sources_of("abc", {"json": b"not json"}) == []


def test_groups_join_shared_captions_and_parents_and_are_named_by_their_smallest_key() -> None:
    rows = [
        ("k5", ["txt:a cat"]),
        ("k2", ["txt:a dog"]),
        ("k9", ["txt:a cat", "parent:v1"]),
        ("k1", ["parent:v1"]),
        ("k7", ["txt:a bird"]),
    ]
    groups = split_groups(rows)
    assert groups == {"k5": "k1", "k9": "k1", "k1": "k1", "k2": "k2", "k7": "k7"}
    assert split_groups(reversed(rows)) == groups  # any reading order


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_no_held_out_caption_or_video_appears_in_training(fraction: float) -> None:
    rows = []
    for i in range(3000):
        caption = f"txt:caption {i % 700}"  # captions repeat across samples
        video = f"parent:video {i // 7}"  # seven clips per video
        rows.append((f"key{i:05d}", [caption, video] if i % 3 else [caption]))
    split = Split.of(rows, fraction)
    held = {k for k, _ in rows if split.is_held_out(k)}
    # whole groups, in hash order, until the fraction is reached
    assert fraction <= len(held) / len(rows) < fraction + 0.05
    sources = dict(rows)
    held_sources = {s for k in held for s in sources[k]}
    train_sources = {s for k, _ in rows if k not in held for s in sources[k]}
    assert not held_sources & train_sources
    assert set(split.keys(True)) == held


def test_held_out_groups_are_taken_in_hash_order_until_the_fraction_is_reached() -> None:
    # ten videos of ten clips: a coin per video could hold out none or half of them
    group = {f"v{v}_{c:04d}": f"v{v}_0000" for v in range(10) for c in range(10)}
    for fraction in (0.1, 0.2, 0.3):
        held = pick_held(group, fraction)
        assert len(held) == round(fraction * 10)
        assert pick_held(group, fraction + 0.1) > held  # nested
    assert pick_held(group, 0.0) == frozenset()
    assert len(pick_held(group, 1.0)) == 9  # something is left to train on
