"""The task-agnostic switches every LightningModule reads: initialization schemes, norms,
weight-decay groups and learning-rate schedules."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lightning_modules.common import (
    LeanAdamW,
    Optimization,
    build_scheduler,
    clip_grad_norm,
    configure_adamw,
    decay_groups,
    init_weights,
    lr_multiplier,
    make_norm,
    time_budget_used,
)


@pytest.mark.parametrize(
    "scheme,expected_std",
    [("xavier", math.sqrt(2 / (256 + 256))), ("kaiming", math.sqrt(2 / 256))],
)
def test_init_scheme_sets_its_standard_deviation(scheme, expected_std):
    torch.manual_seed(0)
    layer = init_weights(nn.Sequential(nn.Linear(256, 256)), scheme)[0]
    assert layer.weight.std().item() == pytest.approx(expected_std, rel=0.03)
    assert torch.count_nonzero(layer.bias) == 0


def test_orthogonal_init_gives_orthogonal_rows_scaled_by_the_gain():
    layer = init_weights(nn.Sequential(nn.Linear(64, 64)), "orthogonal", gain=math.sqrt(2))[0]
    gram = layer.weight @ layer.weight.T
    assert torch.allclose(gram, 2 * torch.eye(64), atol=1e-4)


def test_default_init_leaves_the_weights_alone_and_unknown_schemes_fail():
    layer = nn.Linear(8, 8)
    before = layer.weight.clone()
    init_weights(layer, "default")
    assert torch.equal(layer.weight, before)
    with pytest.raises(ValueError, match="init must be"):
        init_weights(layer, "lecun")


@pytest.mark.parametrize(
    "kind,layer", [("group", nn.GroupNorm), ("layer", nn.GroupNorm), ("batch", nn.BatchNorm2d)]
)
def test_norm_switch_builds_that_norm(kind, layer):
    norm = make_norm(kind, 16)
    assert isinstance(norm, layer)
    if kind == "layer":
        assert norm.num_groups == 1  # LayerNorm over channels and positions
    assert isinstance(make_norm("none", 16), nn.Identity)


def test_weight_decay_applies_to_matrices_only_and_skips_frozen_parameters():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[2].requires_grad_(False)
    groups = decay_groups(model.parameters(), 0.1, lr=0.5)
    decayed, plain = groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert [p.shape for p in decayed["params"]] == [torch.Size([4, 4])]
    assert len(plain["params"]) == 3  # a bias and the norm's scale and shift
    assert all(g["lr"] == 0.5 for g in groups)


def lr_curve(schedule: str, steps: list[int], total: int = 100, warmup: int = 10) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, schedule, total, warmup)
    curve = {}
    for step in range(total + 1):
        curve[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    return [curve[s] for s in steps]


@pytest.mark.parametrize(
    "schedule,expected",
    [
        # 10 warm-up steps then 90: linear and cosine are halfway down at step 55; flat_cosine
        # stays flat for 75% of the 90 (to step 77.5) and is halfway down at 88.75.
        ("constant", {0: 0.1, 9: 1.0, 55: 1.0, 100: 1.0}),
        ("linear", {0: 0.1, 9: 1.0, 55: 0.5, 100: 0.0}),
        ("cosine", {0: 0.1, 9: 1.0, 30: 0.883, 55: 0.5, 100: 0.0}),
        ("flat_cosine", {0: 0.1, 55: 1.0, 77: 1.0, 89: 0.483, 100: 0.0}),
    ],
)
def test_each_schedule_warms_up_then_follows_its_curve(schedule, expected):
    got = lr_curve(schedule, list(expected))
    assert got == pytest.approx(list(expected.values()), abs=0.005)


def test_one_cycle_rises_from_a_25th_to_the_peak_then_falls_to_almost_zero():
    start, peak, middle, end = lr_curve("one_cycle", [0, 30, 65, 100], total=100, warmup=0)
    assert start == pytest.approx(1 / 25)
    assert peak == pytest.approx(1.0)  # 30% of the run rising, as torch's OneCycleLR
    assert middle == pytest.approx(0.5, abs=0.01)
    assert end == pytest.approx(1 / 25e4, abs=1e-6)


def test_unknown_schedule_fails_when_built():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        build_scheduler(optimizer, "step", 100)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "flat_cosine", "one_cycle"])
def test_a_run_limited_only_by_time_anneals_over_its_budget(schedule):
    clock = {"used": 0.0}
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, schedule, math.inf, 0, lambda: clock["used"])
    rates = []
    for used in (0.0, 0.5, 1.0):
        clock["used"] = used
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    start, _, end = rates
    assert start > 0.03 and end < 1e-4  # no step limit: the clock alone brings the rate down
    # A step limit as well: steps decide (deterministic, so resumes stay exact), time is a stop.
    by_steps = build_scheduler(optimizer, "linear", 100, 0, lambda: 0.9)
    for _ in range(20):
        optimizer.step()
        by_steps.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.8)


def test_time_budget_used_reads_lightnings_timer_which_a_resumed_run_restores(monkeypatch):
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer
    from lightning.pytorch.callbacks import timer as timer_module

    now = {"t": 1000.0}
    monkeypatch.setattr(timer_module.time, "monotonic", lambda: now["t"])
    timer = Timer(duration={"seconds": 100})
    trainer = SimpleNamespace(callbacks=[timer])
    assert time_budget_used(SimpleNamespace(callbacks=[])) is None  # no max_time: steps decide
    timer.on_train_start(trainer, None)
    now["t"] += 25
    assert time_budget_used(trainer) == pytest.approx(0.25)
    resumed = Timer(duration={"seconds": 100})
    resumed.load_state_dict(timer.state_dict())  # as a checkpoint restores it
    now["t"] += 1000  # a later process
    resumed.on_train_start(SimpleNamespace(callbacks=[resumed]), None)
    assert time_budget_used(SimpleNamespace(callbacks=[resumed])) == pytest.approx(0.25)


def steps_module(total_steps: int = 10) -> SimpleNamespace:
    """What `configure_adamw` reads of a LightningModule: its trainer's step count and callbacks."""
    return SimpleNamespace(
        trainer=SimpleNamespace(estimated_stepping_batches=total_steps, callbacks=[])
    )


def test_optimization_takes_the_shared_options_from_a_modules_hyperparameters():
    hparams = {"lr": 3e-3, "weight_decay": 0.05, "lr_schedule": "cosine", "head": "attend_align"}
    assert Optimization.of(hparams) == Optimization(
        lr=3e-3, weight_decay=0.05, lr_schedule="cosine"
    )


def test_configure_adamw_builds_decay_groups_and_a_per_step_schedule():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    optimization = Optimization(lr=1.0, weight_decay=0.1, warmup_steps=2, lr_schedule="cosine")
    configured = configure_adamw(steps_module(10), model.parameters(), optimization)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert configured["lr_scheduler"]["interval"] == "step"
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([lr_multiplier("cosine", s, 10, 2) for s in range(10)])


def test_configure_adamw_gives_each_group_its_own_rate_and_decay():
    encoder, head = nn.Linear(4, 4), nn.Linear(4, 2)
    groups = [{"params": head.parameters()}, {"params": encoder.parameters(), "lr": 0.1}]
    optimization = Optimization(lr=1.0, weight_decay=0.1)
    optimizer = configure_adamw(steps_module(), groups, optimization, scheduled=False)["optimizer"]
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        (1.0, 0.1),  # head weight
        (1.0, 0.0),  # head bias
        (0.1, 0.1),  # encoder weight
        (0.1, 0.0),  # encoder bias
    ]
    no_decay = [{"params": head.parameters(), "weight_decay": 0.0}]
    configured = configure_adamw(steps_module(), no_decay, optimization, scheduled=False)
    assert all(g["weight_decay"] == 0.0 for g in configured["optimizer"].param_groups)
    assert "lr_scheduler" not in configured  # scheduled=False: PPO sets its own rate


def test_configure_adamw_returns_none_when_nothing_trains():
    frozen = nn.Linear(4, 4).requires_grad_(False)
    assert configure_adamw(steps_module(), frozen.parameters(), Optimization(lr=1.0)) is None
    assert configure_adamw(steps_module(), [], Optimization(lr=1.0)) is None


def _two_layer_copies():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    other = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    other.load_state_dict(model.state_dict())
    return model, other


def _groups(model):
    return [
        {"params": [model[0].weight, model[2].weight], "weight_decay": 0.1},
        {"params": [model[0].bias], "weight_decay": 0.0, "lr": 3e-3},
        {"params": [model[2].bias], "weight_decay": 0.0},
    ]


def _loss(model, step):
    generator = torch.Generator().manual_seed(step)
    x, y = torch.randn(16, 5, generator=generator), torch.randn(16, 3, generator=generator)
    return ((model(x) - y) ** 2).mean()


def test_lean_adamw_updates_exactly_as_torchs_fused_adamw_and_shares_its_state():
    lean_model, torch_model = _two_layer_copies()
    lean = LeanAdamW(_groups(lean_model), lr=1e-2, eps=1e-5)
    reference = torch.optim.AdamW(_groups(torch_model), lr=1e-2, eps=1e-5, fused=True)
    lean_model[2].bias.requires_grad_(False)  # no gradient for a while: left alone
    torch_model[2].bias.requires_grad_(False)
    for step in range(8):
        if step == 3:  # it gains its first gradient: its state is created on the way
            lean_model[2].bias.requires_grad_(True)
            torch_model[2].bias.requires_grad_(True)
        if step == 5:  # a new rate between steps, as PPO's annealing sets it
            for group in lean.param_groups + reference.param_groups:
                group["lr"] *= 0.5
        for model, optimizer in ((lean_model, lean), (torch_model, reference)):
            optimizer.zero_grad()
            if step % 2:  # through a closure too, as Lightning calls it
                optimizer.step(lambda m=model, s=step: _loss(m, s).backward())
            else:
                _loss(model, step).backward()
                optimizer.step()
        for mine, theirs in zip(lean_model.parameters(), torch_model.parameters()):
            assert torch.equal(mine, theirs), step
    assert lean.state[lean_model[2].bias]["step"].item() == 5
    # Its state_dict is AdamW's: each loads the other's and both continue identically.
    torch_on_lean = torch.optim.AdamW(_groups(lean_model), lr=1e-2, eps=1e-5, fused=True)
    torch_on_lean.load_state_dict(lean.state_dict())
    lean_on_torch = LeanAdamW(_groups(torch_model), lr=1e-2, eps=1e-5)
    lean_on_torch.load_state_dict(reference.state_dict())
    for model, optimizer in ((lean_model, torch_on_lean), (torch_model, lean_on_torch)):
        optimizer.zero_grad()
        _loss(model, 99).backward()
        optimizer.step()
    for mine, theirs in zip(lean_model.parameters(), torch_model.parameters()):
        assert torch.equal(mine, theirs)


def test_lean_adamw_takes_torchs_step_for_what_it_does_not_cover(monkeypatch):
    model, _ = _two_layer_copies()
    optimizer = LeanAdamW(model.parameters(), lr=1e-2, amsgrad=True)
    calls = []
    original = torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW, "step", lambda self, closure=None: calls.append(1) or original(self)
    )
    for step in range(3):
        optimizer.zero_grad()
        _loss(model, step).backward()
        optimizer.step()
    assert len(calls) == 3  # amsgrad: every step is torch's
    plain = LeanAdamW(model.parameters(), lr=1e-2)
    for step in range(3):
        plain.zero_grad()
        _loss(model, step).backward()
        plain.step()
    assert len(calls) == 4  # only the first, which creates the state


def test_clip_grad_norm_scales_as_torchs_and_returns_the_norm_before_clipping():
    for max_norm in (0.01, 1e6):  # clipped, and left alone
        mine, theirs = _two_layer_copies()
        for model in (mine, theirs):
            _loss(model, 0).backward()
        mine[2].bias.grad = None  # a parameter without a gradient is skipped
        theirs[2].bias.grad = None
        norm = clip_grad_norm(mine.parameters(), max_norm)
        expected = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm, foreach=True)
        assert torch.allclose(norm, expected)
        for a, b in zip(mine.parameters(), theirs.parameters()):
            assert (a.grad is None and b.grad is None) or torch.allclose(a.grad, b.grad)
    assert (norm > 0.01).item()  # the first case did clip
    assert clip_grad_norm(nn.Linear(2, 2).parameters(), 1.0).item() == 0.0  # no gradients
