-- The monitoring store (SQLite). Times are milliseconds since the Unix epoch, UTC.
-- `pipeline` and `pipeline_run` keep the original fastlane's names and fields; samples, log
-- lines and the run's report key are new. PostgreSQL has the same tables
-- (migrations/postgres/0001_monitoring_store.sql).

CREATE TABLE pipeline (
    id            TEXT    NOT NULL PRIMARY KEY,
    source_type   TEXT    NOT NULL,
    target_type   TEXT    NOT NULL,
    pipeline_type TEXT    NOT NULL CHECK (pipeline_type IN ('INCREMENTAL', 'FULL_TABLE')),
    config        TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE pipeline_run (
    id                    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    pipeline_id           TEXT    NOT NULL REFERENCES pipeline (id) ON DELETE CASCADE,
    run_key               TEXT    UNIQUE,
    status                TEXT    NOT NULL
        CHECK (status IN ('running', 'completed', 'failed', 'exited', 'stopped')),
    cloudwatch_log_stream TEXT    NOT NULL DEFAULT '',
    started               BIGINT  NOT NULL,
    finished              BIGINT,
    rows_loaded           BIGINT  NOT NULL DEFAULT 0,
    rows_extracted        BIGINT  NOT NULL DEFAULT 0,
    bytes_loaded          BIGINT  NOT NULL DEFAULT 0,
    peak_memory_bytes     BIGINT  NOT NULL DEFAULT 0,
    start_offset          TEXT,
    end_offset            TEXT,
    error                 TEXT,
    stages                TEXT,
    stop_requested        BIGINT  NOT NULL DEFAULT 0,
    last_report_at        BIGINT,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL
);
CREATE INDEX pipeline_run_by_pipeline ON pipeline_run (pipeline_id, created_at);
CREATE INDEX pipeline_run_by_status ON pipeline_run (status);

CREATE TABLE pipeline_run_sample (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    pipeline_run_id BIGINT  NOT NULL REFERENCES pipeline_run (id) ON DELETE CASCADE,
    seq             BIGINT,
    created_at      BIGINT  NOT NULL,
    elapsed_secs    DOUBLE PRECISION,
    rps             DOUBLE PRECISION,
    memory_usage    DOUBLE PRECISION,
    rows_loaded     BIGINT,
    bytes_loaded    BIGINT,
    source_rows     BIGINT,
    transform_rows  BIGINT,
    source_rps      DOUBLE PRECISION,
    transform_rps   DOUBLE PRECISION,
    queues          TEXT,
    UNIQUE (pipeline_run_id, seq)
);
CREATE INDEX pipeline_run_sample_by_run ON pipeline_run_sample (pipeline_run_id, created_at);

CREATE TABLE pipeline_run_log (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    pipeline_run_id BIGINT  NOT NULL REFERENCES pipeline_run (id) ON DELETE CASCADE,
    seq             BIGINT,
    created_at      BIGINT  NOT NULL,
    level           TEXT    NOT NULL,
    target          TEXT    NOT NULL DEFAULT '',
    message         TEXT    NOT NULL,
    UNIQUE (pipeline_run_id, seq)
);
CREATE INDEX pipeline_run_log_by_run ON pipeline_run_log (pipeline_run_id, id);
