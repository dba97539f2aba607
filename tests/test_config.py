from __future__ import annotations

from pathlib import Path

import pytest

from curate.config import PipelineConfig, config_hash, load_config, parse_config
from curate.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_shipped_pipelines_load() -> None:
    for name in ("demo.yaml", "image_text.yaml"):
        cfg = load_config(REPO / "pipelines" / name)
        assert Path(cfg.sources[0].path).is_absolute()


def test_unknown_key_names_file_and_path(tmp_path: Path) -> None:
    p = write(tmp_path, "sources:\n  - path: a.csv\nfetch:\n  timout_s: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "fetch.timout_s: unknown key" in msg


def test_wrong_type_names_expected(tmp_path: Path) -> None:
    p = write(tmp_path, "sources:\n  - path: a.csv\nimage:\n  resize_mode: squash\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "image.resize_mode" in msg
    assert "border" in msg and "squash" in msg


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    p = write(tmp_path, "sources: [\n  - path: a\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_source_kinds_are_discriminated(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "sources": [
                {"kind": "folder", "path": "/x"},
                {"kind": "hf", "path": "/y", "image_column": "image"},
            ]
        }
    )
    assert [s.kind for s in cfg.sources] == ["folder", "hf"]
    with pytest.raises(ConfigError, match=r"sources\.0\.folder\.url_column: unknown key"):
        parse_config({"sources": [{"kind": "folder", "path": "/x", "url_column": "u"}]})


def test_hash_ignores_engine_but_not_stages() -> None:
    base = PipelineConfig.model_validate({"sources": [{"path": "/a.csv"}]})
    more_workers = base.model_copy(
        update={"engine": base.engine.model_copy(update={"n_workers": 7})}
    )
    other_size = base.model_copy(update={"image": base.image.model_copy(update={"size": 128})})
    assert config_hash(base) == config_hash(more_workers)
    assert config_hash(base) != config_hash(other_size)
    assert config_hash(base, "input-a") != config_hash(base, "input-b")
