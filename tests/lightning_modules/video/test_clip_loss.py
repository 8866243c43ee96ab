"""CLIP's InfoNCE: duplicate texts are no negatives; over two gloo processes it equals the
single-process loss of the concatenated batch, and gradients flow through the gather."""

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from lightning_modules.video.losses import clip_loss


def embeddings(n: int, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator), torch.randn(n, dim, generator=generator)


def test_duplicate_texts_are_removed_from_the_negatives():
    frames, texts = (F.normalize(x, dim=-1) for x in embeddings(3))
    scale = torch.tensor(10.0)
    text_ids = torch.tensor([5, 5, 6])  # pairs 0 and 1 show the same step
    logits = scale * frames @ texts.T
    # by hand: row 0 competes with columns 0 and 2 only, row 1 with 1 and 2, row 2 with all
    keep = [[0, 2], [1, 2], [0, 1, 2]]
    per_frame = [-logits[i, i] + logits[i, keep[i]].logsumexp(0) for i in range(3)]
    per_text = [-logits[i, i] + logits[keep[i], i].logsumexp(0) for i in range(3)]
    expected = (torch.stack(per_frame).mean() + torch.stack(per_text).mean()) / 2
    assert clip_loss(frames, texts, text_ids, scale).item() == pytest.approx(
        expected.item(), abs=1e-5
    )
    # without the duplicate ids, pair 1 is a negative of pair 0 and the loss differs
    distinct = clip_loss(frames, texts, torch.tensor([5, 7, 6]), scale)
    assert distinct.item() != pytest.approx(expected.item(), abs=1e-3)


def test_logit_scale_starts_at_one_over_0_07_and_is_clamped_at_100():
    from lightning_modules.video import ClipEncoders, EncoderConfig

    config = EncoderConfig(cnn_width=4, text_hidden=16, text_layers=1, text_heads=2, embed_dim=8)
    encoders = ClipEncoders.build(config, vocab_size=20)
    assert encoders.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        encoders.log_logit_scale.fill_(math.log(500.0))
    assert encoders.logit_scale.item() == pytest.approx(100.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_loss(rank, world, port, frames, texts, text_ids, scale, results):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        rows = slice(rank * len(frames) // world, (rank + 1) * len(frames) // world)
        local_frames = frames[rows].clone().requires_grad_()
        local_texts = texts[rows].clone().requires_grad_()
        local_scale = scale.clone().requires_grad_()
        loss = clip_loss(
            F.normalize(local_frames, dim=-1),
            F.normalize(local_texts, dim=-1),
            text_ids[rows],
            local_scale,
        )
        loss.backward()
        results[rank] = (loss.detach(), local_frames.grad, local_texts.grad, local_scale.grad)
    finally:
        dist.destroy_process_group()


def test_two_process_loss_and_gradients_equal_the_concatenated_batch():
    world = 2
    frames, texts = embeddings(8, seed=3)
    text_ids = torch.tensor([0, 1, 2, 0, 3, 1, 4, 5])  # duplicates within and across ranks
    scale = torch.tensor(14.0)

    results = mp.Manager().dict()
    # fork: the workers need no re-import, which a busy machine would pay for in seconds
    mp.start_processes(
        rank_loss,
        args=(world, free_port(), frames, texts, text_ids, scale, results),
        nprocs=world,
        start_method="fork",
    )

    whole_frames, whole_texts = frames.clone().requires_grad_(), texts.clone().requires_grad_()
    whole_scale = scale.clone().requires_grad_()
    loss = clip_loss(
        F.normalize(whole_frames, dim=-1), F.normalize(whole_texts, dim=-1), text_ids, whole_scale
    )
    loss.backward()

    losses, frame_grads, text_grads, scale_grads = zip(*(results[r] for r in range(world)))
    # DDP averages over ranks: the mean of the local losses is the whole batch's loss
    assert torch.stack(losses).mean().item() == pytest.approx(loss.item(), abs=1e-5)
    # each rank's embeddings get every rank's loss gradient through the gather (summed), so
    # after DDP's averaging they equal the single-process gradients
    assert torch.allclose(torch.cat(frame_grads) / world, whole_frames.grad, atol=1e-5)
    assert torch.allclose(torch.cat(text_grads) / world, whole_texts.grad, atol=1e-5)
    assert torch.stack(scale_grads).mean().item() == pytest.approx(
        whole_scale.grad.item(), abs=1e-5
    )
    # and the other ranks' rows did contribute: without the gather the gradients would differ
    local_only = frames[:4].clone().requires_grad_()
    clip_loss(
        F.normalize(local_only, dim=-1), F.normalize(texts[:4], dim=-1), text_ids[:4], scale
    ).backward()
    assert not torch.allclose(local_only.grad, frame_grads[0], atol=1e-4)
