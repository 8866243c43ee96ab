"""gather_from_ranks: every rank's object in rank order, under DDP and in one process."""

import torch.distributed as dist
import torch.multiprocessing as mp

from casebook.common.distributed import gather_from_ranks


def test_a_single_process_gathers_its_own_value():
    assert gather_from_ranks({"rows": [1, 2]}) == [{"rows": [1, 2]}]


def _gather(rank: int, world: int, init: str, out) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        out.put((rank, gather_from_ranks({"rank": rank})))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_each_get_both_values_in_rank_order(tmp_path):
    context = mp.get_context("fork")  # spawn would re-import torch in each rank: seconds
    out = context.Queue()
    init = f"file://{tmp_path / 'rendezvous'}"
    processes = [context.Process(target=_gather, args=(r, 2, init, out)) for r in range(2)]
    for process in processes:
        process.start()
    results = dict(out.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert results == {0: [{"rank": 0}, {"rank": 1}], 1: [{"rank": 0}, {"rank": 1}]}
