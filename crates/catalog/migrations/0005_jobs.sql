-- Jobs (executions, tasks, schedules, logs) and the GC run's Harbor-facing
-- results. Executions and their statuses live here; Redis is only transport.

ALTER TABLE gc_run
    ADD COLUMN execution_id      bigint,
    ADD COLUMN status            text NOT NULL DEFAULT 'running',
    ADD COLUMN dry_run           boolean NOT NULL DEFAULT false,
    ADD COLUMN manifests_deleted bigint NOT NULL DEFAULT 0,
    ADD COLUMN error             text;

CREATE TABLE execution (
    id              bigserial PRIMARY KEY,
    vendor_type     text NOT NULL,
    vendor_id       bigint,
    status          text NOT NULL DEFAULT 'Pending'
                    CHECK (status IN ('Pending', 'Running', 'Success', 'Error', 'Stopped')),
    status_message  text,
    trigger         text NOT NULL DEFAULT 'MANUAL',
    extra_attrs     jsonb NOT NULL DEFAULT '{}',
    stop_requested  boolean NOT NULL DEFAULT false,
    start_time      timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    end_time        timestamptz
);
CREATE INDEX execution_vendor ON execution (vendor_type, start_time DESC, id DESC);

CREATE TABLE task (
    id              bigserial PRIMARY KEY,
    execution_id    bigint NOT NULL REFERENCES execution (id) ON DELETE CASCADE,
    job_name        text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'Pending'
                    CHECK (status IN ('Pending', 'Running', 'Success', 'Error', 'Stopped')),
    status_message  text,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 3,
    worker          text,
    heartbeat_at    timestamptz,
    enqueued_at     timestamptz,
    creation_time   timestamptz NOT NULL DEFAULT now(),
    start_time      timestamptz,
    end_time        timestamptz
);
CREATE INDEX task_execution ON task (execution_id);
CREATE INDEX task_open ON task (status) WHERE status IN ('Pending', 'Running');

CREATE TABLE job_log (
    id       bigserial PRIMARY KEY,
    task_id  bigint NOT NULL REFERENCES task (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL DEFAULT now(),
    line     text NOT NULL
);
CREATE INDEX job_log_task ON job_log (task_id, id);
CREATE INDEX job_log_at ON job_log (at);

-- Cron schedules. `next_run` is advanced with a compare-and-set
-- (UPDATE ... WHERE next_run = $old), so each tick fires once across replicas.
CREATE TABLE schedule (
    id           bigserial PRIMARY KEY,
    vendor_type  text NOT NULL,
    vendor_id    bigint NOT NULL DEFAULT 0,
    kind         text NOT NULL DEFAULT 'Custom',
    cron         text NOT NULL,
    job_name     text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    next_run     timestamptz,
    creation_time timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (vendor_type, vendor_id)
);
CREATE INDEX schedule_due ON schedule (next_run);
