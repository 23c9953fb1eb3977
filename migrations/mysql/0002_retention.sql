-- Retention (`fastlane store prune`, `serve --retention-days`) removes samples and log lines by
-- age, in bounded batches: these indexes find the oldest without scanning the tables.
CREATE INDEX pipeline_run_sample_by_time ON pipeline_run_sample (created_at);
CREATE INDEX pipeline_run_log_by_time ON pipeline_run_log (created_at);
