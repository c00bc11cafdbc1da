"""HVC model, hybrid loss and EMA schedule against the official code's fixtures.

Fixtures: $HVC_GOLDEN_DIR/hybrid_loss (docs/fixtures.md, "Training objective"); every case and array
key found in the files is checked, with the tolerances listed there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hvc.models.hvc as hvc_module
from hvc.export import encoder_from_checkpoint
from hvc.models.hvc import HVC, FlowHead, momentum_at
from hvc.models.loss import hybrid_loss, positive_pairs


class _ZeroFlow(torch.nn.Module):
    """Flow stand-in whose output normalises to 0: only the static term remains."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.zeros(a.shape[0], 2, *a.shape[2:])


def _rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _t(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr))


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict:
    """Everything in hybrid_loss/, the golden states decoded once (23 M values each)."""
    from helpers.golden_state import load_hvc_state  # the repository's own decoder (tests/helpers/golden_state.py)

    d = golden_dir / "hybrid_loss"
    expected = json.loads((d / "expected.json").read_text())
    cases = sorted(k[len("case_"):] for k in expected if k.startswith("case_"))
    assert cases, f"no case_* entries in {d / 'expected.json'}"
    return {
        "dir": d,
        "expected": expected,
        "arrays": np.load(d / "expected.npz"),
        "inputs": np.load(d / "inputs.npz"),
        "codes": np.load(d / "state_codes.npz"),
        "layout": json.loads((d / "state_layout.json").read_text()),
        "state": {c: load_hvc_state(str(d / "state_codes.npz"), case=c) for c in cases},
        "export": load_hvc_state(str(d / "state_codes.npz"), case=cases[0], export=True),
        "cases": cases,
    }


def _build(golden: dict, case: str) -> HVC:
    hp = golden["expected"]["hyper_parameters"]
    model = HVC(hp["arch"], hp["projection_hidden_dim"], hp["projection_dim"], hp["prediction_hidden_dim"],
                hp["pos_radius"], init_forward_size=None)
    model.load_state_dict(golden["state"][case], strict=True)
    return model.train()


@pytest.fixture(scope="module")
def runs(golden: dict) -> dict:
    """Per case: one forward/backward as in docs/training.md, with the hybrid_loss calls recorded."""
    inp = golden["inputs"]
    views = [_t(inp[k]).flatten(0, 1) for k in ("vid1", "vid2")]  # [B*T, 3, H, W], b-major
    coords = [_t(inp[k]).flatten(0, 1) for k in ("coord1", "coord2")]
    out = {}
    for case in golden["cases"]:
        exp = golden["expected"]["case_" + case]
        model = _build(golden, case)
        calls = []

        def spy(q, k, cq, ck, flow, r, _calls=calls):
            value = hybrid_loss(q, k, cq, ck, flow, r)
            _calls.append({"q": q.detach().clone(), "k": k.detach().clone(), "value": value.item()})
            return value

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hvc_module, "hybrid_loss", spy)
            loss = model(*views, *coords, momentum=momentum_at(exp["current_step_before"], golden["expected"]["total_steps"]))
        loss.backward()
        out[case] = {"model": model, "loss": loss.item(), "calls": calls}
    return out


def test_state_layout_and_init_forward_match_official(golden):
    """Keys/shapes in official order; the __init__ dummy pass leaves the official counters."""
    model = HVC(init_forward_size=64)
    state = model.state_dict()
    layout = golden["layout"]["keys"]
    assert [e["key"] for e in layout] == list(state)
    assert all(list(state[e["key"]].shape) == e["shape"] for e in layout)
    assert sum(v.numel() for v in state.values()) == golden["layout"]["num_values"]
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            assert value.item() == int(golden["codes"]["int/" + key]), key
    # the online encoder saw one zero image; the target copy was taken before
    assert not torch.equal(state["online_encoder.bn1.running_var"], state["target_encoder.bn1.running_var"])
    assert all(not p.requires_grad for p in model.target_encoder.parameters())


def test_momentum_schedule(golden):
    sched = json.loads((golden["dir"] / "momentum_schedule.json").read_text())
    assert sched["schedule"], "momentum_schedule.json lists no steps"
    for e in sched["schedule"]:
        m = momentum_at(e["step"], sched["total_steps"], sched["momentum_target"])
        assert abs(m - e["m_formula_float64"]) <= 1e-12, e
        assert abs(m - e["m_probed_float32"]) <= 1e-9, e
    assert momentum_at(2 * sched["total_steps"], sched["total_steps"]) == pytest.approx(0.99)  # not clamped


def test_loss_and_terms(golden, runs):
    assert runs, "no golden case was run"
    for case, run in runs.items():
        exp = golden["expected"]["case_" + case]
        assert abs(run["loss"] - exp["loss"]) <= 1e-5, case
        terms = [c["value"] for c in run["calls"]]
        assert terms and len(terms) == len(exp["hybrid_loss_terms"]), case
        assert np.abs(np.subtract(terms, exp["hybrid_loss_terms"])).max() <= 1e-5, case
        m = momentum_at(exp["current_step_before"], golden["expected"]["total_steps"])
        assert abs(m - exp["ema_momentum_used"]) <= 1e-12


def test_gradients_and_grad_norms(golden, runs):
    arrays = golden["arrays"]
    assert runs, "no golden case was run"
    grad_arrays = 0
    for case, run in runs.items():
        exp = golden["expected"]["case_" + case]
        params = dict(run["model"].named_parameters())
        with_grad = {n for n, p in params.items() if p.grad is not None}
        assert with_grad and with_grad == set(exp["grad_norms"]), case
        assert set(exp["params_without_grad"]) == set(params) - with_grad
        for name, norm in exp["grad_norms"].items():
            ours = params[name].grad.norm().item()
            if norm < 1e-5:  # a bias followed by BatchNorm: mathematically zero
                assert ours < 1e-5, name
            else:
                assert abs(ours - norm) <= 1e-3 * norm, (case, name, ours, norm)
        keys = [k for k in arrays.files if k.startswith(case + "/grad/")]  # case A only in the fixture
        grad_arrays += len(keys)
        for key in keys:
            name = key.split("/", 2)[2]
            early = name.startswith("online_encoder.") and not name.startswith("online_encoder.layer4.")
            err = _rel_l2(params[name].grad, _t(arrays[key]))
            assert err <= (1e-3 if early else 1e-4), (key, err)
    assert grad_arrays > 0, "expected.npz holds no recorded gradient of any case: nothing was compared"


def test_flow_gradients_from_the_recorded_features(golden):
    """The loss alone, fed the official q/k features: its flow gradients are exact.

    This isolates the loss arithmetic from the encoder: any error here is the loss's own.
    """
    arrays, inp = golden["arrays"], golden["inputs"]
    c1, c2 = (_t(inp[k]).flatten(0, 1) for k in ("coord1", "coord2"))
    checked = 0
    for case in golden["cases"]:
        feats = {n: _t(arrays[f"{case}/features/{n}"]) for n in ("pred_1", "pred_2", "proj_1_tar", "proj_2_tar")
                 if f"{case}/features/{n}" in arrays.files}
        if not feats:
            continue
        checked += 1
        model = _build(golden, case)
        r = model.pos_radius
        loss = (hybrid_loss(feats["pred_1"], feats["proj_2_tar"], c1, c2, model.flow, r)
                + hybrid_loss(feats["pred_2"], feats["proj_1_tar"], c2, c1, model.flow, r))
        loss.backward()
        exp = golden["expected"]["case_" + case]
        assert abs(loss.item() - exp["loss"]) <= 1e-6
        params = dict(model.named_parameters())
        keys = [k for k in arrays.files if k.startswith(case + "/grad/flow.")]
        assert keys
        for key in keys:
            assert _rel_l2(params[key.split("/", 2)[2]].grad, _t(arrays[key])) <= 2e-5, key
    assert checked > 0, "no case of expected.npz holds recorded features: nothing was checked"


def test_features_buffers_and_ema_target(golden, runs):
    arrays = golden["arrays"]
    names = {"pred_1": (0, "q"), "proj_2_tar": (0, "k"), "pred_2": (1, "q"), "proj_1_tar": (1, "k")}
    assert runs, "no golden case was run"
    for case, run in runs.items():
        state = run["model"].state_dict()
        checked = 0
        for key in (k for k in arrays.files if k.startswith(case + "/")):
            kind, name = key.split("/", 2)[1:]
            ref = _t(arrays[key])
            if kind == "features":
                call, arg = names[name]
                ours = run["calls"][call][arg]
            elif kind in ("buffer_after", "target_after"):
                ours = state[name]
            else:
                continue
            assert ours.shape == ref.shape, key
            assert (ours.double() - ref.double()).abs().max().item() <= 1e-5, key
            checked += 1
        assert checked > 0, case


def test_positive_pairs_of_the_training_inputs(golden):
    inp, hp = golden["inputs"], golden["expected"]["hyper_parameters"]
    side = golden["expected"]["encoder_output_during_training"]["hw"]
    c1, c2 = (_t(inp[k]).flatten(0, 1) for k in ("coord1", "coord2"))
    pos = positive_pairs(c1, c2, (side, side), (side, side), hp["pos_radius"])
    assert pos.sum(dim=(1, 2)).tolist() == golden["expected"]["positive_pairs_per_sample_at_pos_radius"]


def test_direct_hybrid_loss_calls(golden):
    """The direct loss call (docs/fixtures.md): all radii; train-mode flow, spatial only, eval-mode flow, dloss/dq."""
    d = golden["dir"]
    info = json.loads((d / "direct_hybrid_loss.json").read_text())
    arrays = np.load(d / "direct_hybrid_loss.npz")
    q, k, cq, ck = (_t(arrays[n]) for n in ("q", "k", "coord_q", "coord_k"))
    assert info["results"], "direct_hybrid_loss.json lists no radius"
    flow_state = {n[len("flow."):]: v for n, v in golden["state"]["A"].items() if n.startswith("flow.")}

    def fresh_flow() -> FlowHead:
        flow = FlowHead(q.shape[1])
        flow.load_state_dict(flow_state, strict=True)
        return flow

    for res in info["results"]:
        r = res["pos_radius"]
        pos = positive_pairs(cq, ck, tuple(q.shape[2:]), tuple(k.shape[2:]), r)
        assert pos.sum(dim=(1, 2)).tolist() == res["positive_pairs_per_sample"]

        flow = fresh_flow().train()
        q_leaf = q.clone().requires_grad_(True)
        loss = hybrid_loss(q_leaf, k, cq, ck, flow, pos_radius=r)
        loss.backward()
        assert abs(loss.item() - res["loss_train_mode"]) <= 1e-5, r
        assert _rel_l2(q_leaf.grad, _t(arrays[f"r{r}/dloss_dq"])) <= 1e-5, r
        gw = flow.conv1.weight.grad
        assert _rel_l2(gw.sum(dim=(1, 2, 3)), _t(arrays[f"r{r}/grad_flow.conv1.weight_sum_over_io"])) <= 1e-4, r
        assert gw.norm().item() == pytest.approx(res["grad_norm_flow.conv1.weight"], rel=1e-4)

        spatial = hybrid_loss(q, k, cq, ck, _ZeroFlow(), pos_radius=r).item()
        assert abs(spatial - res["loss_spatial_only"]) <= 1e-5, r
        assert abs(loss.item() - spatial - res["loss_temporal_only"]) <= 1e-5, r

        with torch.no_grad():
            eval_loss = hybrid_loss(q, k, cq, ck, fresh_flow().eval(), pos_radius=r).item()
        assert abs(eval_loss - res["loss_flow_eval_mode"]) <= 1e-5, r


def test_encoder_export_matches_official(golden):
    model = _build(golden, golden["cases"][0])
    ours, ref = encoder_from_checkpoint({"model": model.state_dict()}), golden["export"]  # hvc.export's selection
    assert ref and list(ours) == list(ref)
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    export_info = json.loads((golden["dir"] / "export.json").read_text())
    assert [(k, list(v.shape)) for k, v in ours.items()] == [(e["key"], e["shape"]) for e in export_info["exported_keys"]]
