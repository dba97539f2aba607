"""Timed text: real SRT, WebVTT and JSON inputs, clean cues out, repairs and failures named."""

from __future__ import annotations

import json

import pytest

from curate.errors import SampleFailure
from curate.media.timedtext import Cue, parse_json_transcript, parse_subtitles, whole

VTT = """WEBVTT - a header line

NOTE written by hand

STYLE
::cue { color: yellow }

intro
00:00:00.000 --> 00:00:02.500 align:start position:10% line:0
<v Roger>Hello &amp; <b>welcome</b> &lt;3</v>

00:02.500 --> 00:04.000
<c.yellow>Second</c> line
over two
"""

SRT = """1
00:00:01,000 --> 00:00:03,000
<i>Hello</i> &amp; welcome

2
00:00:02,000 --> 00:00:05,000
<font color="red">overlaps</font> the first

3
00:00:06,000 --> 00:00:07,000
<b></b>

4
00:00:00,200 --> 00:00:00,800
listed late
"""


def test_webvtt_cue_settings_tags_entities_and_blocks() -> None:
    tt = parse_subtitles(VTT.encode(), "vtt")
    assert tt.cues == (
        Cue(0.0, 2.5, "Hello & welcome <3"),
        Cue(2.5, 4.0, "Second line over two"),
    )
    assert tt.repairs == ()


def test_srt_repairs_are_made_and_recorded() -> None:
    tt = parse_subtitles(SRT.encode(), "srt")
    assert tt.cues == (
        Cue(0.2, 0.8, "listed late"),
        Cue(1.0, 2.0, "Hello & welcome"),  # cut where the next cue starts
        Cue(2.0, 5.0, "overlaps the first"),
    )
    assert tt.repairs == (
        "dropped 1 empty or zero-length cue(s)",
        "put cues in time order",
        "clipped 1 overlapping cue(s)",
    )


def test_utf16_with_a_bom_and_utf8_with_one_are_text() -> None:
    for data in (SRT.encode("utf-16"), b"\xef\xbb\xbf" + SRT.encode()):
        assert parse_subtitles(data, "srt").cues[1].text == "Hello & welcome"


@pytest.mark.parametrize(
    ("data", "fmt", "reason"),
    [
        (bytes(range(256)) * 4, "srt", "subtitles_not_text"),
        (b"\x00\x01\x02\x03 00:00:01,000 --> 00:00:02,000 \x04\x05", "srt", "subtitles_not_text"),
        (b"this is a plain paragraph, not subtitles at all\n", "vtt", "subtitles_unparsable"),
        (b"1\n00:00:05,000 --> 00:00:02,000\nbackwards\n", "srt", "subtitles_backwards"),
    ],
)
def test_input_without_a_clear_meaning_is_a_reason(data: bytes, fmt: str, reason: str) -> None:
    with pytest.raises(SampleFailure) as info:
        parse_subtitles(data, fmt)
    assert info.value.reason == reason


def test_json_transcripts() -> None:
    items = [
        {"start": 0, "end": 1.5, "text": " one  <i>two</i> "},
        {"start": 1.5, "end": 3, "text": ""},
    ]
    tt = parse_json_transcript(json.dumps(items).encode())
    assert tt.cues == (Cue(0.0, 1.5, "one two"),)
    assert tt.repairs == ("dropped 1 empty or zero-length cue(s)",)
    for bad in ([{"start": "0", "end": 1, "text": "x"}], {"start": 0}, [{"start": 0, "end": 1}]):
        with pytest.raises(SampleFailure, match="subtitles_unparsable"):
            parse_json_transcript(json.dumps(bad).encode())
    with pytest.raises(SampleFailure, match="subtitles_backwards"):
        parse_json_transcript(b'[{"start": -1, "end": 1, "text": "x"}]')


def test_empty_input_and_whole_file_captions() -> None:
    assert parse_subtitles(b"", "srt").cues == ()
    assert parse_subtitles(b"WEBVTT\n\n", "vtt").cues == ()
    assert whole(" A <b>dog</b> runs ", 12.5).cues == (Cue(0.0, 12.5, "A dog runs"),)
    assert whole(None, 3.0).cues == () and whole("x", 0.0).cues == ()


def test_cues_starting_together_become_one_stretch() -> None:
    items = [{"start": 1, "end": 2, "text": "a"}, {"start": 1, "end": 3, "text": "b"}]
    tt = parse_json_transcript(json.dumps(items).encode())
    assert tt.cues == (Cue(1.0, 3.0, "a b"),)
    assert tt.repairs == ("clipped 1 overlapping cue(s)",)
