-- The monitoring store (MySQL 8 / MariaDB 10.5 or later). Times are milliseconds since the Unix
-- epoch, UTC. The same tables as migrations/sqlite and migrations/postgres; keys and short
-- names are VARCHAR (an index needs a length), free text is MEDIUMTEXT, and every text compares
-- by code point, as on the other stores: `Orders` and `orders` are two pipelines. The store
-- replaces the binary collation named below by the server's that does not ignore trailing
-- spaces (MariaDB's utf8mb4_nopad_bin, MySQL 8's utf8mb4_0900_bin) when it has one.

CREATE TABLE pipeline (
    id            VARCHAR(200) NOT NULL PRIMARY KEY,
    source_type   VARCHAR(100) NOT NULL,
    target_type   VARCHAR(100) NOT NULL,
    pipeline_type VARCHAR(16)  NOT NULL CHECK (pipeline_type IN ('INCREMENTAL', 'FULL_TABLE')),
    config        MEDIUMTEXT   NOT NULL,
    created_at    BIGINT       NOT NULL,
    updated_at    BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE pipeline_run (
    id                    BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pipeline_id           VARCHAR(200) NOT NULL,
    run_key               VARCHAR(200) UNIQUE,
    status                VARCHAR(16)  NOT NULL
        CHECK (status IN ('running', 'completed', 'failed', 'exited', 'stopped')),
    cloudwatch_log_stream VARCHAR(512) NOT NULL DEFAULT '',
    started               BIGINT       NOT NULL,
    finished              BIGINT,
    rows_loaded           BIGINT       NOT NULL DEFAULT 0,
    rows_extracted        BIGINT       NOT NULL DEFAULT 0,
    bytes_loaded          BIGINT       NOT NULL DEFAULT 0,
    peak_memory_bytes     BIGINT       NOT NULL DEFAULT 0,
    start_offset          MEDIUMTEXT,
    end_offset            MEDIUMTEXT,
    error                 MEDIUMTEXT,
    stages                MEDIUMTEXT,
    stop_requested        BIGINT       NOT NULL DEFAULT 0,
    last_report_at        BIGINT,
    created_at            BIGINT       NOT NULL,
    updated_at            BIGINT       NOT NULL,
    INDEX pipeline_run_by_pipeline (pipeline_id, created_at),
    INDEX pipeline_run_by_status (status),
    CONSTRAINT pipeline_run_pipeline FOREIGN KEY (pipeline_id)
        REFERENCES pipeline (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE pipeline_run_sample (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pipeline_run_id BIGINT NOT NULL,
    seq             BIGINT,
    created_at      BIGINT NOT NULL,
    elapsed_secs    DOUBLE,
    rps             DOUBLE,
    memory_usage    DOUBLE,
    rows_loaded     BIGINT,
    bytes_loaded    BIGINT,
    source_rows     BIGINT,
    transform_rows  BIGINT,
    source_rps      DOUBLE,
    transform_rps   DOUBLE,
    queues          MEDIUMTEXT,
    UNIQUE KEY pipeline_run_sample_seq (pipeline_run_id, seq),
    INDEX pipeline_run_sample_by_run (pipeline_run_id, created_at),
    CONSTRAINT pipeline_run_sample_run FOREIGN KEY (pipeline_run_id)
        REFERENCES pipeline_run (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE pipeline_run_log (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pipeline_run_id BIGINT       NOT NULL,
    seq             BIGINT,
    created_at      BIGINT       NOT NULL,
    level           VARCHAR(16)  NOT NULL,
    target          VARCHAR(200) NOT NULL DEFAULT '',
    message         MEDIUMTEXT   NOT NULL,
    UNIQUE KEY pipeline_run_log_seq (pipeline_run_id, seq),
    INDEX pipeline_run_log_by_run (pipeline_run_id, id),
    CONSTRAINT pipeline_run_log_run FOREIGN KEY (pipeline_run_id)
        REFERENCES pipeline_run (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
