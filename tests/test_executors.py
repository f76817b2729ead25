"""How the Dask executor cuts a grid into tasks: one per noisy-input group, split when too few."""

from __future__ import annotations

from bench.grid.cells import Cell
from bench.grid.dask_executor import task_groups


def cells(groups: int, denoisers: int) -> dict[str, Cell]:
    found = {}
    for level in range(groups):
        for d in range(denoisers):
            key = f"l{level}-d{d}"
            found[key] = Cell("ds", "gaussian", 0.1 * (level + 1), f"m{d}", 0, f"m{d}", "sigma", key)
    return found


def test_one_task_per_noisy_input_group_when_there_are_enough():
    grid = cells(groups=6, denoisers=3)
    tasks = task_groups(grid, list(grid), slots=2)
    assert len(tasks) == 6
    for task in tasks:
        assert len(task) == 3 and len({grid[key].noisy_group for key in task}) == 1
    assert sorted(key for task in tasks for key in task) == sorted(grid)


def test_few_groups_are_split_so_every_slot_has_work():
    grid = cells(groups=1, denoisers=8)
    tasks = task_groups(grid, list(grid), slots=2)
    assert [len(t) for t in tasks] == [2, 2, 2, 2]
    assert sorted(key for task in tasks for key in task) == sorted(grid)
    one = cells(groups=1, denoisers=1)
    assert task_groups(one, list(one), slots=4) == [["l0-d0"]]


def test_only_the_given_keys_are_sent():
    grid = cells(groups=3, denoisers=2)
    keys = ["l0-d1", "l2-d0", "l2-d1"]
    assert task_groups(grid, keys, slots=1) == [["l0-d1"], ["l2-d0", "l2-d1"]]


def worker_environment() -> dict:
    import os

    import torch

    return {"env": {name: os.environ.get(name) for name in
                    ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")},
            "cores": len(os.sched_getaffinity(0)), "torch": torch.get_num_threads()}


def test_local_workers_share_the_cores_and_keep_glibc_malloc_adaptive():
    import os

    from bench.grid.dask_executor import DaskExecutor, host_threads

    before = dict(os.environ)
    executor = DaskExecutor({}, "cpu", workers=2)
    try:
        found = executor.client.submit(worker_environment, pure=False).result()
    finally:
        executor.close()
    threads = str(max(1, found["cores"] // 2))
    assert found["env"] == {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                            "OPENBLAS_NUM_THREADS": threads, "MALLOC_TRIM_THRESHOLD_": None}
    assert host_threads(2) == int(threads)
    assert dict(os.environ) == before, "the driver's environment is left as it was"
