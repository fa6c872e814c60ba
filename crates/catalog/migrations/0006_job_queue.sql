-- The job queue's record in Postgres: when a pending task may run (retries
-- back off), and the per-task deadline. Redis only carries task ids.

ALTER TABLE task
    ADD COLUMN not_before    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN deadline_secs integer NOT NULL DEFAULT 21600;
CREATE INDEX task_due ON task (not_before) WHERE status = 'Pending';
CREATE INDEX task_running ON task (heartbeat_at) WHERE status = 'Running';
