"""CPU kernel and thread choices: forced choices are applied, automatic ones come from measurement."""

import torch

from rewardmill.reward_models import cpu
from rewardmill.reward_models.options import CpuOptions


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()


def test_forced_onednn_routes_every_linear_and_keeps_results():
    model = make_model()
    x = torch.randn(5, 32)
    with torch.inference_mode():
        want = model(x)
        choice = cpu.choose(model, CpuOptions(kernel="onednn", threads=1))
        got = model(x)
    assert choice.kernel == "onednn" and choice.threads == 1 and torch.get_num_threads() == 1
    assert all("forward" in vars(m) for m in model if isinstance(m, torch.nn.Linear))
    assert torch.allclose(got, want, atol=1e-5)


def test_prepacked_and_plain_onednn_agree():
    x = torch.randn(7, 32)
    results = []
    for prepack in (False, True):
        model = make_model()
        assert cpu.use_onednn(model, prepack=prepack) is prepack
        assert all(hasattr(m, "_onednn_weight") is prepack for m in model if isinstance(m, torch.nn.Linear))
        with torch.inference_mode():
            results.append(model(x))
    assert torch.allclose(results[0], results[1], atol=1e-5)
    assert set(make_model().state_dict()) == set(model.state_dict())  # weights stay where they were


def test_forced_torch_changes_nothing():
    model = make_model()
    choice = cpu.choose(model, CpuOptions(kernel="torch", threads=1))
    assert choice.kernel == "torch"
    assert not any("forward" in vars(m) for m in model)


def test_auto_reports_every_measured_candidate():
    model = make_model()
    choice = cpu.choose(model, CpuOptions(kernel="auto", threads=1))
    assert choice.kernel in ("torch", "onednn") and choice.threads == 1
    assert "torch/1 thr" in choice.note and "onednn/1 thr" in choice.note
    torch.set_num_threads(1)
