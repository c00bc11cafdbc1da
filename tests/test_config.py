"""The config machinery: defaults, YAML, overrides and the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from hvc.config import ConfigError, dump_yaml, load_config


@dataclass
class Optim:
    lr: float = 1e-3  # learning rate
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Schema:
    name: str = "run"
    steps: int = 10
    amp: bool = False
    device: Literal["cpu", "cuda", "auto"] = "auto"
    switch: Literal["off", "on"] = "on"
    folders: list[str] = field(default_factory=lambda: ["COCO"])
    resume: Optional[str] = None
    optim: Optim = field(default_factory=Optim)


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_file_and_overrides_apply_in_order(tmp_path):
    p = write(tmp_path, "steps: 20\noptim:\n  lr: 1e-3\nfolders: [COCO, PASCAL]\n")
    cfg = load_config(Schema, p, ["optim.lr=5e-4", "amp=true", "resume=runs/x.pth", "device=cpu"])
    assert cfg.steps == 20 and cfg.folders == ["COCO", "PASCAL"]
    assert cfg.optim.lr == pytest.approx(5e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.amp is True and cfg.resume == "runs/x.pth" and cfg.device == "cpu"
    assert cfg.optim.betas == (0.9, 0.999) and cfg.name == "run"


def test_yaml_scientific_notation_string_is_a_float(tmp_path):
    # PyYAML reads "1e-3" (no dot) as a string; float fields accept it.
    cfg = load_config(Schema, write(tmp_path, "optim:\n  lr: 1e-3\n"))
    assert cfg.optim.lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("stepz: 3\n", [], "stepz"),
        ("optim:\n  lrr: 0.1\n", [], "optim.lrr"),
        ("", ["optim.momentum=0.9"], "optim.momentum"),
        ("steps: 2.5\n", [], "steps"),
        ("amp: 1\n", [], "amp"),
        ("", ["amp=maybe"], "amp"),
        ("", ["optim.lr=abc"], "optim.lr"),
        ("", ["device=tpu"], "device"),
        ("", ["steps"], "key=value"),
        ("optim: 3\n", [], "optim"),
        ("- a\n- b\n", [], "mapping"),
    ],
)
def test_bad_keys_and_types_are_clear_errors(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(Schema, write(tmp_path, text), overrides)


def test_overrides_of_strings_and_choices_are_taken_as_typed():
    # YAML 1.1 reads off/on/no as booleans and 0001 as 1; a choice or a string is the word typed
    cfg = load_config(Schema, None, ["switch=off", "name=0001", "amp=no", "resume=null"])
    assert (cfg.switch, cfg.name, cfg.amp, cfg.resume) == ("off", "0001", False, None)
    with pytest.raises(ConfigError, match="switch"):
        load_config(Schema, None, ["switch=false"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(Schema, tmp_path / "nope.yaml")


def test_dump_round_trips(tmp_path):
    cfg = load_config(Schema, None, ["steps=7", "folders=[a, b]", "optim.betas=[0.5, 0.6]"])
    again = load_config(Schema, write(tmp_path, dump_yaml(cfg)))
    assert again == cfg
