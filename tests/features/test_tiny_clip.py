"""The bundled tiny CLIP: it loads through open_clip like real weights, and its score tells
true captions from planted mismatched ones on a web it never saw (served files and the
pipeline's stored copies alike)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate.config import ImageConfig
from curate.errors import ConfigError
from curate.features import clip_model
from curate.features.clip_model import TINY_MODEL, ClipModel, load_clip, tiny_checkpoint
from curate.media.image import process_image
from curate.testing import SyntheticWeb, build_web, tiny_clip

torch = pytest.importorskip("torch")  # the `clip` extra
pytest.importorskip("open_clip")


HELD_OUT_SEED = 101  # training builds webs from seed 10_000 up; this one it never saw
MIN_AUC = 0.95
SMALL = {"n_items": 40, "extra_scenes": 48, "extra_photos": 20, "steps": 3, "batch_size": 16}


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U), ties counted half."""
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def test_auc_helper() -> None:
    assert auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert auc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> SyntheticWeb:
    return build_web(tmp_path_factory.mktemp("held-out"), n_items=300, seed=HELD_OUT_SEED)


def _scores(
    cm: ClipModel, web: SyntheticWeb, stored: ImageConfig | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, kind, is_original): cosine of image and served caption, for ok originals and
    mismatched-caption rows."""
    rows = web.truth.filter(
        (web.truth["expected_status"] == "ok")
        & web.truth["role"].is_in(["original", "mismatched_caption"])
    )
    images, captions, kinds, positive = [], [], [], []
    for route, caption, kind, role in rows.select("route", "caption", "kind", "role").iter_rows():
        data = (web.files_dir / route.rsplit("/", 1)[-1]).read_bytes()
        if stored is not None:  # what the pipeline keeps: resized and re-encoded
            data = process_image(data, stored).data
        try:
            image = Image.open(io.BytesIO(data)).convert("RGB")
        except OSError:
            continue
        images.append(cm.preprocess(image))
        captions.append(caption)
        kinds.append(kind)
        positive.append(role == "original")
    with torch.inference_mode():
        img = torch.nn.functional.normalize(cm.model.encode_image(torch.stack(images)), dim=-1)
        txt = torch.nn.functional.normalize(cm.model.encode_text(cm.tokenizer(captions)), dim=-1)
    return (img * txt).sum(dim=-1).numpy(), np.array(kinds), np.array(positive)


def test_checkpoint_is_bundled_and_small() -> None:
    path = tiny_checkpoint()
    assert path.is_file(), "run: python -m curate.testing.tiny_clip --out " + str(path)
    assert path.stat().st_size < 8_000_000
    assert (path.parent / f"{TINY_MODEL}.json").is_file()


@pytest.mark.parametrize(
    "stored",
    [None, ImageConfig(size=96, resize_mode="border", encode_quality=85)],
    ids=["served-file", "stored-96px-border"],
)
def test_score_separates_mismatched_captions(
    held_out: SyntheticWeb, stored: ImageConfig | None
) -> None:
    cm = load_clip(TINY_MODEL)
    score, kind, pos = _scores(cm, held_out, stored)
    for k in ("photo", "scene"):  # both kinds planted, both must be told apart
        assert (pos & (kind == k)).sum() >= 20 and (~pos & (kind == k)).sum() >= 3
    overall = auc(score[pos], score[~pos])
    per_kind = {
        k: auc(score[pos & (kind == k)], score[~pos & (kind == k)]) for k in ("photo", "scene")
    }
    print(f"AUC {overall:.4f} {per_kind}")  # measured: served 0.999, stored 0.995
    assert overall >= MIN_AUC
    assert min(per_kind.values()) >= MIN_AUC


def test_bf16_runs_the_trunks_in_bf16_and_keeps_the_ends_fp32() -> None:
    cm = load_clip(TINY_MODEL, precision="bf16")
    assert cm.precision == "bf16"
    dtypes = {name: p.dtype for name, p in cm.model.named_parameters()}
    trunks = [n for n in dtypes if n.startswith(("visual.transformer.", "transformer."))]
    assert trunks and all(dtypes[n] == torch.bfloat16 for n in trunks)
    for end in ("visual.conv1.weight", "visual.proj", "visual.ln_post.weight", "text_projection"):
        assert dtypes[end] == torch.float32, end
    assert sum(p.numel() for n, p in cm.model.named_parameters() if n in trunks) > 0
    assert clip_model.input_dtype(cm) == torch.float32
    ref = load_clip(TINY_MODEL)
    assert {p.dtype for p in ref.model.parameters()} == {torch.float32}
    image = Image.new("RGB", (120, 80), (245, 245, 245))
    x = cm.preprocess(image)[None]
    tokens = cm.tokenizer(["a red circle on a white background"])
    with torch.inference_mode():
        low, high = cm.model.encode_image(x), ref.model.encode_image(x)
        assert low.dtype == torch.float32  # the projection ran in fp32
        assert torch.nn.functional.cosine_similarity(low, high).item() > 0.999
        low_t, high_t = cm.model.encode_text(tokens), ref.model.encode_text(tokens)
        assert low_t.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(low_t, high_t).item() > 0.999


def test_a_tower_without_a_transformer_trunk_runs_wholly_in_bf16(tmp_path: Path) -> None:
    import open_clip

    config = json.loads((clip_model.models_dir() / f"{TINY_MODEL}.json").read_text())
    config["vision_cfg"] = {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8}  # a ResNet
    (tmp_path / "curate-tiny-rn.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path)
    net = open_clip.create_model("curate-tiny-rn").eval()
    clip_model.to_bf16_trunks(net)
    assert {p.dtype for p in net.visual.parameters()} == {torch.bfloat16}
    assert net.text_projection.dtype == torch.float32
    with torch.inference_mode():
        out = net.encode_image(torch.zeros(2, 3, 64, 64, dtype=torch.bfloat16))
    assert out.shape == (2, 64) and torch.isfinite(out.float()).all()


def test_a_custom_text_tower_gets_the_same_layout(tmp_path: Path) -> None:
    import copy

    import open_clip

    config = json.loads((clip_model.models_dir() / f"{TINY_MODEL}.json").read_text())
    config["custom_text"] = True  # open_clip's CustomTextCLIP: the text parts live in `.text`
    (tmp_path / "curate-tiny-custom.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path)
    ref = open_clip.create_model("curate-tiny-custom").eval()
    net = copy.deepcopy(ref)
    clip_model.to_bf16_trunks(net)
    assert type(net).__name__ == "CustomTextCLIP"
    assert {p.dtype for p in net.text.transformer.parameters()} == {torch.bfloat16}
    assert net.text.token_embedding.weight.dtype == torch.float32
    tokens = open_clip.get_tokenizer("curate-tiny-custom")(["a blue star on the left"])
    with torch.inference_mode():
        low, high = net.encode_text(tokens), ref.encode_text(tokens)
    assert low.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(low, high).item() > 0.999


def test_bad_precision_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="precision"):
        load_clip(TINY_MODEL, precision="fp8")


def test_missing_checkpoint_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_clip(TINY_MODEL, pretrained=str(tmp_path / "nope.pt"))


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not an open_clip model"):
        load_clip("no-such-model")


def test_loader_caches_per_arguments() -> None:
    first = load_clip(TINY_MODEL)
    assert load_clip(TINY_MODEL, None, "cpu", "fp32") is first
    assert load_clip(TINY_MODEL, precision="bf16") is not first
    assert not first.model.training
    assert first.pretrained is None and first.device == "cpu" and first.name == TINY_MODEL


def test_training_script_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    assert tiny_clip.main(["--out", str(out), "--work-dir", str(tmp_path), *_cli(SMALL)]) == 0
    saved = torch.load(out, weights_only=True)["state_dict"]
    assert {v.dtype for v in saved.values()} == {torch.float16}
    cm = load_clip(TINY_MODEL, pretrained=str(out))
    assert cm.pretrained == str(out)
    state = cm.model.state_dict()
    assert all(torch.equal(state[k], v.float()) for k, v in saved.items())
    metrics = tiny_clip.train_tiny_clip(tmp_path / "again.pt", work_dir=tmp_path, **SMALL)
    again = torch.load(tmp_path / "again.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(again[k], v) for k, v in saved.items())  # deterministic
    assert metrics["steps"] == SMALL["steps"] and np.isfinite(metrics["final_loss"])


def _cli(kwargs: dict[str, int]) -> list[str]:
    return [a for k, v in kwargs.items() for a in (f"--{k.replace('_', '-')}", str(v))]


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    clip_model._load.cache_clear()
    yield
    clip_model._load.cache_clear()


def test_missing_bundled_checkpoint_names_the_command_and_trains_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: None
) -> None:
    """Production code never trains the test model inside a worker (issue 9)."""
    path = tmp_path / "models" / "curate-tiny.pt"
    monkeypatch.setattr(clip_model, "tiny_checkpoint", lambda: path)
    monkeypatch.setattr(tiny_clip, "train_tiny_clip", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ConfigError, match=r"python -m curate\.testing\.tiny_clip"):
        load_clip(TINY_MODEL)
    assert not path.exists()
