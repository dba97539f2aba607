"""Pydantic models of a pipeline YAML, one per stage.

Unknown keys are errors: a typo in a config must never silently fall back to a default.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.errors import ConfigError

__all__ = [
    "FETCH_SECTIONS",
    "EngineConfig",
    "FetchConfig",
    "FolderSource",
    "HFSource",
    "ImageConfig",
    "IngestConfig",
    "MediaConfig",
    "PipelineConfig",
    "ShardsConfig",
    "TableSource",
    "config_hash",
    "fetch_hash",
    "load_config",
    "parse_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableSource(_Model):
    """A URL list: csv, tsv, parquet or jsonl, optionally gzip-compressed."""

    kind: Literal["table"] = "table"
    path: str = Field(description="File path or glob of URL-list files.")
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"] = "auto"
    url_column: str = "url"
    caption_column: str | None = "caption"
    extra_columns: list[str] | None = Field(
        default=None,
        description="Columns carried into each sample's json; null carries all other columns.",
    )
    name: str | None = Field(
        default=None, description="Source name used in uids; defaults to the file name."
    )


class FolderSource(_Model):
    """A local folder of images, videos or recordings with optional sidecar `.txt` captions;
    videos and recordings also pair with a same-stem `.srt`, `.vtt` or `.json` transcript."""

    kind: Literal["folder"] = "folder"
    path: str
    files: Literal["images", "videos", "audio"] = "images"
    name: str | None = None


class HFSource(_Model):
    """A Hugging Face `datasets` dataset saved with `save_to_disk`."""

    kind: Literal["hf"] = "hf"
    path: str
    split: str | None = Field(default=None, description="Split of a DatasetDict.")
    url_column: str | None = "url"
    image_column: str | None = Field(
        default=None, description="Column holding image bytes (an Image feature) instead of URLs."
    )
    caption_column: str | None = "caption"
    extra_columns: list[str] | None = None
    name: str | None = None


Source = Annotated[TableSource | FolderSource | HFSource, Field(discriminator="kind")]


class IngestConfig(_Model):
    samples_per_partition: int = Field(default=1000, ge=1)


def _host_port(text: str) -> str:
    """`host:port` (`[v6]:port` for IPv6) in canonical form; ValueError when not one."""
    from urllib.parse import urlsplit

    text = text.strip()
    if not text or any(c in text for c in "/?#@ \\"):
        raise ValueError(f"not host:port: {text!r}")
    try:
        parts = urlsplit("//" + text)
        port = parts.port
    except ValueError:
        raise ValueError(f"not host:port (port 1-65535): {text!r}") from None
    host = (parts.hostname or "").rstrip(".")
    if not host or port is None or port == 0:
        raise ValueError(f"not host:port (both are needed): {text!r}")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class FetchConfig(_Model):
    """HTTP client settings: safe and polite by default, every request under one deadline."""

    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    total_timeout_s: float = Field(default=30.0, gt=0, description="Whole request, all hops.")
    retries: int = Field(default=2, ge=0, description="Retries for transient failures.")
    backoff_s: float = Field(default=0.5, ge=0)
    max_retry_after_s: float = Field(default=10.0, ge=0)
    max_bytes: int = Field(default=20_000_000, ge=1)
    max_redirects: int = Field(default=5, ge=0)
    user_agent: str = "curate/0.1 (multimodal data curation)"
    threads: int = Field(default=16, ge=1, description="Concurrent requests per partition.")
    allow_private_networks: bool = Field(
        default=False,
        description="Allow loopback/private/link-local targets (tests and the demo only).",
    )
    allowed_networks: list[str] = Field(
        default_factory=list, description="CIDRs allowed even though they are not public."
    )
    dns_cache_ttl_s: float = Field(default=300.0, ge=0)
    per_domain_concurrency: int = Field(
        default=16,
        ge=1,
        description="Requests in flight per host for the whole run (at least one per worker).",
    )
    per_domain_rate_per_s: float | None = Field(
        default=None, gt=0, description="Request starts per second per host; null: no limit."
    )
    optout_directives: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"],
        description="X-Robots-Tag directives that mean: do not keep this item.",
    )
    robots_txt: bool = Field(default=False, description="Honour robots.txt (one fetch per host).")
    connect_to: dict[str, str] = Field(
        default_factory=dict,
        exclude=True,
        description="Connect to another address for a URL's host:port, like curl's "
        "--connect-to: {'cdn.example.com:443': '203.0.113.7:443'}. The URL, Host header, TLS "
        "name, uids and ledger keep the URL's host; the target is resolved and checked like "
        "any host (private addresses still need allow_private_networks or allowed_networks). "
        "Where a connection goes, like a DNS answer, is not what a URL names: it stays out of "
        "the config hash and run.json, so a run resumes after it changes. Applies to curate's "
        "HTTP client, not to yt-dlp.",
    )

    @field_validator("connect_to")
    @classmethod
    def _connect_to(cls, value: dict[str, str]) -> dict[str, str]:
        """Canonical `host:port` on both sides (lowercase, IPv6 in brackets), checked once
        here so a typo fails when the config loads, not per fetch."""
        return {_host_port(k): _host_port(v) for k, v in value.items()}

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"not a CIDR network: {net!r}") from None
        return value


class ImageConfig(_Model):
    """Decode and resize, with img2dataset's resize-mode semantics."""

    size: int = Field(default=256, ge=1)
    resize_mode: Literal["no", "border", "keep_ratio", "keep_ratio_largest", "center_crop"] = (
        "border"
    )
    resize_only_if_bigger: bool = False
    encode_format: Literal["jpg", "png", "webp"] = "jpg"
    encode_quality: int = Field(default=95, ge=1, le=100)
    max_pixels: int = Field(
        default=50_000_000,
        ge=1,
        le=178_956_970,
        description="Checked from the header; at most Pillow's own hard limit.",
    )
    min_side: int = Field(default=1, ge=1)
    max_aspect_ratio: float | None = Field(default=None, ge=1, description="null: any ratio.")
    allowed_formats: list[str] = Field(
        default_factory=lambda: ["JPEG", "PNG", "WEBP", "GIF", "BMP"],
        description="PIL format names accepted after sniffing magic bytes.",
    )


class ShardsConfig(_Model):
    samples_per_shard: int = Field(default=1000, ge=1)
    shuffle_seed: int | None = Field(
        default=None,
        ge=0,
        description="Shuffle samples across shards with this seed (the same order on any "
        "machine); null: input order.",
    )


class ClipConfig(_Model):
    """CLIP embeddings and scores (open_clip), computed once per corpus and reused."""

    enabled: bool = False
    model: str = Field(default="ViT-B-32", description="open_clip model name, or curate-tiny.")
    pretrained: str | None = Field(
        default="laion2b_s34b_b79k",
        description="open_clip pretrained tag or a local checkpoint path; null: bundled/random.",
    )
    device: str = Field(default="cpu", description="cpu, cuda, cuda:1, ...")
    precision: Literal["fp32", "bf16"] = "fp32"
    batch_size: int = Field(default=64, ge=1)
    threads: int | None = Field(default=None, ge=1, description="torch threads per task.")


class FilterConfig(_Model):
    """Keep rules over the feature table; every dropped row gets the rule's reason."""

    clip_min_score: float | None = Field(default=None, description="Absolute CLIP threshold.")
    clip_top_fraction: float | None = Field(default=None, gt=0, le=1)
    clip_score_of: Literal["mean", "max"] = Field(
        default="mean",
        description="Which score of a clip the clip rules read: the mean over its sampled "
        "frames or the best frame. An image's two scores are the same.",
    )
    min_side: int | None = Field(default=None, ge=1, description="Source image, pixels.")
    max_aspect_ratio: float | None = Field(default=None, ge=1)
    caption_min_words: int | None = Field(default=None, ge=0)
    caption_max_words: int | None = Field(default=None, ge=1)
    caption_min_chars: int | None = Field(default=None, ge=0)
    caption_max_chars: int | None = Field(default=None, ge=1)
    languages: list[str] | None = Field(default=None, description="ISO 639-1 codes to keep.")
    language_min_confidence: float = Field(default=0.0, ge=0, le=1)


class PerceptualDedup(_Model):
    """Near-duplicate images: pHash within a Hamming radius, verified by colour thumbnails."""

    enabled: bool = True
    max_distance: int = Field(default=8, ge=0, le=32, description="pHash bits that may differ.")
    verify_threshold: float | None = Field(
        default=0.28,
        ge=0,
        le=1,
        description="Thumbnail colour distance a candidate must stay under; null: no check.",
    )


class ClipDedup(_Model):
    """Near-duplicate clips (the same footage re-encoded, resized or uploaded again): most
    sampled frames of one clip have a frame of the other within a pHash radius. Clips are
    judged by their frames only; the image methods (perceptual) skip them."""

    enabled: bool = True
    max_distance: int = Field(default=10, ge=0, le=32, description="pHash bits that may differ.")
    min_matched: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Fraction of the clip's frames (the clip with fewer) that must match.",
    )


class SemanticDedup(_Model):
    """SemDeDup on stored CLIP image embeddings (features/NNNNN.emb.npy)."""

    enabled: bool = False
    threshold: float = Field(default=0.95, ge=-1, le=1, description="Cosine similarity.")
    n_clusters: int | None = Field(default=None, ge=1, description="null: about sqrt(n).")


class CaptionDedup(_Model):
    """Boilerplate captions: MinHash LSH over character shingles, verified by Jaccard."""

    enabled: bool = False
    threshold: float = Field(default=0.8, gt=0, le=1, description="Jaccard similarity.")
    num_perm: int = Field(default=128, ge=16)
    shingle: int = Field(default=5, ge=1)


class EvalSet(_Model):
    """Evaluation data no training sample may match (exactly or nearly)."""

    name: str = Field(description="Shown in the ledger as eval:<name>.")
    images: str | None = Field(
        default=None, description="Folder of images, or a parquet with an image or path column."
    )
    captions: str | None = Field(
        default=None, description="A .txt file (one per line) or a table with a caption column."
    )


class DedupConfig(_Model):
    """Which duplicate finders run, in order: eval sets, exact, perceptual (images), clips,
    semantic, caption.

    In each cluster the sample with the most pixels survives, then the higher CLIP score, then
    the lowest uid; the others are dropped with the method and the uid they duplicate.
    """

    enabled: bool = True
    exact: list[Literal["bytes", "url_caption", "caption"]] = Field(
        default=["bytes", "url_caption"],
        description="bytes: same stored image; url_caption: same URL and caption; "
        "caption: same normalised caption.",
    )
    perceptual: PerceptualDedup = PerceptualDedup()
    clips: ClipDedup = ClipDedup()
    semantic: SemanticDedup = SemanticDedup()
    captions: CaptionDedup = CaptionDedup()
    eval_sets: list[EvalSet] = Field(default_factory=list)


class EngineConfig(_Model):
    n_workers: int | None = Field(default=None, ge=1, description="null: one per core.")
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "auto"
    task_retries: int = Field(default=2, ge=0)
    stall_report_s: float | None = Field(
        default=900,
        gt=0,
        description="After this long without a finished task, print where the stage is "
        "stuck and dump the stacks of the busy workers' threads. null: never.",
    )


class MediaConfig(_Model):
    """Video or audio corpora: each input becomes clips (segments) cut at its timed text."""

    kind: Literal["video", "audio"] = Field(
        default="video",
        description="video: clips with video, audio and frames; audio: audio segments.",
    )
    text_column: str | None = Field(
        default="subtitles",
        description="Source column naming an SRT, WebVTT or JSON transcript (URL or path); "
        "null: the caption covers the whole video.",
    )
    min_clip_s: float = Field(default=2.0, gt=0)
    max_clip_s: float = Field(default=20.0, gt=0)
    cut: Literal["reencode", "copy"] = Field(
        default="reencode",
        description="reencode: frame-exact H.264 at side/fps/crf/preset; copy: the source's "
        "own video packets from the keyframe at or before each clip's start (no encode; the "
        "clip's true bounds are recorded).",
    )
    side: int = Field(default=360, ge=16, description="Shorter side of clip videos, at most.")
    fps: float | None = Field(default=None, gt=0, description="null: the source's rate.")
    crf: int = Field(default=23, ge=0, le=51)
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"
    ] = Field(default="veryfast", description="x264's speed/size trade-off for clip videos.")
    frames: int = Field(default=8, ge=1, le=100, description="Frames sampled per clip.")
    frame_rate: float | None = Field(
        default=None,
        gt=0,
        description="null: the frames spread uniformly over the clip; a rate: taken at this "
        "many per second from the clip's start, the last repeated in a clip shorter than "
        "frames / frame_rate (every clip has `frames` frames).",
    )
    sample_rate: int = Field(default=16000, ge=8000, le=48000)
    max_bytes: int = Field(default=2_000_000_000, ge=1, description="Per input, streamed.")
    platform_fetcher: Literal["none", "yt-dlp"] = Field(
        default="none",
        description="yt-dlp: download platform pages (platform_hosts) with yt-dlp, an extra "
        "(pip install 'curate[platform]'); none: such rows fail as platform_url.",
    )
    platform_hosts: list[str] = Field(
        default=["youtube.com", "youtu.be", "vimeo.com", "dailymotion.com"],
        description="Hosts (and their subdomains) whose URLs are pages, not media files.",
    )
    platform_max_height: int = Field(default=720, ge=64, description="Largest format fetched.")
    max_text_bytes: int = Field(default=5_000_000, ge=1)
    max_duration_s: float = Field(default=4 * 3600, gt=0)
    probe_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> MediaConfig:
        if self.min_clip_s > self.max_clip_s:
            raise ValueError("min_clip_s must not exceed max_clip_s")
        return self


class LabelsConfig(_Model):
    """Pretraining-task labels written as members of each sample (`curate.labels`): every
    label a pure function of (sample, `seed`, these settings)."""

    seed: int = Field(default=0, ge=0, description="The corpus seed every label draws from.")
    tasks: list[Literal["mlm", "patchmask", "regions", "itm", "fom", "vsm", "audiomask"]] = Field(
        default=["mlm", "patchmask", "regions", "itm"],
        description="Which labels: mlm, patchmask, regions, itm (images and clips); fom, "
        "vsm (clips); audiomask (audio).",
    )
    mlm_prob: float = Field(default=0.15, ge=0, le=1)
    text_length: int = Field(default=77, ge=8, le=512, description="Tokens per caption.")
    patch_size: int = Field(default=16, ge=1, description="Pixels per patch side.")
    patch_ratio: float = Field(default=0.4, ge=0, le=1)
    region_method: Literal["grid", "slic"] = Field(
        default="grid", description="grid: exact on every CPU; slic: superpixels."
    )
    region_grid: int = Field(default=4, ge=1, le=32, description="Cells (or superpixels) per side.")
    region_ratio: float = Field(default=0.25, ge=0, le=1)
    codebook_size: int = Field(default=64, ge=1, le=65536)
    itm_hard: int = Field(default=3, ge=0)
    itm_random: int = Field(default=1, ge=0)
    itm_ceiling: float = Field(
        default=0.9, ge=-1, le=1, description="Negatives more similar are likely positives."
    )
    vsm_hard: int = Field(default=3, ge=0)
    vsm_random: int = Field(default=1, ge=0)
    vsm_neighbours: int = Field(
        default=2, ge=0, description="Clips this close in the same video are never negatives."
    )
    audio_ratio: float = Field(default=0.15, ge=0, le=1)
    audio_span_s: float = Field(default=0.4, gt=0)


class PipelineConfig(_Model):
    """A whole pipeline: sources, then one section per stage."""

    name: str = "corpus"
    sources: list[Source] = Field(min_length=1)
    ingest: IngestConfig = IngestConfig()
    fetch: FetchConfig = FetchConfig()
    image: ImageConfig = ImageConfig()
    clip: ClipConfig = ClipConfig()
    dedup: DedupConfig = DedupConfig()
    filters: FilterConfig = FilterConfig()
    shards: ShardsConfig = ShardsConfig()
    engine: EngineConfig = EngineConfig()
    media: MediaConfig | None = Field(
        default=None, description="Set for a video or audio corpus (clips); null: images."
    )
    labels: LabelsConfig | None = Field(
        default=None, description="Pretraining-task labels as sample members; null: none."
    )
    storage_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="fsspec options per URL protocol, for sources, eval sets and the run "
        "directory given as URLs, e.g. {s3: {endpoint_url: ..., anon: false}}. Keep secrets "
        "in the environment (AWS_ACCESS_KEY_ID...): run.json records these options with "
        "key, secret, token and password values masked.",
    )

    @model_validator(mode="after")
    def _needs_clip(self) -> PipelineConfig:
        """Rules that read CLIP scores or embeddings need the CLIP stage to make them, and
        the CLIP stage needs pictures."""
        if self.clip.enabled and self.media is not None and self.media.kind == "audio":
            raise ValueError("clip needs pictures: an audio corpus (media.kind: audio) has none")
        if not self.clip.enabled:
            f = self.filters
            if f.clip_min_score is not None or f.clip_top_fraction is not None:
                raise ValueError("filters.clip_* need the CLIP stage: set clip.enabled: true")
            if self.dedup.semantic.enabled:
                raise ValueError("dedup.semantic needs CLIP embeddings: set clip.enabled: true")
        return self

    @field_validator("sources", mode="before")
    @classmethod
    def _default_kind(cls, value: Any) -> Any:
        """A source without `kind` is a URL table, the common case."""
        if isinstance(value, list):
            return [
                {"kind": "table", **v} if isinstance(v, dict) and "kind" not in v else v
                for v in value
            ]
        return value


def _format_errors(origin: str, err: ValidationError) -> str:
    lines = [f"{origin}: invalid pipeline config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key")
        else:
            lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_config(data: Any, origin: str = "<config>") -> PipelineConfig:
    """Validate a mapping into a PipelineConfig; errors name the origin and key path."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(origin, err)) from None


def load_config(path: str | Path) -> PipelineConfig:
    """Read a pipeline YAML; relative source paths resolve against the YAML's folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    cfg = parse_config(data, origin=str(p))
    return resolve_paths(cfg, p.parent)


def _relative(path: str) -> bool:
    """A local path not yet anchored (URLs such as s3://b/k are left as written)."""
    return "://" not in path and not Path(path).is_absolute()


def resolve_paths(cfg: PipelineConfig, base: Path) -> PipelineConfig:
    """Make source paths absolute relative to `base` so runs do not depend on the cwd."""
    sources = []
    for s in cfg.sources:
        sp = Path(s.path)
        if _relative(s.path):
            s = s.model_copy(update={"path": str((base / sp).resolve())})
        sources.append(s)
    evals = [
        e.model_copy(
            update={
                k: str((base / v).resolve())
                for k in ("images", "captions")
                if (v := getattr(e, k)) is not None and _relative(v)
            }
        )
        for e in cfg.dedup.eval_sets
    ]
    dedup = cfg.dedup.model_copy(update={"eval_sets": evals})
    clip = cfg.clip
    if clip.pretrained and not Path(clip.pretrained).is_absolute():
        local = base / clip.pretrained
        if local.exists():  # a checkpoint beside the config, not an open_clip tag
            clip = clip.model_copy(update={"pretrained": str(local.resolve())})
    return cfg.model_copy(update={"sources": sources, "dedup": dedup, "clip": clip})


# The sections that decide which bytes are fetched and stored: a change to one of them
# means a new download; every other section only redoes the stages that read it.
FETCH_SECTIONS = frozenset({"sources", "ingest", "fetch", "image", "media"})


def _unset(cfg: PipelineConfig) -> set[str]:
    """Optional sections left out, so adding one keeps existing pipelines' hashes."""
    return {name for name in ("media", "labels") if getattr(cfg, name) is None}


def fetch_hash(cfg: PipelineConfig, extra: str = "") -> str:
    """Stable hash of what decides the fetched bytes (plus an input fingerprint)."""
    data = cfg.model_dump(mode="json", include=set(FETCH_SECTIONS) - _unset(cfg))
    payload = json.dumps(data, sort_keys=True) + extra
    return hashlib.sha256(payload.encode()).hexdigest()


def config_hash(cfg: PipelineConfig, extra: str = "") -> str:
    """Stable hash of the resolved config (plus an input fingerprint) for resume checks."""
    # Engine settings and storage options change where work runs or where bytes are kept,
    # never what is written, so they stay out.
    data = cfg.model_dump(mode="json", exclude={"engine", "storage_options"} | _unset(cfg))
    payload = json.dumps(data, sort_keys=True) + extra
    return hashlib.sha256(payload.encode()).hexdigest()
