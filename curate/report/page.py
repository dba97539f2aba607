"""`curate report OUT`: one self-contained HTML file (plotly.js, charts and thumbnails all
inline, so it opens with no network) that shows what the run did and why.

Charts are plotly figures over the binned views of `curate.report.views`; galleries are
JPEG thumbnails read from the run's raw tars by `curate.report.media`. Each section is a
function of the run that returns HTML; one that fails renders its error in place, so a
damaged table costs a section, never the report.
"""

from __future__ import annotations

import html
import io
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.io.atomic import read_json, write_bytes
from curate.io.store import AnyPath, as_path, scan_files
from curate.media.image import is_picture, pictures
from curate.report import media
from curate.report import views as V
from curate.rundir import RunDir
from curate.tables import open_ledger, parent_expr

__all__ = ["Report", "build_report", "clip_table", "section"]

THUMB = 112
COLOURS = {"written": "#2e7d32", "dropped": "#ef6c00", "failed": "#c62828"}


@dataclass
class Report:
    """What `build_report` wrote: the file, its size, seconds taken, and how many
    thumbnails and charts it embeds (the browser test checks the page against these)."""

    path: AnyPath
    bytes: int
    seconds: float
    images: int
    charts: int
    sections: list[str] = field(default_factory=list)


@dataclass
class _Ctx:
    run: RunDir
    info: dict[str, Any]
    ledger: pl.LazyFrame
    images: int = 0
    charts: int = 0

    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.info.get("config") or {}
        return cfg

    def img(self, jpeg: bytes | None, title: str = "", cls: str = "") -> str:
        if not jpeg:
            return f'<div class="missing {cls}" title="{html.escape(title)}">no image</div>'
        self.images += 1
        return (
            f'<img class="{cls}" src="{media.data_uri(jpeg)}" title="{html.escape(title)}" '
            f'alt="{html.escape(title[:80])}">'
        )

    def chart(self, fig: Any) -> str:
        self.charts += 1
        fig.update_layout(
            template="plotly_white", height=320, margin={"l": 50, "r": 20, "t": 40, "b": 40}
        )
        out: str = fig.to_html(
            full_html=False, include_plotlyjs=False, config={"displaylogo": False}
        )
        return out

    def tars(self, uids: Iterable[str]) -> dict[AnyPath, list[str]]:
        """Which raw tar holds each uid (from the ledger's partition column)."""
        want = list(dict.fromkeys(uids))
        if not want:
            return {}
        rows = self.ledger.filter(pl.col("uid").is_in(want)).select("uid", "partition").collect()
        out: dict[AnyPath, list[str]] = defaultdict(list)
        for uid, part in rows.iter_rows():
            if part is not None:
                out[self.run.raw_tar(part)].append(uid)
        return dict(out)

    def pictures(self, uids: Iterable[str]) -> dict[str, bytes | None]:
        """One picture per uid (a clip's middle frame), thumbnailed."""
        uids = list(uids)
        found = media.read_members(self.tars(uids), is_picture)
        out: dict[str, bytes | None] = {}
        for u in uids:
            pic = media.picture(found.get(u, {}))
            out[u] = media.thumbnail(pic, THUMB) if pic else None
        return out


def _table(df: pl.DataFrame, max_rows: int = 200) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = []
    for row in df.head(max_rows).iter_rows():
        cells = "".join(
            f"<td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td>" for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    more = f"<p class='note'>{df.height - max_rows} more rows</p>" if df.height > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _bars(
    ctx: _Ctx,
    frames: dict[str, pl.DataFrame],
    title: str,
    x: str,
    vline: float | None = None,
    stacked: bool = True,
) -> str:
    """A histogram chart from binned views (one trace per status)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, h in frames.items():
        if h.height == 0:
            continue
        centres = ((h["left"] + h["right"]) / 2).to_list()
        fig.add_bar(
            x=centres,
            y=h["n"].to_list(),
            width=(h["right"] - h["left"]).to_list(),
            name=name,
            marker_color=COLOURS.get(name),
        )
    if vline is not None:
        fig.add_vline(x=vline, line_dash="dash", line_color="#333", annotation_text="threshold")
    fig.update_layout(
        title=title, barmode="stack" if stacked else "overlay", xaxis_title=x, yaxis_title="samples"
    )
    return ctx.chart(fig)


def _by_status(
    df: pl.DataFrame, column: str, bins: int = 40, lo: float | None = None, hi: float | None = None
) -> dict[str, pl.DataFrame]:
    """One histogram per status over common bins."""
    values = df[column].cast(pl.Float64)
    finite = values.drop_nulls().filter(values.drop_nulls().is_finite())
    if finite.len() == 0:
        return {}
    lo = float(finite.min()) if lo is None else lo  # type: ignore[arg-type]
    hi = float(finite.max()) if hi is None else hi  # type: ignore[arg-type]
    return {
        s: V.histogram(df.filter(pl.col("status") == s)[column], bins, lo, hi)
        for s in V.STATUS_ORDER
        if (df["status"] == s).any()
    }


# ---- sections ------------------------------------------------------------------------------


def _summary(ctx: _Ctx) -> str:
    info = ctx.info
    funnel = info.get("funnel") or {}
    rows = [
        ("run", info.get("name", "")),
        ("directory", str(ctx.run.root.resolve())),
        ("started", info.get("started_at", "")),
        ("finished", info.get("finished_at", "not finished")),
        ("config hash", str(info.get("config_hash", ""))[:16]),
        ("inputs", funnel.get("inputs", "")),
        ("written", funnel.get("written", "")),
        ("curate", (info.get("versions") or {}).get("curate", "")),
    ]
    cells = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{cells}</table>"


def _funnel(ctx: _Ctx) -> str:
    import plotly.graph_objects as go

    flow = V.stage_flow(ctx.ledger)
    fig = go.Figure(
        go.Funnel(y=flow["step"].to_list(), x=flow["n"].to_list(), textinfo="value+percent initial")
    )
    fig.update_layout(title="samples left after each step")
    table = V.funnel_by_stage(ctx.ledger)
    by = table.filter(pl.col("status") != "written")
    bar = go.Figure()
    for status in ("failed", "dropped"):
        part = by.filter(pl.col("status") == status)
        if part.height:
            labels = [f"{st}: {r}" for st, r in zip(part["stage"], part["reason"], strict=True)]
            bar.add_bar(
                y=labels,
                x=part["n"].to_list(),
                orientation="h",
                name=status,
                marker_color=COLOURS[status],
            )
    bar.update_layout(
        title="failed and dropped, by stage and reason", yaxis={"autorange": "reversed"}
    )
    return ctx.chart(fig) + ctx.chart(bar) + _table(table)


def _scores(ctx: _Ctx) -> str:
    col = V.clip_score_column(ctx.config)
    df = ctx.ledger.select("status", col).filter(pl.col(col).is_not_null()).collect()
    if df.height == 0:
        return "<p class='note'>No CLIP scores: the clip stage was off for this run.</p>"
    threshold = next(
        (c.threshold for c in V.cuts(ctx.config, ctx.ledger) if c.name.startswith("CLIP")), None
    )
    return _bars(ctx, _by_status(df, col), f"CLIP score ({col})", "cosine similarity", threshold)


def _shapes(ctx: _Ctx) -> str:
    sizes = V.sizes(ctx.ledger)
    caps = V.caption_lengths(ctx.ledger)
    out = []
    if sizes.height:
        out.append(_bars(ctx, _by_status(sizes, "megapixels"), "source resolution", "megapixels"))
        out.append(_bars(ctx, _by_status(sizes, "aspect"), "aspect (long / short side)", "ratio"))
    if caps.height:
        out.append(_bars(ctx, _by_status(caps, "words"), "caption length", "words"))
        out.append(_bars(ctx, _by_status(caps, "chars"), "caption length", "characters"))
    return "<div class='grid2'>" + "".join(out) + "</div>"


def _hamming(a: int, b: int) -> int:
    return (int(a) ^ int(b)).bit_count()


def _distances(ctx: _Ctx, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """pHash bits between each copy and its kept sample (for clips, the median over the
    copy's frames of the nearest frame of the other), from the features tables."""
    uids = list({u for p in pairs for u in p})
    files = [f for f in map(ctx.run.features, ctx.run.partitions()) if f.exists()]
    if not files or not uids:
        return {}
    feats = (
        scan_files(list(files))
        .filter(pl.col("uid").is_in(uids))
        .select("uid", "phash", "frame_phash")
        .collect()
    )
    by = {r["uid"]: r for r in feats.iter_rows(named=True)}
    out = {}
    for copy, kept in pairs:
        a, b = by.get(copy), by.get(kept)
        if a is None or b is None:
            continue
        fa, fb = a.get("frame_phash"), b.get("frame_phash")
        if fa and fb:
            d = float(np.median([min(_hamming(x, y) for y in fb) for x in fa]))
            out[(copy, kept)] = f"frames {d:.0f} bits"
        elif a.get("phash") is not None and b.get("phash") is not None:
            out[(copy, kept)] = f"{_hamming(a['phash'], b['phash'])} bits"
    return out


def _duplicates(ctx: _Ctx) -> str:
    clusters = V.duplicate_clusters(ctx.ledger, limit=10, per_cluster=6)
    if clusters.height == 0:
        return "<p class='note'>No duplicates were dropped.</p>"
    pairs = [(u, r["dup_of"]) for r in clusters.iter_rows(named=True) for u in r["uids"]]
    dist = _distances(ctx, pairs)
    pics = ctx.pictures([*clusters["dup_of"].to_list(), *(u for u, _ in pairs)])
    rows = []
    for r in clusters.iter_rows(named=True):
        kept = r["dup_of"]
        cells = [
            "<figure class='kept'>"
            + ctx.img(pics.get(kept), f"{kept} {r['kept_url']}")
            + f"<figcaption>kept ({html.escape(str(r['kept_status']))})<br>"
            f"{html.escape(kept[:10])}"
            "</figcaption></figure>"
        ]
        for uid, method in zip(r["uids"], r["methods"], strict=True):
            d = dist.get((uid, kept), "")
            cells.append(
                "<figure>"
                + ctx.img(pics.get(uid), uid)
                + f"<figcaption>{html.escape(str(method))} {html.escape(d)}<br>"
                f"{html.escape(uid[:10])}"
                "</figcaption></figure>"
            )
        more = r["copies"] - len(r["uids"])
        tail = f"<span class='note'>+{more} more</span>" if more > 0 else ""
        rows.append(f"<div class='row'>{''.join(cells)}{tail}</div>")
    return (
        f"<p>The {clusters.height} largest clusters: the kept sample first, then dropped "
        "copies with the method that linked them and their pHash distance.</p>" + "".join(rows)
    )


def _filters(ctx: _Ctx) -> str:
    cut_list = V.cuts(ctx.config, ctx.ledger)
    if not cut_list:
        return "<p class='note'>No filter rules were switched on.</p>"
    out = []
    for cut in cut_list:
        gallery = V.filter_gallery(ctx.ledger, cut, buckets=4, per_bucket=6)
        removed = ctx.ledger.filter(V.removed_by(cut)).select(pl.len()).collect().item()
        where = "" if cut.threshold is None else f", kept when {cut.keep} {cut.threshold:.4g}"
        out.append(f"<h3>{html.escape(cut.name)}: {removed} removed{html.escape(where)}</h3>")
        if gallery.height == 0:
            continue
        pics = ctx.pictures(gallery["uid"].to_list())
        for bucket in gallery["bucket"].unique(maintain_order=True).to_list():
            part = gallery.filter(pl.col("bucket") == bucket)
            figs = []
            for r in part.iter_rows(named=True):
                score = "" if r["score"] is None else f"{r['score']:.3g}"
                cap = str(r["caption"] or "")[:90]
                figs.append(
                    f"<figure class='{r['side']}'>"
                    + ctx.img(pics.get(r["uid"]), f"{r['uid']} {cap}")
                    + f"<figcaption>{html.escape(score)} {html.escape(cap)}</figcaption></figure>"
                )
            out.append(
                f"<div class='bucket'><h4>{html.escape(bucket)}</h4>"
                f"<div class='row'>{''.join(figs)}</div></div>"
            )
    return "".join(out)


def _is_clips(ctx: _Ctx) -> bool:
    return bool(ctx.ledger.select((pl.col("uid") != parent_expr()).any()).collect().item())


def clip_table(run: RunDir, ledger: pl.LazyFrame) -> pl.DataFrame:
    """One row per clip: uid, status, caption, duration (end - start of its cut), audio
    seconds (FLAC header) and each alignment check (`check:NAME`), from the raw tars'
    json and flac members: the table the report's clip charts and the notebook draw."""
    clips = (
        ledger.filter(pl.col("uid") != parent_expr())
        .select("uid", "status", "caption", "partition")
        .collect()
    )
    tars: dict[AnyPath, list[str]] = defaultdict(list)
    for uid, _, _, part in clips.iter_rows():
        if part is not None:
            tars[run.raw_tar(part)].append(uid)
    # a FLAC's duration is in its first 42 bytes: read no more of a clip's audio
    got = media.read_members(tars, lambda s: s in ("json", "flac"), head={"flac": 64})
    rows = []
    for uid, status, caption, _ in clips.iter_rows():
        m = got.get(uid, {})
        meta = media.sample_meta(m)
        start, end = meta.get("start"), meta.get("end")
        checks = meta.get("checks") or {}
        rows.append(
            {
                "uid": uid,
                "status": status,
                "caption": caption,
                "duration": None if start is None or end is None else float(end) - float(start),
                "audio": media.flac_seconds(m["flac"]) if "flac" in m else None,
                **{f"check:{k}": bool(v) for k, v in checks.items()},
            }
        )
    schema = {
        "uid": pl.String,
        "status": pl.String,
        "caption": pl.String,
        "duration": pl.Float64,
        "audio": pl.Float64,
    }
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(schema=schema)


def _clips(ctx: _Ctx) -> str:
    """Durations, alignment checks, audio durations and a frame strip per clip."""
    import plotly.graph_objects as go

    df = clip_table(ctx.run, ctx.ledger)
    if df.height == 0:
        return "<p class='note'>No clips found in the raw tars.</p>"
    parts = [
        _bars(ctx, _by_status(df, "duration"), "clip duration", "seconds"),
    ]
    if df["audio"].drop_nulls().len():
        gap = df.filter(pl.col("audio").is_not_null() & pl.col("duration").is_not_null())
        parts.append(_bars(ctx, _by_status(df, "audio"), "audio duration (FLAC header)", "seconds"))
        fig = go.Figure(go.Histogram(x=(gap["audio"] - gap["duration"]).to_list(), nbinsx=30))
        fig.update_layout(title="audio minus clip duration", xaxis_title="seconds")
        parts.append(ctx.chart(fig))
    checks = [c for c in df.columns if c.startswith("check:")]
    table = pl.DataFrame(
        {
            "check": [c[6:] for c in checks],
            "pass": [int(df[c].sum()) for c in checks],
            "fail": [int((~df[c].fill_null(True)).sum()) for c in checks],
            "not recorded": [int(df[c].null_count()) for c in checks],
        }
    )
    strip_uids = V.pick(df.filter(pl.col("status") == "written")["uid"], 10, salt="strips")
    frames = media.read_members(ctx.tars(strip_uids), lambda s: is_picture(s) or s == "txt")
    strips = []
    for uid in strip_uids:
        m = frames.get(uid, {})
        imgs = "".join(ctx.img(media.thumbnail(f, 96), uid, "frame") for f in pictures(m))
        text = m.get("txt", b"").decode("utf-8", "replace")
        strips.append(
            f"<div class='strip'><div class='row'>{imgs}</div>"
            f"<p><code>{html.escape(uid)}</code> {html.escape(text)}</p></div>"
        )
    return (
        "<div class='grid2'>"
        + "".join(parts)
        + "</div><h3>alignment checks</h3>"
        + (_table(table) if checks else "<p class='note'>no checks recorded</p>")
        + "<h3>clips and their text</h3>"
        + "".join(strips)
    )


def _num(v: Any) -> str:
    """A similarity for display: random negatives carry none when the run had no CLIP."""
    return "" if v is None else f"{float(v):.3f}"


def _decode_tokens(ids: Sequence[int], labels: Sequence[int]) -> str:
    """A masked caption for reading: masked positions bracketed with their true token."""
    from curate.labels.mlm import EOT, MASK_ID, SOT, _tokenizer

    tok = _tokenizer()
    words = []
    for i, lab in zip(ids, labels, strict=True):
        if i in (SOT, EOT) or (i == 0 and lab < 0):
            continue
        shown = "[MASK]" if i == MASK_ID else tok.decode([int(i)]).strip()
        if lab >= 0:
            words.append(
                f"<mark title='was {html.escape(tok.decode([int(lab)]).strip())}'>"
                f"{html.escape(shown)}</mark>"
            )
        else:
            words.append(html.escape(shown))
    return " ".join(words)


def _labels(ctx: _Ctx) -> str:
    manifest_path = ctx.run.manifest
    if not manifest_path.exists():
        return "<p class='note'>No manifest: the shards were not written.</p>"
    manifest = read_json(manifest_path)
    if not manifest.get("labels"):
        return "<p class='note'>This corpus carries no pretraining-task labels.</p>"
    written = (
        ctx.ledger.filter(pl.col("status") == "written").select("uid", "shard", "key").collect()
    )
    chosen = V.pick(written["uid"], 4, salt="labels")
    rows = written.filter(pl.col("uid").is_in(chosen))
    tars: dict[AnyPath, list[str]] = defaultdict(list)
    for _, shard, key in rows.iter_rows():
        tars[ctx.run.shards_dir / shard].append(key)
    got = media.read_members(tars, lambda s: True)
    out = [
        f"<p>spec: <code>{html.escape(json.dumps(manifest['labels'].get('spec', {})))}</code></p>"
    ]
    for _, _, key in rows.sort("key").iter_rows():
        m = got.get(key, {})
        pic = media.picture(m)
        cells = []
        if pic is not None and "patchmask.npy" in m:
            grid = np.load(io.BytesIO(m["patchmask.npy"]))
            cells.append(
                "<figure>"
                + ctx.img(media.thumbnail(pic, 160, grid=grid.tolist()), key)
                + "<figcaption>patch mask (shaded)</figcaption></figure>"
            )
        if pic is not None and "regions.json" in m:
            reg = json.loads(m["regions.json"])
            masked = set(reg.get("masked", []))
            boxes = [
                (tuple(r["box"]), "#e53935" if i in masked else "#43a047")
                for i, r in enumerate(reg.get("regions", []))
            ]
            cells.append(
                "<figure>"
                + ctx.img(media.thumbnail(pic, 160, boxes=boxes), key)
                + f"<figcaption>{len(boxes)} regions ({html.escape(str(reg.get('method')))}), "
                f"{len(masked)} masked (red)</figcaption></figure>"
            )
        text = []
        if "mlm.npz" in m:
            z = np.load(io.BytesIO(m["mlm.npz"]))
            caption_mlm = _decode_tokens(z["input_ids"].tolist(), z["labels"].tolist())
            text.append(f"<p><b>MLM</b> {caption_mlm}</p>")
        for member, name in (("itm.json", "ITM"), ("vsm.json", "VSM")):
            if member in m:
                negs = json.loads(m[member]).get("negatives", [])
                items = "".join(
                    f"<li>{html.escape(str(n.get('kind')))} {_num(n.get('similarity'))}: "
                    f"{html.escape(str(n.get('caption', n.get('text', '')))[:100])}</li>"
                    for n in negs
                )
                text.append(f"<p><b>{name} negatives</b></p><ul>{items}</ul>")
        if "fom.json" in m:
            order = html.escape(str(json.loads(m["fom.json"]).get("order")))
            text.append(f"<p><b>frame order</b> {order}</p>")
        if "audiomask.json" in m:
            spans = html.escape(str(json.loads(m["audiomask.json"]).get("spans")))
            text.append(f"<p><b>audio mask</b> {spans}</p>")
        caption = m.get("txt", b"").decode("utf-8", "replace")
        out.append(
            f"<div class='label'><h4><code>{html.escape(key)}</code> "
            f"{html.escape(caption[:120])}</h4>"
            f"<div class='row'>{''.join(cells)}<div class='labeltext'>{''.join(text)}</div>"
            "</div></div>"
        )
    return "".join(out)


def _training(ctx: _Ctx) -> str:
    import plotly.graph_objects as go

    path = ctx.run.root / "train" / "metrics.json"
    if not path.exists():
        return "<p class='note'>Not trained: <code>curate train OUT</code> adds this section.</p>"
    m = read_json(path)
    rows = [
        {
            "task": t,
            "n": v.get("n"),
            "accuracy": v.get("accuracy"),
            "chance": v.get("chance"),
            "bar": v.get("bar"),
            "blind": (v.get("blind") or {}).get("accuracy"),
            "control": (v.get("control") or {}).get("accuracy"),
            "passed": v.get("passed", v.get("beats_chance")),
        }
        for t, v in (m.get("tasks") or {}).items()
    ]
    fig = go.Figure()
    for t, v in (m.get("tasks") or {}).items():
        fig.add_scatter(y=v.get("loss", []), mode="lines", name=f"{t}")
        ctrl = (v.get("control") or {}).get("loss")
        if ctrl:
            fig.add_scatter(y=ctrl, mode="lines", name=f"{t} control", line={"dash": "dot"})
    fig.update_layout(
        title="training loss (window means)", xaxis_title="window", yaxis_title="loss"
    )
    timings = path.parent / "timings.json"
    loader = m.get("loader") or (read_json(timings).get("loader") if timings.exists() else {})
    verdict = "passed" if m.get("passed") else f"FAILED {m.get('failures')} {m.get('leaks')}"
    return (
        f"<p>{html.escape(verdict)}; loader {_num(loader.get('samples_per_s'))} samples/s, "
        f"plain webdataset {_num(loader.get('plain_webdataset_samples_per_s'))} "
        f"(ratio {_num(loader.get('ratio'))})</p>" + _table(pl.DataFrame(rows)) + ctx.chart(fig)
    )


SECTIONS: list[tuple[str, str, Callable[[_Ctx], str]]] = [
    ("summary", "Run", _summary),
    ("funnel", "Funnel", _funnel),
    ("scores", "CLIP scores", _scores),
    ("shapes", "Resolution, aspect, captions", _shapes),
    ("duplicates", "Duplicate clusters", _duplicates),
    ("filters", "Filters: removed and kept near the cut", _filters),
    ("clips", "Clips, subtitles and audio", _clips),
    ("labels", "Pretraining-task labels", _labels),
    ("training", "Reference trainer", _training),
]

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:12px 24px}header h1{margin:0;font-size:20px}
nav{position:sticky;top:0;background:#eceff1;padding:6px 24px;z-index:9}
nav a{margin-right:14px;color:#263238}main{padding:8px 24px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:14px 0;padding:8px 16px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:2px 8px;
text-align:left;font-size:13px}.kv th{background:#f5f5f5}
.row{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start;margin:4px 0}
figure{margin:0;width:116px;font-size:11px}figure img{width:112px;height:112px;
object-fit:contain;background:#eee;border:2px solid #ccc}figure.kept img{border-color:#2e7d32}
figure.removed img{border-color:#ef6c00}.missing{width:112px;height:112px;background:#eee;
display:flex;align-items:center;justify-content:center;color:#999}
img.frame{width:96px;height:auto;border:1px solid #ccc}.grid2{display:grid;
grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:8px}
.label figure{width:164px}.label figure img{width:160px;height:160px}
.labeltext{max-width:640px}.note{color:#666}mark{background:#ffe082}.error{color:#c62828}
"""


def _context(out: str | AnyPath) -> _Ctx:
    run = RunDir(out)
    info = read_json(run.run_json) if run.run_json.exists() else {}
    return _Ctx(run, info, open_ledger(run.root))


def section(out: str | Path, name: str) -> str:
    """One section's HTML (e.g. "duplicates", "filters", "labels"), for a notebook's
    `IPython.display.HTML`; the page's plotly.js is not included, so charts need a notebook
    front end that has it (plotly figures of the views show everywhere)."""
    fns = {anchor: fn for anchor, _, fn in SECTIONS}
    if name not in fns:
        raise ValueError(f"{name!r}: not a report section; one of {sorted(fns)}")
    return fns[name](_context(out))


def build_report(out: str | Path, path: str | Path | None = None) -> Report:
    """Write the run's report (OUT/report.html unless `path`) and say what it holds."""
    t0 = time.perf_counter()
    ctx = _context(out)
    run, info = ctx.run, ctx.info
    clips = _is_clips(ctx)
    body, nav, names = [], [], []
    for anchor, title, fn in SECTIONS:
        if anchor == "clips" and not clips:
            continue
        try:
            content = fn(ctx)
        except Exception as err:  # a broken table costs its section, not the report
            content = f"<p class='error'>this section failed: {html.escape(repr(err))}</p>"
        names.append(anchor)
        nav.append(f"<a href='#{anchor}'>{html.escape(title)}</a>")
        body.append(f"<section id='{anchor}'><h2>{html.escape(title)}</h2>{content}</section>")
    from plotly.offline import get_plotlyjs

    name = html.escape(str(info.get("name") or run.root.name))
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>curate report: {name}</title><style>{CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<header><h1>curate report: {name}</h1></header><nav>{''.join(nav)}</nav>"
        f"<main>{''.join(body)}</main></body></html>"
    )
    target = as_path(path) if path is not None else run.report
    data = page.encode()
    write_bytes(target, data)
    return Report(target, len(data), time.perf_counter() - t0, ctx.images, ctx.charts, names)
