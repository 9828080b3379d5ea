-- Local state of `synqx run`: runs, step runs with their counters, committed watermarks.
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    plan_hash   TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX runs_by_pipeline ON runs (pipeline, started_at);

CREATE TABLE step_runs (
    run_id         TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step           TEXT NOT NULL,
    status         TEXT NOT NULL,
    rows_read      INTEGER NOT NULL DEFAULT 0,
    rows_written   INTEGER NOT NULL DEFAULT 0,
    rows_rejected  INTEGER NOT NULL DEFAULT 0,
    bytes_read     INTEGER NOT NULL DEFAULT 0,
    bytes_written  INTEGER NOT NULL DEFAULT 0,
    started_at     TEXT,
    finished_at    TEXT,
    watermark_from TEXT,
    watermark_to   TEXT,
    message        TEXT,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE watermarks (
    pipeline   TEXT NOT NULL,
    step       TEXT NOT NULL,
    value      TEXT NOT NULL,
    run_id     TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, step)
);
