"""Resume after a killed driver, hard timeouts, plugins that end their process, Dask workers dying,
concurrent writers, no process outliving the driver."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import rows, sigkill_mid_grid

PLUGIN = '''
import os, signal, subprocess, sys, time
from pathlib import Path
import torch.nn.functional as F
import bench

class Slow:
    """A 3x3 mean filter that takes its time, hangs or kills its own process when told
    (``started``: a file it writes when called)."""
    def __init__(self, delay=0.0, hang=False, die_once="", started="", spawned=""):
        self.delay, self.hang, self.die_once, self.started = delay, hang, die_once, started
        self.spawned = spawned  # a file for the pid of a process it starts and leaves running
    def __call__(self, y, sigma):
        if self.spawned:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            Path(self.spawned).write_text(str(child.pid))
        if self.started:
            Path(self.started).write_text(str(os.getpid()))
        if self.die_once and not Path(self.die_once).exists():
            Path(self.die_once).write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(3600 if self.hang else self.delay)
        return F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)

class Exit:
    """Ends its own process mid-cell: os._exit, sys.exit, or a signal (how=SIGKILL, ...)."""
    def __init__(self, how="os-exit", code=0):
        self.how, self.code = how, code
    def __call__(self, y, sigma):
        if self.how == "os-exit":
            os._exit(self.code)
        if self.how == "sys-exit":
            sys.exit(self.code)
        if self.how == "interrupt":
            raise KeyboardInterrupt
        os.kill(os.getpid(), getattr(signal, self.how))
        time.sleep(10)

@bench.hookimpl
def register_denoisers(register):
    register("slow", Slow, sigma_aware=False, description="slow 3x3 mean")
    register("a-exit", Exit, sigma_aware=False, description="ends its own process")
'''
GRID = ["-d", "skimage-gray[crop=48]", "--limit-images", "3", "-n", "gaussian:0.05,0.1,0.15,0.2"]


def bench_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "bench", *map(str, args)]


def board(store) -> pd.DataFrame:
    out = subprocess.run(bench_cmd("leaderboard", "--store", store, "--format", "csv", "--metric", "psnr"),
                         capture_output=True, text=True, check=True).stdout
    return pd.read_csv(io.StringIO(out))


@pytest.fixture
def plugin(write_plugin):
    return write_plugin(PLUGIN, "slow_plugin.py")


def test_resume_after_sigkill_of_the_driver(plugin, tmp_path):
    killed, whole = tmp_path / "killed.sqlite", tmp_path / "whole.sqlite"
    args = [*GRID, "-m", "slow[delay=1.5]", "-m", "noisy", "--plugin", plugin, "--quiet"]
    done_before = sigkill_mid_grid(bench_cmd("run", *args, "--store", killed), killed)
    assert 2 <= len(done_before) < 8, "the driver should have been killed mid-grid"
    assert rows(killed, "PRAGMA integrity_check") == [("ok",)]

    assert subprocess.run(bench_cmd("run", *args, "--store", killed)).returncode == 0
    after = dict(rows(killed, "SELECT key, updated FROM cells WHERE status = 'done'"))
    assert len(after) == 8
    assert all(after[key] == stamp for key, stamp in done_before.items()), "done cells were recomputed"

    assert subprocess.run(bench_cmd("run", *args, "--store", whole)).returncode == 0
    pd.testing.assert_frame_equal(board(killed), board(whole))


def test_hanging_plugin_is_stopped_by_the_timeout(plugin, store, cli):
    result = cli("run", "-d", "skimage-gray[crop=48]", "--limit-images", "2", "-n", "gaussian:0.1",
                 "-m", "slow[hang=true]", "-m", "noisy", "--plugin", plugin, "--timeout", "5",
                 "--store", store, "--quiet")
    assert result.code == 1
    assert "ran past --timeout 5s" in result.err
    assert set(rows(store, "SELECT denoiser, status FROM cells")) == {
        ("slow[hang=true]", "timeout"), ("noisy", "done")}
    status = cli("status", "--store", store)
    assert "timeout" in status.out and "ran past --timeout" in status.out


def test_dask_matches_local_and_survives_a_killed_worker(plugin, tmp_path):
    local, dask = tmp_path / "local.sqlite", tmp_path / "dask.sqlite"
    args = [*GRID, "-m", "noisy", "-m", "gaussian-filter", "--plugin", plugin, "--quiet"]
    marker = tmp_path / "died-once"
    assert subprocess.run(bench_cmd("run", *args, "-m", "slow", "--store", local)).returncode == 0
    result = subprocess.run(bench_cmd("run", *args, "-m", f"slow[die_once={marker}]", "--store", dask,
                                      "--executor", "dask", "--workers", "2"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "still alive after" not in result.stderr, "workers must shut down without being killed"
    assert marker.exists(), "the worker-killing cell never ran"
    query = ("SELECT c.dataset, c.degradation, c.level, replace(c.denoiser, '[die_once={m}]', ''), "
             "s.image_id, s.metric, s.value FROM cells c JOIN scores s ON s.cell_key = c.key "
             "ORDER BY 1, 2, 3, 4, 5, 6")
    assert rows(local, query.format(m="")) == rows(dask, query.format(m=marker))


def test_a_grid_with_nothing_pending_starts_no_cluster(cli, store, monkeypatch):
    args = ["-d", "skimage-gray[crop=48]", "--limit-images", "2", "-n", "gaussian:0.1", "-m", "noisy",
            "--store", store, "--quiet"]
    assert cli("run", *args).code == 0

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started for a grid with nothing pending")

    monkeypatch.setattr("bench.grid.dask_executor.DaskExecutor.__init__", no_cluster)
    result = cli("run", *args, "--executor", "dask", "--workers", "2")
    assert result.code == 0 and "1 cells: 1 done (1 from earlier runs)" in result.err, result.err
    # not even a connection: an unreachable scheduler does not matter when there is nothing to send
    assert cli("run", *args, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9").code == 0
    monkeypatch.undo()
    result = cli("run", *args[:-1], "-m", "gaussian-filter", "--quiet", "--executor", "dask",
                 "--scheduler", "tcp://127.0.0.1:9")
    assert result.code == 2 and "cannot reach Dask scheduler" in result.err


def test_concurrent_runs_on_one_store(plugin, store):
    store.parent.mkdir(parents=True)
    args = [*GRID, "-m", "slow[delay=0.1]", "-m", "noisy", "--plugin", plugin, "--store", store, "--quiet"]
    first, second = subprocess.Popen(bench_cmd("run", *args)), subprocess.Popen(bench_cmd("run", *args))
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    assert rows(store, "PRAGMA integrity_check") == [("ok",)]
    assert rows(store, "SELECT count(*), count(DISTINCT key) FROM cells WHERE status = 'done'") == [(8, 8)]
    assert rows(store, "SELECT count(*) FROM scores") == [(8 * 3 * 2,)]
    assert len(board(store)) == 8


@pytest.mark.parametrize("args,message", [
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach Dask scheduler"),
    (["--executor", "dask", "--workers", "0"], "--workers must be >= 1"),
    (["--timeout", "0"], "--timeout must be > 0"),
    (["--timeout", "-3"], "--timeout must be > 0"),
    (["--workers", "2"], "need --executor dask"),
])
def test_executor_bad_input(cli, store, args, message):
    start = time.time()
    result = cli("run", "-d", "skimage-gray[crop=48]", "-n", "gaussian:0.1", "-m", "noisy",
                 *args, "--store", store, "--quiet")
    assert result.code == 2 and message in result.err, result.err
    assert time.time() - start < 30
    assert not store.exists()


def statuses(store) -> dict[str, str]:
    return dict(rows(store, "SELECT denoiser || ' ' || level, status || ': ' || coalesce(error, '') FROM cells"))


def test_a_plugin_that_exits_fails_its_own_cell_and_the_run_goes_on(plugin, store):
    """os._exit and sys.exit in a plugin, cells in this process (no --timeout): only those cells fail."""
    result = subprocess.run(bench_cmd("run", *GRID[:4], "-n", "gaussian:0.1,0.2", "-m", "a-exit", "-m", "noisy",
                                      "-m", "a-exit[how=sys-exit,code=3]", "--plugin", plugin, "--store", store,
                                      "--quiet"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "6 cells: 2 done, 4 error" in result.stderr
    found = statuses(store)
    for level in (0.1, 0.2):
        assert found[f"noisy {level}"] == "done: "
        assert found[f"a-exit {level}"].startswith("error: the plugin called os._exit(0) during the cell")
        assert found[f"a-exit[code=3,how=sys-exit] {level}"].startswith("error: the plugin called sys.exit(3)")
    assert rows(store, "SELECT status FROM runs") == [("failed",)]


@pytest.mark.parametrize("isolated", [(), ("--timeout", "60")])
def test_a_keyboard_interrupt_raised_by_a_plugin_fails_its_own_cell(plugin, store, isolated):
    """No Ctrl-C was pressed: the run goes on, in this process and in a --timeout child."""
    result = subprocess.run(bench_cmd("run", *GRID[:4], "-n", "gaussian:0.1", "-m", "a-exit[how=interrupt]",
                                      "-m", "noisy", "--plugin", plugin, "--store", store, "--quiet", *isolated),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "2 cells: 1 done, 1 error" in result.stderr, result.stderr
    found = statuses(store)
    assert found["a-exit[how=interrupt] 0.1"].startswith("error: the plugin raised KeyboardInterrupt")
    assert found["noisy 0.1"] == "done: "


def test_a_cell_that_kills_its_child_process_is_named_with_the_signal(plugin, store):
    result = subprocess.run(bench_cmd("run", *GRID[:4], "-n", "gaussian:0.1", "-m", "a-exit[how=SIGKILL]",
                                      "-m", "a-exit", "-m", "noisy", "--plugin", plugin, "--store", store,
                                      "--timeout", "60", "--quiet"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    found = statuses(store)
    assert found["a-exit[how=SIGKILL] 0.1"] == ("error: the process running the cell died during it (killed by "
                                                 "SIGKILL); the cell was stopped and the run went on")
    assert found["a-exit 0.1"].startswith("error: the plugin called os._exit(0)")
    assert found["noisy 0.1"] == "done: "


def test_a_cell_that_kills_its_dask_worker_fails_alone(plugin, store):
    """Its noisy-input group's other cells run again elsewhere and finish."""
    result = subprocess.run(bench_cmd("run", *GRID[:4], "-n", "gaussian:0.1,0.2", "-m", "noisy",
                                      "-m", "a-exit[how=SIGKILL]", "-m", "median", "--plugin", plugin,
                                      "--store", store, "--quiet", "--executor", "dask", "--workers", "2"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "6 cells: 4 done, 2 error" in result.stderr
    found = statuses(store)
    for level in (0.1, 0.2):
        assert found[f"noisy {level}"] == found[f"median {level}"] == "done: "
        assert found[f"a-exit[how=SIGKILL] {level}"].startswith("error: the Dask worker running this cell died")


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_no_process_outlives_a_killed_driver(plugin, store, tmp_path):
    """kill -9 of a driver whose cell runs in a child (--timeout): the child and multiprocessing's
    resource tracker end with it."""
    import psutil

    started = tmp_path / "started"
    driver = subprocess.Popen(bench_cmd("run", *GRID[:4], "-n", "gaussian:0.1", "-m",
                                        f"slow[hang=true,started={started}]", "--plugin", plugin,
                                        "--store", store, "--timeout", "600", "--quiet"))
    deadline = time.time() + 120
    while time.time() < deadline and not started.exists():  # the cell is running in its child
        time.sleep(0.2)
    children = descendants(driver.pid)
    assert int(started.read_text()) in [p.pid for p in children]
    assert any("resource_tracker" in " ".join(p.cmdline()) for p in children), "no resource tracker"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"still running after the driver was killed: {[p.cmdline() for p in alive]}"


@pytest.mark.parametrize("end", ["timeout", "driver killed"])
def test_a_process_a_plugin_starts_ends_with_its_cell(plugin, store, tmp_path, end):
    """The cell's child leads a process group that the plugin's own processes join: a timeout,
    or kill -9 of the driver, ends them too."""
    import psutil

    spawned, started = tmp_path / "spawned", tmp_path / "started"
    driver = subprocess.Popen(bench_cmd("run", *GRID[:4], "-n", "gaussian:0.1", "-m",
                                        f"slow[hang=true,spawned={spawned},started={started}]", "--plugin", plugin,
                                        "--store", store, "--timeout", "5" if end == "timeout" else "600", "--quiet"))
    deadline = time.time() + 120
    while time.time() < deadline and not started.exists():
        time.sleep(0.2)
    orphan = psutil.Process(int(spawned.read_text()))
    if end == "driver killed":
        driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=120)
    gone, alive = psutil.wait_procs([orphan], timeout=15)
    if alive:
        orphan.kill()
    assert not alive, f"the plugin's process outlived its cell ({end})"


def test_the_local_cluster_listens_on_this_machine_only_and_serves_no_dashboard_unless_asked():
    import urllib.error
    import urllib.request

    import psutil

    from bench.grid.dask_executor import DaskExecutor

    for dashboard, status in ((None, 404), ("127.0.0.1:0", 200)):
        executor = DaskExecutor({}, "cpu", workers=1, dashboard=dashboard)
        try:
            processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
            listening = {c.laddr.ip for p in processes for c in p.net_connections("inet") if c.status == "LISTEN"}
            try:
                found = urllib.request.urlopen(executor.client.dashboard_link, timeout=30).status
            except urllib.error.HTTPError as exc:
                found = exc.code
        finally:
            executor.close()
        assert listening == {"127.0.0.1"}
        assert found == status, f"dashboard={dashboard}: /status answered {found}"


def test_dashboard_needs_a_local_cluster(cli, store):
    for args in (["--dashboard"], ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--dashboard"]):
        result = cli("run", *GRID[:4], "-m", "noisy", *args, "--store", store, "--quiet")
        assert result.code == 2 and "--dashboard needs --executor dask with a local cluster" in result.err
        assert not store.exists()
