"""The results store: SQLite with runs, cells, per-image scores and timings.

Each cell is written in one transaction, so a cell is either wholly there or
absent. WAL mode lets readers (leaderboard) run beside a writer.

``Store`` is the one front door: before anything is written it checks that an
existing file is a SQLite file that passes ``PRAGMA quick_check``, whose schema
version this code reads (newer: refused; older: upgraded) and whose tables
have the columns this code writes. Readers open it read-only (``mode=ro``),
so a store in a read-only folder can be read; every sqlite error, at the door
or later in a ``with Store(...)`` block, becomes a ``StoreError``: one line
naming the file and what to do.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote
from typing import TYPE_CHECKING

from bench.data.subsets import subset_size
from bench.errors import UsageError
from bench.noise.levels import LevelScale
from bench.seeding import identity_hash

if TYPE_CHECKING:
    import pandas as pd

#: Bumped whenever SCHEMA gains a table or rows need moving; ``upgrade`` runs once per store and version.
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started TEXT, finished TEXT, status TEXT,
    config TEXT, versions TEXT, device TEXT, argv TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, run_id TEXT, dataset TEXT, degradation TEXT, level REAL,
    denoiser TEXT, repetition INTEGER, seed INTEGER, protocol TEXT, metrics TEXT,
    status TEXT, error TEXT, seconds REAL, denoise_seconds REAL, n_images INTEGER,
    device TEXT, updated TEXT,
    subset TEXT,  -- NULL: the whole dataset; else e.g. 'first 3 of 12' (--limit-images)
    sigma_in TEXT  -- the level the denoiser received: oracle (NULL too), x0.5, 25/255, estimate:NAME, blind
);
-- Per-image noise levels an estimator gave for the noisy inputs of a cell (--sigma-in estimate:NAME).
CREATE TABLE IF NOT EXISTS estimates (
    cell_key TEXT, image_id TEXT, estimator TEXT, value REAL, PRIMARY KEY (cell_key, image_id, estimator)
);
CREATE TABLE IF NOT EXISTS scores (
    cell_key TEXT, image_id TEXT, metric TEXT, value REAL,
    PRIMARY KEY (cell_key, image_id, metric)
);
CREATE TABLE IF NOT EXISTS image_times (
    cell_key TEXT, image_id TEXT, seconds REAL, PRIMARY KEY (cell_key, image_id)
);
CREATE TABLE IF NOT EXISTS metric_info (
    name TEXT PRIMARY KEY, higher_is_better INTEGER,
    low REAL, high REAL  -- the values the metric can take (NULL: unbounded); intervals are clipped to them
);
CREATE TABLE IF NOT EXISTS level_scales (degradation TEXT PRIMARY KEY, scale TEXT);
CREATE TABLE IF NOT EXISTS dataset_contents (
    dataset TEXT, content_id TEXT, manifest TEXT, seen INTEGER, recorded TEXT,
    PRIMARY KEY (dataset, content_id)
);
CREATE TABLE IF NOT EXISTS cell_contents (cell_key TEXT PRIMARY KEY, content_id TEXT);
CREATE TABLE IF NOT EXISTS run_cells (
    run_id TEXT, cell_key TEXT, PRIMARY KEY (run_id, cell_key)
);
CREATE TABLE IF NOT EXISTS costs (
    dataset TEXT, denoiser TEXT, identity TEXT, device TEXT, shape TEXT, images INTEGER,
    parameters INTEGER, flops REAL, latency_median REAL, latency_iqr REAL, latency_repeats INTEGER,
    timer TEXT, concurrent INTEGER, peak_memory REAL, memory_method TEXT, device_name TEXT,
    environment TEXT, run_id TEXT, updated TEXT,
    PRIMARY KEY (dataset, denoiser, identity, device, shape)
);
-- One row per sampler cell: a sampler with a score model on a dataset, one repetition.
CREATE TABLE IF NOT EXISTS sample_cells (
    key TEXT PRIMARY KEY, run_id TEXT,
    dataset TEXT,         -- dataset label: the chains' start statistics and the metrics' references
    score TEXT,           -- denoiser used as score model (Tweedie), spec label
    sampler TEXT,         -- sampler spec label, every parameter resolved
    chains INTEGER,       -- number of chains = number of samples scored
    init TEXT,            -- where chains start: noise or data
    repetition INTEGER,   -- repetition index; the chains' seed derives from it
    seed INTEGER, metrics TEXT, status TEXT, error TEXT,
    seconds REAL,         -- wall time of the cell (chains and metrics)
    sample_seconds REAL,  -- wall time of the chains alone
    steps INTEGER,        -- updates applied (a final denoising step counts as one)
    device TEXT, updated TEXT
);
-- The metrics of one sampler cell's samples (one value per metric).
CREATE TABLE IF NOT EXISTS sample_scores (
    cell_key TEXT, metric TEXT, value REAL, PRIMARY KEY (cell_key, metric)
);
"""
STATUSES = ("done", "error", "timeout", "skipped", "pending")
#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(UsageError):
    """A store that cannot be used as asked: one line naming the file and what to do."""


def store_error(path: Path, exc: BaseException, action: str | None = None) -> StoreError:
    """An sqlite3 or OS error on the store at ``path`` (while trying to ``action`` it) as one line
    with its remedy."""
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).splitlines()[0]
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered or "permission denied" in lowered:
        advice = ("it (or its folder) is read-only: choose a writable --store; leaderboard, status, "
                  "compare and report can read it as it is")
    elif "locked" in lowered or "busy" in lowered:
        advice = "another process held it too long: rerun when that one has finished"
    elif "full" in lowered or "i/o" in lowered:
        advice = "free some space (or choose another --store), then rerun: finished cells are kept"
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        advice = "the file is damaged or not a denoise-bench store: move it aside (or restore a copy)"
    else:
        advice = "check the path and its folder, or choose another --store"
    head = f"cannot {action} the store {path}" if action else f"store {path}"
    return StoreError(f"{head}: {text}; {advice}")


@functools.lru_cache(maxsize=1)
def expected_columns() -> dict[str, list[str]]:
    """Each table of SCHEMA and its columns, in order (read from SCHEMA built in memory)."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        return table_columns(db)
    finally:
        db.close()


def table_columns(db: sqlite3.Connection) -> dict[str, list[str]]:
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: [row[1] for row in db.execute(f'PRAGMA table_info("{name}")')] for name in tables}


def schema_problem(db: sqlite3.Connection) -> str | None:
    """Why this code cannot use the store behind ``db`` (version, foreign or changed tables), or None."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        return (f"was written by a newer denoise-bench (store schema {version}; this version reads up to "
                f"{SCHEMA_VERSION}): upgrade denoise-bench, or choose another --store")
    found, expected = table_columns(db), expected_columns()
    older = version < SCHEMA_VERSION  # upgrades only add columns at the end
    if found and "cells" not in found:
        return ("is an SQLite file but not a denoise-bench store (it has no cells table): "
                "choose another --store")
    for table, columns in found.items():
        wanted = expected.get(table, columns)
        if columns != (wanted[:len(columns)] if older else wanted):
            return (f"table {table} has columns ({', '.join(columns)}) where this version writes "
                    f"({', '.join(expected[table])}): it was changed by hand or by another program; "
                    "restore a copy or choose another --store")
    return None


#: Columns holding JSON text (every REAL or INTEGER column of SCHEMA must hold a number or NULL).
JSON_COLUMNS = {"runs": ("config", "versions", "argv"), "cells": ("metrics",), "sample_cells": ("metrics",),
                "level_scales": ("scale",), "dataset_contents": ("manifest",)}


def row_problem(db: sqlite3.Connection) -> str | None:
    """The first row whose value a reader cannot use (text in a number column, JSON that does not
    parse), named by table, row and column; None when every row reads."""
    for table in table_columns(db):
        columns = {row[1]: row[2] for row in db.execute(f'PRAGMA table_info("{table}")')}
        numeric = [name for name, kind in columns.items() if kind in ("REAL", "INTEGER")]
        json_text = [name for name in JSON_COLUMNS.get(table, ()) if name in columns]
        tests = [f"typeof(\"{n}\") NOT IN ('integer', 'real', 'null')" for n in numeric] + \
                [f"(\"{n}\" IS NOT NULL AND NOT json_valid(\"{n}\"))" for n in json_text]
        if not tests:
            continue
        found = db.execute(f'SELECT rowid, * FROM "{table}" WHERE {" OR ".join(tests)} LIMIT 1').fetchone()
        if found is None:
            continue
        row = dict(zip(["rowid", *columns], found))
        bad = [(n, "is not a number") for n in numeric if not isinstance(row[n], (int, float, type(None)))]
        bad += [(n, "is not JSON") for n in json_text if row[n] is not None and not _parses(row[n])]
        column, what = bad[0] if bad else (next(iter(columns)), "cannot be read")
        return (f"has a bad row: table {table}, row {row['rowid']}, {column} = {str(row[column])[:40]!r} "
                f"{what}; it was changed by hand or by another program: restore a copy or choose "
                "another --store")
    return None


def _parses(text) -> bool:
    try:
        json.loads(text)
        return True
    except (TypeError, ValueError):
        return False


#: Stores that passed ``inspect`` in this process: path -> (size, mtime) of the file and its WAL.
_inspected: dict[Path, tuple] = {}


def _fingerprint(path: Path) -> tuple:
    wal = path.with_name(path.name + "-wal")
    return tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None for p in (path, wal))


def inspect(path: Path) -> None:
    """StoreError unless the existing file at ``path`` is a sound store this code can use.

    Reads only: the header, ``PRAGMA quick_check`` (about 0.1 s per million
    scores) and the schema. A file unchanged since it last passed in this
    process is not checked again.
    """
    if path.is_dir():
        raise StoreError(f"store {path} is a folder, not a file: choose a file path for --store")
    fingerprint = _fingerprint(path)
    if _inspected.get(path) == fingerprint:
        return
    with open(path, "rb") as file:
        head = file.read(len(SQLITE_HEADER))
    if head and head != SQLITE_HEADER:
        raise StoreError(f"store {path} is not an SQLite file, so not a denoise-bench store: move it aside or choose another --store")
    if not head:
        return  # empty: a new store
    beside = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existed = [p.exists() for p in beside]
    try:
        db = connect_readonly(path)
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"store {path} is damaged (quick_check: {check}); move it aside (or restore "
                                 "a copy) and rerun: nothing was written to it")
            problem = schema_problem(db) or row_problem(db)
        finally:
            db.close()
        if problem:
            raise StoreError(f"store {path} {problem}")
    except BaseException:  # a refused store is left as it was found: no -wal or -shm made beside it
        for file, was_there in zip(beside, existed):
            if not was_there:
                file.unlink(missing_ok=True)
        raise
    _inspected[path] = fingerprint


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``); in a folder this process cannot write, where SQLite
    cannot make the WAL's index, ``immutable=1`` (nobody can write there either)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=60)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        db.close()
        if os.access(path.parent, os.W_OK):
            raise
        db = sqlite3.connect(uri + "&immutable=1", uri=True)
    return db


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CellResult:
    """What one cell produced: status, timings and per-image scores."""

    status: str
    error: str | None = None
    seconds: float = 0.0
    denoise_seconds: float = 0.0
    scores: dict[str, dict[str, float]] | None = None  # image id -> metric -> value
    image_seconds: dict[str, float] | None = None
    #: Sampler cells: updates applied to the chains.
    steps: int | None = None
    #: Estimator name -> image id -> the level it estimated (cells given ``estimate:NAME``).
    estimates: dict[str, dict[str, float]] | None = None


class Store:
    """A thin layer over one SQLite file, opened through its checks (see the module's docstring).

    ``create=True``: for writing, made if missing and upgraded if older.
    ``create=False``: an existing store, read-only. Used as a context manager,
    an sqlite error inside the block becomes a ``StoreError``.

    ``selection`` (a ``bench.store.selection.Selection``) narrows what the tables read
    from it (``bench.reports.tables.latest_done_cells``); None reads every cell.
    """

    def __init__(self, path: str | Path, create: bool = True, probe_only: bool = False):
        """``probe_only``: check that the store can be written, changing nothing (``check_writable``)."""
        self.path = Path(path)
        self.selection = None
        self.readonly = not create
        if not create and not self.path.exists():
            raise UsageError(f"no store at {self.path}; run `denoise-bench run` first")
        exists = self.path.exists()
        try:
            if exists:
                inspect(self.path)
            self.db = self._open_readonly() if self.readonly else self._open_for_writing(probe_only)
        except (OSError, sqlite3.Error) as exc:
            raise store_error(self.path, exc, "open" if exists else "create") from None

    def _open_for_writing(self, probe_only: bool = False) -> sqlite3.Connection:
        """A connection that can write, the store upgraded; ``probe_only``: no pragma, no upgrade."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("BEGIN IMMEDIATE")  # fails, writing nothing, where the file cannot be written
            db.execute("ROLLBACK")
            if probe_only:
                return db
            db.execute("PRAGMA journal_mode=WAL")
            # Committed cells survive a killed process in WAL mode without an fsync per commit (only
            # an OS crash or power loss can take back the last ones): 0.5 ms per cell instead of 4 ms.
            db.execute("PRAGMA synchronous=NORMAL")
            upgrade(db)
        except BaseException:
            db.close()
            raise
        return db

    def _open_readonly(self) -> sqlite3.Connection:
        """Read-only; a store from an older version is upgraded first where it can be written."""
        db = connect_readonly(self.path)
        older = db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION
        if older and "cells" in table_columns(db):
            db.close()
            try:
                self._open_for_writing().close()
            except sqlite3.OperationalError as exc:
                raise StoreError(f"store {self.path} was made by an older denoise-bench and must be upgraded "
                                 f"once, which needs write access ({exc}): copy it somewhere writable and "
                                 "read the copy") from None
            db = connect_readonly(self.path)
        return db

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        if isinstance(exc, sqlite3.Error):
            raise store_error(self.path, exc) from None
        return False

    def _transaction(self):
        return _Transaction(self.db)

    # runs
    def start_run(self, config: dict, versions: dict, device: str, argv: list[str]) -> str:
        run_id = uuid.uuid4().hex[:12]
        with self._transaction():
            self.db.execute(
                "INSERT INTO runs VALUES (?, ?, NULL, 'running', ?, ?, ?, ?)",
                (run_id, now(), json.dumps(config), json.dumps(versions), device, json.dumps(argv)))
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._transaction():
            self.db.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?",
                            (now(), status, run_id))

    def set_metric_info(self, name: str, higher_is_better: bool,
                        bounds: tuple[float | None, float | None] = (None, None)) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO metric_info (name, higher_is_better, low, high) "
                            "VALUES (?, ?, ?, ?)", (name, int(higher_is_better), *bounds))

    def set_level_scale(self, degradation: str, scale: LevelScale) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO level_scales VALUES (?, ?)",
                            (degradation, scale.to_json()))

    def level_scales(self) -> dict[str, LevelScale]:
        """How each degradation in the store shows its levels (see ``bench.noise.levels``)."""
        return {name: LevelScale.from_json(text)
                for name, text in self.db.execute("SELECT * FROM level_scales")}

    # dataset contents
    def record_content(self, dataset: str, manifest: dict[str, str]) -> str:
        """Note a whole dataset's content (file -> hash, in the set's order) as its current one; returns its id."""
        content_id = identity_hash(manifest)
        with self._transaction():
            seen = self.db.execute("SELECT coalesce(max(seen), 0) + 1 FROM dataset_contents").fetchone()[0]
            self.db.execute("INSERT OR REPLACE INTO dataset_contents VALUES (?, ?, ?, ?, ?)",
                            (dataset, content_id, json.dumps(manifest), seen, now()))
        return content_id

    def superseded_cells(self) -> pd.DataFrame:
        """Cells made on content that is no longer current: a whole-set cell made on another content
        than the dataset's current one; a subset's cell whose n images are no longer the first n of
        the current whole set (a subset never hides the whole set, nor the reverse)."""
        cells = self.query("SELECT c.*, cc.content_id FROM cells c JOIN cell_contents cc ON cc.cell_key = c.key")
        manifests, current = {}, {}
        for dataset, content_id, manifest in self.db.execute(
                "SELECT dataset, content_id, manifest FROM dataset_contents ORDER BY seen"):
            manifests[dataset, content_id] = list(json.loads(manifest).items())
            current[dataset] = content_id  # the latest seen wins

        def stale(dataset: str, content_id: str, subset) -> bool:
            now = current.get(dataset)
            if now is None or content_id == now:
                return False
            if not isinstance(subset, str):  # the whole set (None, or NaN as pandas reads it)
                return True
            n, made = subset_size(subset), manifests.get((dataset, content_id))
            return made is None or made[:n] != manifests[dataset, now][:n]

        import pandas as pd

        return cells[pd.Series([stale(*row) for row in zip(cells["dataset"], cells["content_id"], cells["subset"])],
                               index=cells.index, dtype=bool)]

    def contents(self, dataset: str) -> list[dict]:
        """A dataset's recorded contents, newest first: content_id, manifest, recorded."""
        rows = self.db.execute("SELECT content_id, manifest, recorded FROM dataset_contents "
                               "WHERE dataset = ? ORDER BY seen DESC", (dataset,)).fetchall()
        return [{"content_id": c, "manifest": json.loads(m), "recorded": r} for c, m, r in rows]

    # cells
    def statuses(self, keys: list[str], table: str = "cells") -> dict[str, str]:
        """Status of each key found in ``table`` (``cells`` or ``sample_cells``)."""
        found = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self.db.execute(
                f"SELECT key, status FROM {table} WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update(dict(rows.fetchall()))
        return found

    def plan_cells(self, run_id: str, cells, seed: int, protocol: str, metrics: list[str],
                   contents: dict[str, str] | None = None) -> None:
        """Record a grid's cells as pending (cells already in the store stay) and as this run's.

        ``contents``: dataset label -> content id, for datasets whose content can change.
        """
        contents = contents or {}
        with self._transaction():
            self.db.executemany("INSERT OR IGNORE INTO cell_contents VALUES (?, ?)",
                                [(c.key, contents[c.dataset]) for c in cells if c.dataset in contents])
            self.db.executemany("INSERT OR IGNORE INTO run_cells VALUES (?, ?)",
                                [(run_id, c.key) for c in cells])
            self.db.executemany(
                "INSERT OR IGNORE INTO cells (key, run_id, dataset, degradation, level, denoiser, "
                "repetition, seed, protocol, metrics, status, updated, subset, sigma_in) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                [(c.key, run_id, c.dataset, c.degradation, c.level, c.denoiser, c.repetition, seed,
                  protocol, json.dumps(metrics), now(), c.subset, c.sigma_in) for c in cells])

    def record_cell(self, run_id: str, cell, seed: int, protocol: str, metrics: list[str],
                    device: str, result: CellResult) -> None:
        """Write a cell and its scores atomically, replacing any earlier failed attempt.

        A done cell is never replaced by a failure (two runs may race on it).
        """
        n_images = len(result.scores or {})
        with self._transaction():
            row = self.db.execute("SELECT status FROM cells WHERE key = ?", (cell.key,)).fetchone()
            if row and row[0] == "done" and result.status != "done":
                return
            self.db.execute("DELETE FROM scores WHERE cell_key = ?", (cell.key,))
            self.db.execute("DELETE FROM image_times WHERE cell_key = ?", (cell.key,))
            self.db.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (cell.key, run_id, cell.dataset, cell.degradation, cell.level, cell.denoiser,
                 cell.repetition, seed, protocol, json.dumps(metrics), result.status,
                 result.error, result.seconds, result.denoise_seconds, n_images, device, now(),
                 cell.subset, cell.sigma_in))
            self.db.execute("DELETE FROM estimates WHERE cell_key = ?", (cell.key,))
            self.db.executemany("INSERT INTO estimates VALUES (?, ?, ?, ?)",
                                [(cell.key, image, estimator, value)
                                 for estimator, values in (result.estimates or {}).items()
                                 for image, value in values.items()])
            if result.scores:
                self.db.executemany(
                    "INSERT INTO scores VALUES (?, ?, ?, ?)",
                    [(cell.key, image, metric, value)
                     for image, values in result.scores.items() for metric, value in values.items()])
            if result.image_seconds:
                self.db.executemany(
                    "INSERT INTO image_times VALUES (?, ?, ?)",
                    [(cell.key, image, s) for image, s in result.image_seconds.items()])

    # costs (see bench.grid.cost)
    def has_cost(self, dataset: str, denoiser: str, identity: str, device: str, shape: str) -> bool:
        """Whether this measurement exists, taken with nothing running beside it."""
        row = self.db.execute("SELECT 1 FROM costs WHERE dataset = ? AND denoiser = ? AND identity = ? "
                              "AND device = ? AND shape = ? AND concurrent = 0",
                              (dataset, denoiser, identity, device, shape)).fetchone()
        return row is not None

    def record_cost(self, run_id: str, dataset: str, denoiser: str, identity: str, device: str,
                    images: int, cost, concurrent: int = 0) -> None:
        """Write one ``bench.grid.cost.Cost``; ``concurrent``: cells that ran beside the measurement."""
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO costs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (dataset, denoiser, identity, device, "x".join(map(str, cost.shape)), images,
                 cost.parameters, cost.flops, cost.latency_median, cost.latency_iqr, cost.latency_repeats,
                 cost.timer, concurrent, cost.peak_memory, cost.memory_method, cost.device_name,
                 json.dumps(cost.environment), run_id, now()))

    def plan_sample_cells(self, run_id: str, cells, seed: int, metrics: list[str]) -> None:
        """Record sampler cells as pending, leaving those already in the store alone."""
        with self._transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO sample_cells (key, run_id, dataset, score, sampler, chains, init, "
                "repetition, seed, metrics, status, updated) VALUES (?,?,?,?,?,?,?,?,?,?,'pending',?)",
                [(c.key, run_id, c.dataset, c.score, c.sampler, c.chains, c.init, c.repetition, seed,
                  json.dumps(metrics), now()) for c in cells])

    def sample_statuses(self, keys: list[str]) -> dict[str, str]:
        return self.statuses(keys, "sample_cells")

    def record_sample_cell(self, run_id: str, cell, seed: int, device: str, result: CellResult) -> None:
        """Write a sampler cell and its metrics atomically (a done cell is never replaced by a failure).

        ``result.scores`` holds one entry, the metrics of the cell's samples.
        """
        values = next(iter((result.scores or {}).values()), {})
        with self._transaction():
            row = self.db.execute("SELECT status FROM sample_cells WHERE key = ?", (cell.key,)).fetchone()
            if row and row[0] == "done" and result.status != "done":
                return
            self.db.execute("DELETE FROM sample_scores WHERE cell_key = ?", (cell.key,))
            self.db.execute(
                "INSERT OR REPLACE INTO sample_cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (cell.key, run_id, cell.dataset, cell.score, cell.sampler, cell.chains, cell.init,
                 cell.repetition, seed, json.dumps(sorted(values)), result.status, result.error,
                 result.seconds, result.denoise_seconds, result.steps, device, now()))
            self.db.executemany("INSERT INTO sample_scores VALUES (?, ?, ?)",
                                [(cell.key, metric, value) for metric, value in values.items()])

    # reading
    def query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        import pandas as pd  # readers only: a run does not pay pandas' import

        try:
            return pd.read_sql_query(sql, self.db, params=params)
        except pd.errors.DatabaseError as exc:  # pandas wraps the sqlite error
            if isinstance(exc.__cause__, sqlite3.Error):
                raise store_error(self.path, exc.__cause__) from None
            raise

    def higher_is_better(self) -> dict[str, bool]:
        return {name: bool(v) for name, v in self.db.execute("SELECT name, higher_is_better FROM metric_info")}

    def metric_bounds(self) -> dict[str, tuple[float | None, float | None]]:
        """Metric -> (low, high) it can take, None where unbounded."""
        return {name: (low, high) for name, low, high in self.db.execute("SELECT name, low, high FROM metric_info")}


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def check_writable(path: str | Path) -> None:
    """StoreError unless the store at ``path`` (if there is one) is sound and can be written.

    Writes nothing, creates nothing: a run calls it before it builds its grid.
    """
    path = Path(path)
    if path.exists() and path.stat().st_size:
        Store(path, probe_only=True).close()


def has_done_cells(path: str | Path) -> bool:
    """Whether the store at ``path`` holds any done cell (False where there is no store)."""
    if not Path(path).exists() or not Path(path).stat().st_size:
        return False
    with Store(path, create=False) as store:
        if "cells" not in table_columns(store.db):  # being created by another run
            return False
        return store.db.execute("SELECT 1 FROM cells WHERE status = 'done' LIMIT 1").fetchone() is not None


def statuses_at(path: str | Path, keys: list[str], table: str = "cells") -> dict[str, str]:
    """Statuses of these cells (``table``: cells or sample_cells) in the store at ``path``,
    creating nothing ({} where there is no store)."""
    if not keys or not Path(path).exists() or not Path(path).stat().st_size:
        return {}
    with Store(path, create=False) as store:
        if table not in table_columns(store.db):  # being created by another run
            return {}
        return store.statuses(keys, table)


def upgrade(db: sqlite3.Connection) -> None:
    """Bring a store made by an older version up to date, once: new tables, moved sampler rows.

    One transaction: a process opening the store meanwhile sees it before or after, never half-way.
    """
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    db.executescript("BEGIN IMMEDIATE;\n" + SCHEMA)  # the transaction stays open
    try:
        add_columns_of_version_2(db)
        migrate_sample_rows(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def add_columns_of_version_2(db: sqlite3.Connection) -> None:
    """Version 2: ``cells.subset``, ``cells.sigma_in`` and ``metric_info.low/high``. Older cells count as whole-set
    cells; their keys (which lack the harness's code and library versions) no longer match, so
    they are recomputed once; older metrics are unbounded until a run records them again."""
    for table, column, kind in (("cells", "subset", "TEXT"), ("cells", "sigma_in", "TEXT"),
                                ("metric_info", "low", "REAL"), ("metric_info", "high", "REAL")):
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def migrate_sample_rows(db: sqlite3.Connection) -> None:
    """Move sampler cells that older versions stored in ``cells`` (chains in ``level``) to ``sample_cells``.

    Those rows have degradation ``sample:INIT`` and denoiser ``SAMPLER score=SCORE``.
    """
    old = db.execute("SELECT key, run_id, dataset, degradation, level, denoiser, repetition, seed, "
                     "metrics, status, error, seconds, denoise_seconds, device, updated FROM cells "
                     "WHERE degradation LIKE 'sample:%'").fetchall()
    for (key, run_id, dataset, degradation, level, denoiser, repetition, seed, metrics, status,
         error, seconds, sample_seconds, device, updated) in old:
        sampler, _, score = denoiser.partition(" score=")
        db.execute("INSERT OR REPLACE INTO sample_cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (key, run_id, dataset, score, sampler, int(level), degradation.split(":", 1)[1],
                    repetition, seed, metrics, status, error, seconds, sample_seconds, None,
                    device, updated))
        db.execute("INSERT OR REPLACE INTO sample_scores SELECT cell_key, metric, value FROM scores "
                   "WHERE cell_key = ?", (key,))
        db.execute("DELETE FROM scores WHERE cell_key = ?", (key,))
        db.execute("DELETE FROM cells WHERE key = ?", (key,))


def open_existing(path: str | Path) -> Store:
    """Open an existing store read-only; UsageError when it is missing, damaged or not a store."""
    store = Store(path, create=False)
    if "cells" not in table_columns(store.db):
        store.close()
        raise StoreError(f"store {path} has no cells table: it is not a denoise-bench store "
                         "(or an empty file); choose another --store")
    return store

