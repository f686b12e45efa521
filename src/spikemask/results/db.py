"""The results database: one embedded SQLite file per study, one row per run and per evaluation.

Tables (``SCHEMA`` below; ``PRAGMA application_id`` marks the file as spikemask's, ``user_version`` its
schema): ``runs`` (the resolved config as JSON, status, parameters, wall time, machine), ``evaluations`` (one
row per run, evaluation and mask seed: accuracy and energy totals), and per evaluation its ``layers`` (energy,
operations, input rate), ``masks`` (nominal and realised ratio per site) and ``neurons`` (firing rate), plus
``artifacts`` (named arrays per run, e.g. spike maps, as ``.npz`` bytes).

Every write is one transaction, so a reader (or a killed writer) never sees half a run; WAL journaling and a
busy timeout let parallel workers write to one file. Opening anything that is not a spikemask results database
(another SQLite file, a corrupt or truncated file) raises :class:`ResultsError` and changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..config import flatten

__all__ = ["ResultsDB", "ResultsError", "APPLICATION_ID", "SCHEMA_VERSION", "EVAL_COLUMNS", "merge_databases",
           "DB_NAME"]

DB_NAME = "results.db"  # a sweep directory's database

APPLICATION_ID = 0x534D4B31  # "SMK1"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    sweep TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    config TEXT NOT NULL,
    model TEXT, family TEXT, T INTEGER, mask_ratio REAL, train_seed INTEGER, params INTEGER,
    run_dir TEXT, wall_s REAL, machine TEXT, started REAL, finished REAL, error TEXT
);
CREATE TABLE evaluations (
    eval_id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    masked TEXT,
    mask_ratio REAL NOT NULL,
    blocks INTEGER,
    mask_seed INTEGER,
    mask TEXT NOT NULL,
    acc REAL NOT NULL,
    samples INTEGER,
    energy_mj REAL, sops REAL, macs REAL, spikes REAL, energy_samples INTEGER,
    totals TEXT,
    UNIQUE (run_id, name, mask_seed)
);
CREATE TABLE layers (
    eval_id INTEGER NOT NULL REFERENCES evaluations (eval_id) ON DELETE CASCADE,
    layer TEXT NOT NULL, grp TEXT, op TEXT, rule TEXT, encoding TEXT,
    energy_pj REAL, sops REAL, macs REAL, input_rate REAL,
    PRIMARY KEY (eval_id, layer)
);
CREATE TABLE masks (
    eval_id INTEGER NOT NULL REFERENCES evaluations (eval_id) ON DELETE CASCADE,
    site TEXT NOT NULL, nominal REAL, realised REAL,
    PRIMARY KEY (eval_id, site)
);
CREATE TABLE neurons (
    eval_id INTEGER NOT NULL REFERENCES evaluations (eval_id) ON DELETE CASCADE,
    neuron TEXT NOT NULL, firing_rate REAL, spikes REAL,
    PRIMARY KEY (eval_id, neuron)
);
CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    name TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX evaluations_run ON evaluations (run_id);
"""

RUN_COLUMNS = ("run_id", "sweep", "status", "model", "family", "T", "mask_ratio", "train_seed", "params", "run_dir",
               "wall_s", "machine", "started", "finished", "error")
EVAL_COLUMNS = ("eval_id", "name", "kind", "masked", "mask_ratio", "blocks", "mask_seed", "acc", "samples",
                "energy_mj", "sops", "macs", "spikes", "energy_samples")
_TABLES = ("meta", "runs", "evaluations", "layers", "masks", "neurons", "artifacts")


class ResultsError(ValueError):
    """A results database that cannot be used as asked (foreign, corrupt, missing, or a bad query)."""


def _finite(value: Any) -> Any:
    """JSON has no NaN: store a non-finite float as null (e.g. the realised ratio of a mask that saw no spike)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class ResultsDB:
    """A spikemask results database at ``path`` (created when ``create`` and absent).

    ``with ResultsDB(path) as db:`` closes it afterwards. All methods that write are single transactions.
    """

    def __init__(self, path: str | Path, *, create: bool = True, timeout: float = 120.0):
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise ResultsError(f"{self.path}: no results database there (run a sweep first: spikemask sweep)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise ResultsError(f"{self.path} is a directory, not a results database file")
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if fresh and self.path.exists() and not create:
            raise ResultsError(f"{self.path} is an empty file, not a results database")
        try:
            self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise ResultsError(f"{self.path}: cannot open ({exc})") from None
        self.conn.row_factory = sqlite3.Row
        try:
            self._prepare(fresh)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise ResultsError(f"{self.path} is not a readable SQLite database ({exc}): a corrupt or foreign file; "
                               f"it was left unchanged") from None
        except ResultsError:
            self.conn.close()
            raise

    def _prepare(self, fresh: bool) -> None:
        c = self.conn
        app = c.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if fresh or (app == 0 and not tables):
            with self.transaction():
                c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute("INSERT INTO meta VALUES ('created', ?), ('format', 'spikemask results')",
                          (time.strftime("%Y-%m-%dT%H:%M:%S"),))
        elif app != APPLICATION_ID:
            raise ResultsError(f"{self.path} is an SQLite database but not a spikemask results database "
                               f"(application_id {app:#x}, tables: {', '.join(sorted(tables)) or 'none'}); "
                               f"it was left unchanged")
        else:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise ResultsError(f"{self.path}: results schema version {version}, this spikemask reads "
                                   f"{SCHEMA_VERSION}")
            missing = [t for t in _TABLES if t not in tables]
            if missing:
                raise ResultsError(f"{self.path}: damaged results database (no table {missing[0]!r})")
        c.execute("PRAGMA foreign_keys = ON")
        try:
            c.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:  # a filesystem without shared memory: the default journal still works
            pass

    # ------------------------------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error): parallel writers queue, none interleave."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------------------------------------ runs

    def run_status(self, run_id: str) -> str | None:
        row = self.conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    def start_run(self, run_id: str, config: Mapping[str, Any], *, sweep: str | None = None,
                  fields: Mapping[str, Any] | None = None) -> None:
        """Record a run as running (a run already recorded keeps its results until :meth:`finish_run`)."""
        f = dict(fields or {})
        with self.transaction() as c:
            c.execute("INSERT INTO runs (run_id, sweep, status, config, started) VALUES (?, ?, 'running', ?, ?) "
                      "ON CONFLICT (run_id) DO UPDATE SET status = 'running', started = excluded.started, error = NULL "
                      "WHERE status != 'done'", (run_id, sweep, json.dumps(config, sort_keys=True), time.time()))
            self._set_fields(c, run_id, f)

    def _set_fields(self, c: sqlite3.Connection, run_id: str, fields: Mapping[str, Any]) -> None:
        bad = [k for k in fields if k not in RUN_COLUMNS or k in ("run_id", "status")]
        if bad:
            raise ResultsError(f"unknown run field {bad[0]!r}; valid: {', '.join(RUN_COLUMNS[3:])}")
        for key, value in fields.items():
            value = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
            c.execute(f"UPDATE runs SET {key} = ? WHERE run_id = ?", (value, run_id))

    def finish_run(self, run_id: str, evaluations: Sequence[Mapping[str, Any]], *,
                   fields: Mapping[str, Any] | None = None, artifacts: Mapping[str, Mapping[str, np.ndarray]] = {}
                   ) -> None:
        """Replace the run's evaluations and artifacts with these and mark it done: one transaction.

        Each evaluation: ``name``, ``kind``, ``mask_ratio``, ``mask`` (dict), ``acc`` and optionally ``masked``,
        ``blocks``, ``mask_seed``, ``samples``, ``energy`` (a report of :func:`spikemask.energy.build_report`).
        """
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise ResultsError(f"run {run_id} was never started in {self.path}")
            c.execute("DELETE FROM evaluations WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM artifacts WHERE run_id = ?", (run_id,))
            for ev in evaluations:
                self._insert_evaluation(c, run_id, ev)
            for name, arrays in artifacts.items():
                buf = io.BytesIO()
                np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
                c.execute("INSERT INTO artifacts VALUES (?, ?, ?)", (run_id, name, buf.getvalue()))
            self._set_fields(c, run_id, dict(fields or {}, finished=time.time()))
            c.execute("UPDATE runs SET status = 'done', error = NULL WHERE run_id = ?", (run_id,))

    def fail_run(self, run_id: str, error: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET status = 'failed', error = ? WHERE run_id = ? AND status != 'done'",
                      (error, run_id))

    @staticmethod
    def _insert_evaluation(c: sqlite3.Connection, run_id: str, ev: Mapping[str, Any]) -> int:
        energy = ev.get("energy") or {}
        tot = energy.get("totals") or {}
        cur = c.execute(
            "INSERT INTO evaluations (run_id, name, kind, masked, mask_ratio, blocks, mask_seed, mask, acc, samples, "
            "energy_mj, sops, macs, spikes, energy_samples, totals) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, ev["name"], ev["kind"], ev.get("masked"), float(ev["mask_ratio"]), ev.get("blocks"),
             ev.get("mask_seed"), json.dumps(ev["mask"], sort_keys=True), float(ev["acc"]), ev.get("samples"),
             tot.get("energy_mj"), tot.get("sops"), tot.get("macs"), tot.get("spikes"), energy.get("samples"),
             json.dumps({k: _finite(v) for k, v in tot.items()}, sort_keys=True) if tot else None))
        eval_id = cur.lastrowid
        for row in energy.get("layers", []):
            c.execute("INSERT INTO layers VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (eval_id, row["name"], row["group"], row["op"], row["rule"], row.get("encoding"),
                       row["energy_pj"], row["sops"], row["macs"], _finite(row.get("input_rate"))))
        for m in energy.get("masks", []):
            c.execute("INSERT INTO masks VALUES (?,?,?,?)",
                      (eval_id, m["name"], _finite(m.get("nominal")), _finite(m.get("realised"))))
        for n in energy.get("neurons", []):
            c.execute("INSERT INTO neurons VALUES (?,?,?,?)", (eval_id, n["name"], n["firing_rate"], n["spikes"]))
        return eval_id

    # ------------------------------------------------------------------------------------------ reading

    def runs(self, status: str | None = "done") -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs" + (" WHERE status = ?" if status else "") + " ORDER BY run_id"
        out = []
        for r in self.conn.execute(sql, (status,) if status else ()):
            d = dict(r)
            d["config"] = json.loads(d["config"])
            d["machine"] = json.loads(d["machine"]) if d["machine"] else None
            out.append(d)
        return out

    def evaluations(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every evaluation of finished runs (or of one run), joined with its run's columns."""
        sql = ("SELECT e.*, r.model, r.family, r.T, r.mask_ratio AS trained_ratio, r.train_seed, r.params, r.sweep, "
               "r.config FROM evaluations e JOIN runs r USING (run_id) WHERE r.status = 'done'"
               + (" AND e.run_id = ?" if run_id else "") + " ORDER BY e.run_id, e.name, e.mask_seed")
        out = []
        for r in self.conn.execute(sql, (run_id,) if run_id else ()):
            d = dict(r)
            d["mask"] = json.loads(d["mask"])
            d["totals"] = json.loads(d["totals"]) if d["totals"] else {}
            d["config"] = json.loads(d["config"])
            out.append(d)
        return out

    def table(self, name: str, eval_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Rows of ``layers``, ``masks`` or ``neurons`` (of some evaluations)."""
        if name not in ("layers", "masks", "neurons"):
            raise ResultsError(f"no per-evaluation table {name!r}; valid: layers, masks, neurons")
        sql = f"SELECT * FROM {name}"
        args: tuple[Any, ...] = ()
        if eval_ids is not None:
            ids = [int(i) for i in eval_ids]
            sql += f" WHERE eval_id IN ({','.join('?' * len(ids))})"
            args = tuple(ids)
        return [dict(r) for r in self.conn.execute(sql, args)]

    def artifact(self, run_id: str, name: str) -> dict[str, np.ndarray] | None:
        row = self.conn.execute("SELECT data FROM artifacts WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
        if row is None:
            return None
        with np.load(io.BytesIO(row[0]), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def artifact_names(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.conn.execute("SELECT run_id, name FROM artifacts ORDER BY run_id, name")]

    def query(self, where: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Evaluations whose run config has every ``dotted.key = value`` of ``where`` (e.g. ``{"model.T": 8}``).

        A key no stored run has is refused, listing the keys the runs do have."""
        rows = self.evaluations()
        if not where:
            return rows
        keys = set()
        for r in rows:
            keys |= set(flatten(r["config"]))
        unknown = [k for k in where if k not in keys]
        if unknown:
            from ..config import close_matches_hint

            raise ResultsError(f"no stored run has a config key {unknown[0]!r}.{close_matches_hint(unknown[0], keys)} "
                               f"Keys: {', '.join(sorted(keys))}")
        return [r for r in rows if all(_matches(flatten(r["config"]).get(k), v) for k, v in where.items())]

    def export_csv(self, where: Mapping[str, Any] | None = None) -> str:
        """One line per evaluation: the run's columns, the evaluation's, then every config key flattened."""
        rows = self.query(where)
        config_keys = sorted({k for r in rows for k in flatten(r["config"])})
        head = ["run_id", "model", "family", "T", "trained_ratio", "train_seed", "params", *EVAL_COLUMNS[1:]]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(head + [f"config.{k}" for k in config_keys])
        for r in rows:
            flat = flatten(r["config"])
            w.writerow([r[k] for k in head] + [json.dumps(flat[k]) if k in flat else "" for k in config_keys])
        return buf.getvalue()

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("done", "running", "failed")}
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            out[status] = n
        out["evaluations"] = self.conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        return out



def _matches(stored: Any, wanted: Any) -> bool:
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        try:
            return math.isclose(float(stored), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(wanted, str) and not isinstance(stored, str):
        return json.dumps(stored) == wanted
    return stored == wanted


def merge_databases(out: str | Path, sources: Sequence[str | Path]) -> dict[str, Any]:
    """Merge results databases into ``out`` (created if absent; it may be one of the sources' copies).

    A finished run present in several is kept once (the first finished copy, in the order given; the others
    are counted as ``duplicates``, and as ``conflicts`` when their accuracies differ, e.g. the same config run
    on two machines); an unfinished run is replaced by a finished copy. Every source is checked before
    anything is written."""
    opened = []
    try:
        for src in sources:
            if Path(src).resolve() == Path(out).resolve():
                raise ResultsError(f"{out} is both a source and the output: write the merge to a new file")
            opened.append(ResultsDB(src, create=False))
        stats = {"runs_added": 0, "duplicates": 0, "conflicts": [], "sources": [str(s) for s in sources]}
        with ResultsDB(out) as db:
            for src in opened:
                for run in src.runs(status=None):
                    rid = run["run_id"]
                    have = db.run_status(rid)
                    if have == "done":
                        if run["status"] == "done":
                            stats["duplicates"] += 1
                            mine = sorted((e["name"], e["mask_seed"], e["acc"]) for e in db.evaluations(rid))
                            theirs = sorted((e["name"], e["mask_seed"], e["acc"]) for e in src.evaluations(rid))
                            if mine != theirs:
                                stats["conflicts"].append(rid)
                        continue
                    if have is not None and run["status"] != "done":
                        continue
                    _copy_run(src, db, run)
                    stats["runs_added"] += 1
            stats["counts"] = db.counts()
        return stats
    finally:
        for db in opened:
            db.close()


def _copy_run(src: ResultsDB, dst: ResultsDB, run: dict[str, Any]) -> None:
    rid = run["run_id"]
    with dst.transaction() as c:
        c.execute("DELETE FROM runs WHERE run_id = ?", (rid,))
        cols = [k for k in RUN_COLUMNS] + ["config"]
        values = [json.dumps(run[k], sort_keys=True) if k in ("config", "machine") and run[k] is not None else run[k]
                  for k in cols]
        c.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values)
        for ev in src.conn.execute("SELECT * FROM evaluations WHERE run_id = ?", (rid,)).fetchall():
            d = dict(ev)
            old = d.pop("eval_id")
            cols_e = list(d)
            new = c.execute(f"INSERT INTO evaluations ({', '.join(cols_e)}) VALUES ({', '.join('?' * len(cols_e))})",
                            [d[k] for k in cols_e]).lastrowid
            for table in ("layers", "masks", "neurons"):
                for r in src.conn.execute(f"SELECT * FROM {table} WHERE eval_id = ?", (old,)).fetchall():
                    vals = list(dict(r).values())
                    vals[0] = new
                    c.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(vals))})", vals)
        for r in src.conn.execute("SELECT * FROM artifacts WHERE run_id = ?", (rid,)).fetchall():
            c.execute("INSERT INTO artifacts VALUES (?, ?, ?)", tuple(r))
