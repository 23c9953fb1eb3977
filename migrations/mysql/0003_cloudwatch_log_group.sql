-- The CloudWatch Logs group of a run's lines (the stream alone does not say where they are when
-- the group was given on the command line).
ALTER TABLE pipeline_run ADD COLUMN cloudwatch_log_group VARCHAR(512);
