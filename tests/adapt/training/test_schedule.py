import math

import torch

from sam3_adapt.training.schedule import cosine_factor, inverse_sqrt_factor, inverse_sqrt_schedule


def test_warmup_is_linear_then_decays_as_inverse_sqrt():
    assert inverse_sqrt_factor(0, 4) == 0.25
    assert inverse_sqrt_factor(3, 4) == 1.0
    assert math.isclose(inverse_sqrt_factor(15, 4), math.sqrt(4 / 16))


def test_schedule_scales_every_group():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.AdamW([{"params": [params[0]], "lr": 1.0}, {"params": [params[1]], "lr": 0.1}])
    scheduler = inverse_sqrt_schedule(optimizer, warmup_steps=2)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.05]
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [1.0, 0.1]


def test_cosine_warms_up_then_halves_midway_and_ends_at_the_floor():
    assert cosine_factor(0, 4, 104) == 0.25
    assert cosine_factor(3, 4, 104) == 1.0
    assert math.isclose(cosine_factor(53, 4, 104), 0.05 + 0.95 * 0.5)
    assert math.isclose(cosine_factor(103, 4, 104), 0.05)
    assert math.isclose(cosine_factor(500, 4, 104), 0.05)
