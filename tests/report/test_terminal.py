"""Terminal rendering of a lineage: values from the run are printed as they are, never read
as rich markup (captions scraped from forums carry [b]BBCode[/b])."""

from __future__ import annotations

import io

import pytest

from curate.report.terminal import print_lineage


def test_brackets_in_captions_and_urls_print_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    import curate.report.terminal as terminal

    info = {
        "uid": "abc",
        "status": "dropped",
        "reason": "duplicate",
        "decided_by": "dedup",
        "detail": "perceptual of [red]x[/red]",
        "source": {"caption": "sale [/b] now [b]50%[/b]", "url": "http://h/[1].jpg"},
        "dedup": {
            "method": "perceptual",
            "dup_of": "k",
            "kept_copy": {
                "uid": "k",
                "url": "http://h/[/i].jpg",
                "status": "written",
                "shard": "00000.tar",
                "key": "k",
            },
        },
        "stages": [
            {
                "stage": "dedup",
                "task": "all",
                "seconds": 1.5,
                "summary": {"note": "[/bold] unbalanced"},
            }
        ],
    }
    buf = io.StringIO()

    def console(width: int | None = None) -> Console:
        return Console(file=buf, width=200, highlight=False, color_system=None)

    monkeypatch.setattr(terminal, "_console", console)
    print_lineage(info)
    text = buf.getvalue()
    for literal in (
        "sale [/b] now [b]50%[/b]",
        "http://h/[1].jpg",
        "[red]x[/red]",
        "http://h/[/i].jpg",
        "[/bold] unbalanced",
        "1.50s",
    ):
        assert literal in text, (literal, text)
