"""One SQLite file per run folder: every generation and verdict, written as made.

Keys make a resumed run skip what is done and never count a reply twice: a generation is keyed by
(model, config, prompt, sample), a verdict by the same plus the judge.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    model TEXT NOT NULL, config TEXT NOT NULL, prompt_id TEXT NOT NULL, sample INTEGER NOT NULL,
    label TEXT, category TEXT, prompt TEXT NOT NULL, completion TEXT NOT NULL,
    finish_reason TEXT, completion_tokens INTEGER, created REAL,
    PRIMARY KEY (model, config, prompt_id, sample)
);
CREATE TABLE IF NOT EXISTS verdicts (
    model TEXT NOT NULL, config TEXT NOT NULL, prompt_id TEXT NOT NULL, sample INTEGER NOT NULL,
    judge TEXT NOT NULL, outcome TEXT NOT NULL, harm REAL, rationale TEXT, created REAL,
    PRIMARY KEY (model, config, prompt_id, sample, judge)
);
CREATE TABLE IF NOT EXISTS configs (config TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rt_units (
    model TEXT NOT NULL, config TEXT NOT NULL, attack TEXT NOT NULL, seed_id TEXT NOT NULL, sample INTEGER NOT NULL,
    category TEXT, success INTEGER NOT NULL, errors INTEGER NOT NULL, trials INTEGER NOT NULL,
    prompts INTEGER NOT NULL, tokens INTEGER NOT NULL, seconds REAL NOT NULL, created REAL,
    PRIMARY KEY (model, config, attack, seed_id, sample)
);
CREATE TABLE IF NOT EXISTS rt_trials (
    model TEXT NOT NULL, config TEXT NOT NULL, attack TEXT NOT NULL, seed_id TEXT NOT NULL, sample INTEGER NOT NULL,
    trial INTEGER NOT NULL, conversation TEXT NOT NULL, reply TEXT NOT NULL, outcome TEXT NOT NULL, harm REAL,
    rationale TEXT, PRIMARY KEY (model, config, attack, seed_id, sample, trial)
);
"""


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def save_config(self, key: str, body: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO configs VALUES (?, ?)", (key, body))

    def generated(self, model: str, config: str) -> set[tuple[str, int]]:
        cur = self.db.execute("SELECT prompt_id, sample FROM generations WHERE model=? AND config=?", (model, config))
        return {(str(p), int(s)) for p, s in cur}

    def add_generations(self, model: str, config: str, rows: Iterable[dict[str, Any]]) -> None:
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        model,
                        config,
                        r["prompt_id"],
                        r["sample"],
                        r.get("label"),
                        r.get("category"),
                        r["prompt"],
                        r["completion"],
                        r.get("finish_reason"),
                        r.get("completion_tokens"),
                        now,
                    )
                    for r in rows
                ],
            )

    def unjudged(self, model: str, config: str, judge: str) -> list[dict[str, Any]]:
        cur = self.db.execute(
            """SELECT g.prompt_id, g.sample, g.prompt, g.completion FROM generations g
               LEFT JOIN verdicts v ON v.model=g.model AND v.config=g.config AND v.prompt_id=g.prompt_id
                    AND v.sample=g.sample AND v.judge=?
               WHERE g.model=? AND g.config=? AND v.outcome IS NULL
               ORDER BY g.prompt_id, g.sample""",
            (judge, model, config),
        )
        return [dict(zip(("prompt_id", "sample", "prompt", "completion"), row, strict=True)) for row in cur]

    def add_verdicts(self, model: str, config: str, judge: str, rows: Iterable[dict[str, Any]]) -> None:
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        model,
                        config,
                        r["prompt_id"],
                        r["sample"],
                        judge,
                        r["outcome"],
                        r.get("harm"),
                        r.get("rationale", ""),
                        now,
                    )
                    for r in rows
                ],
            )

    def judged(self, model: str, config: str, judge: str) -> list[dict[str, Any]]:
        cur = self.db.execute(
            """SELECT g.prompt_id, g.sample, g.label, g.category, g.prompt, g.completion, v.outcome, v.harm,
                      v.rationale
               FROM generations g JOIN verdicts v ON v.model=g.model AND v.config=g.config
                    AND v.prompt_id=g.prompt_id AND v.sample=g.sample
               WHERE g.model=? AND g.config=? AND v.judge=? ORDER BY g.prompt_id, g.sample""",
            (model, config, judge),
        )
        keys = (
            "prompt_id",
            "sample",
            "label",
            "category",
            "prompt",
            "completion",
            "outcome",
            "harm",
            "rationale",
        )
        return [dict(zip(keys, row, strict=True)) for row in cur]

    # ---- red-team campaigns: a unit is one attack on one seed (one sample); it lands whole or not at all

    def rt_done(self, model: str, config: str) -> set[tuple[str, str, int]]:
        cur = self.db.execute(
            "SELECT attack, seed_id, sample FROM rt_units WHERE model=? AND config=?", (model, config)
        )
        return {(str(a), str(s), int(k)) for a, s, k in cur}

    def rt_usage(self, model: str, config: str) -> tuple[int, int, float]:
        """Prompts, tokens and seconds spent so far by this campaign, across resumed runs."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(prompts),0), COALESCE(SUM(tokens),0), COALESCE(SUM(seconds),0) FROM rt_units "
            "WHERE model=? AND config=?",
            (model, config),
        ).fetchone()
        return int(row[0]), int(row[1]), float(row[2])

    def rt_add_unit(self, model: str, config: str, unit: dict[str, Any], trials: list[dict[str, Any]]) -> None:
        now = time.time()
        key = (model, config, unit["attack"], unit["seed_id"], unit["sample"])
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO rt_trials VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        *key,
                        i,
                        t["conversation"],
                        t["reply"],
                        t["outcome"],
                        t.get("harm"),
                        t.get("rationale", ""),
                    )
                    for i, t in enumerate(trials)
                ],
            )
            self.db.execute(
                "INSERT OR IGNORE INTO rt_units VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    *key,
                    unit["category"],
                    unit["success"],
                    unit["errors"],
                    len(trials),
                    unit["prompts"],
                    unit["tokens"],
                    unit["seconds"],
                    now,
                ),
            )

    def rt_units(self, model: str, config: str) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT attack, seed_id, sample, category, success, errors, trials FROM rt_units "
            "WHERE model=? AND config=? ORDER BY attack, seed_id, sample",
            (model, config),
        )
        keys = ("attack", "seed_id", "sample", "category", "success", "errors", "trials")
        return [dict(zip(keys, row, strict=True)) for row in cur]

    def rt_trials(self, model: str, config: str) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT t.attack, t.seed_id, t.sample, t.trial, u.category, t.conversation, t.reply, t.outcome "
            "FROM rt_trials t JOIN rt_units u USING (model, config, attack, seed_id, sample) "
            "WHERE t.model=? AND t.config=? ORDER BY t.attack, t.seed_id, t.sample, t.trial",
            (model, config),
        )
        keys = ("attack", "seed_id", "sample", "trial", "category", "conversation", "reply", "outcome")
        return [dict(zip(keys, row, strict=True)) for row in cur]
