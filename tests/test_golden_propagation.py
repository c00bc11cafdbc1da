"""Label propagation against the official code's fixtures (docs/fixtures.md, "Label propagation").

Each case listed in labelprop/cases.json is its own test, run through both kernels with the
case's context size and merge setting: soft masks to float32 noise, labels identical outside
exact ties (tests/labels.py), confidences, references and context lists as recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hvc.propagation import LabelPropagator, embed, upsample_labels
from helpers.labels import assert_labels_match
from helpers.locations import GOLDEN

# Measured max abs error of the soft masks, all cases, both kernels, AVX-512 / AVX2 / generic ATen
# kernels and MKL's compatible mode: 8.3e-7 (docs/fixtures.md); a 1e-6 relative perturbation of
# the features moves them by 1.5e-6, a logic error by 0.1 or more.
SOFT_ATOL = 1e-5
CONF_ATOL = 1e-6  # mean of the up-sampled max per frame; measured at most 1.5e-8


def _case_names() -> list[str]:
    """Case names from the fixture set's cases.json (collection time; a missing file gives one
    case that fails on load, so a broken fixture set can never pass by having no case)."""
    try:
        return [c["name"] for c in json.loads((GOLDEN / "labelprop" / "cases.json").read_text())["cases"]]
    except (OSError, KeyError, ValueError):
        return ["<cases.json unreadable>"]


@pytest.fixture(scope="module")
def labelprop(golden_dir):
    root = golden_dir / "labelprop"
    meta = json.loads((root / "cases.json").read_text())
    return root, meta, dict(np.load(root / "inputs.npz"))


def _run(prop: LabelPropagator, emb: torch.Tensor, labels: np.ndarray):
    soft, pred, conf, contexts = [], [], [], {}
    for t in range(emb.shape[0]):
        s = prop.step(emb[t], torch.from_numpy(labels[t]).long())
        lab, c = upsample_labels(s, labels.shape[1:])
        soft.append(s.numpy())
        pred.append(lab.numpy())
        conf.append(c.double().mean().item())
        if t:
            contexts[str(t)] = {str(k): v for k, v in prop.last_contexts.items()}
    return np.stack(soft), np.stack(pred), np.array(conf), contexts


def test_fixture_lists_cases(labelprop):
    root, meta, inputs = labelprop
    assert meta["cases"], "cases.json lists no case"
    for case in meta["cases"]:
        assert (root / f"case_{case['name']}.npz").is_file(), case["name"]
        assert case["labels"] in inputs, f"{case['name']}: inputs.npz has no {case['labels']}"


def check_case(root: Path, name: str, impl: str, **changes) -> None:
    """Run case ``name`` of the fixture set in ``root`` through kernel ``impl`` and compare
    everything it records; ``changes`` alter the propagator's settings (to prove that a kernel
    that differs fails). Raises AssertionError on a mismatch."""
    meta = json.loads((root / "cases.json").read_text())
    inputs = np.load(root / "inputs.npz")
    cases = {c["name"]: c for c in meta["cases"]}
    assert name in cases, f"case {name!r} not in {root / 'cases.json'}"
    case, hp = cases[name], meta["hyper_parameters"]
    exp = np.load(root / f"case_{name}.npz")
    feats = torch.from_numpy(inputs["feats"]).float()
    emb = embed(feats, torch.from_numpy(inputs["feats_merge"]).float(), hp["LAMBDA"]) if case["MERGE"] else embed(feats)
    settings = dict(radius=float(hp["RADIUS"]), temperature=hp["TEMP"], topk=hp["KNN"], context=case["CXT_SIZE"],
                    num_classes=hp["NUM_CLASSES"], impl=impl)
    labels = inputs[case["labels"]]
    if changes.pop("late_objects", True) is False:  # mutant: objects that start late are never added
        labels = np.where(np.isin(labels, np.unique(labels[0])), labels, 0).astype(labels.dtype)
    prop = LabelPropagator(**{**settings, **changes})
    soft, pred, conf, contexts = _run(prop, emb, labels)

    assert soft.shape == exp["soft_masks"].shape
    err = np.abs(soft - exp["soft_masks"]).max()
    assert err <= SOFT_ATOL, f"{name}: soft masks differ by up to {err:.3g} (> {SOFT_ATOL})"
    assert_labels_match(pred, exp["pred_labels"], exp["soft_masks"], name)
    np.testing.assert_allclose(conf, exp["conf_mean_per_frame"], rtol=0, atol=CONF_ATOL, err_msg=name)
    assert contexts == case["context_index_per_step {t: {t0: [...]}}"], name
    assert prop.references == [k for k in case["init_mask_keys_from_configure_tracks"] if k >= 0], name
    started = [t for t in exp["tracks"].tolist() if t >= 0]
    assert sorted(prop.references) == sorted(set(started)), name


@pytest.mark.parametrize("impl", ["dense", "local"])
@pytest.mark.parametrize("name", _case_names())
def test_golden_label_propagation(golden_dir, name, impl):
    check_case(golden_dir / "labelprop", name, impl)
