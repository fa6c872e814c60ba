-- The storage index: what the registry has placed on disk, written in the same
-- transaction that places the files (see shared/docs/gc.md). Digests are raw
-- bytes: 32 for sha256, 64 for sha512.

CREATE TYPE content_state AS ENUM ('live', 'deleting');
CREATE TYPE ref_kind AS ENUM ('config', 'layer', 'manifest');

CREATE TABLE repository (
    id          bigserial PRIMARY KEY,
    name        text COLLATE "C" NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE blob (
    digest          bytea PRIMARY KEY CHECK (length(digest) IN (32, 64)),
    size            bigint NOT NULL CHECK (size >= 0),
    state           content_state NOT NULL DEFAULT 'live',
    created_at      timestamptz NOT NULL DEFAULT now(),
    gc_run          bigint,
    deleting_since  timestamptz
);

-- A repository's `_layers` link, and the pin that keeps a freshly pushed blob
-- alive until a manifest references it.
CREATE TABLE repo_blob (
    repo_id       bigint NOT NULL REFERENCES repository (id),
    digest        bytea NOT NULL REFERENCES blob (digest),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX repo_blob_digest ON repo_blob (digest, last_used_at);

CREATE TABLE manifest (
    id              bigserial PRIMARY KEY,
    repo_id         bigint NOT NULL REFERENCES repository (id),
    digest          bytea NOT NULL REFERENCES blob (digest),
    media_type      text NOT NULL,
    artifact_type   text,
    subject_digest  bytea,
    size            bigint NOT NULL,
    state           content_state NOT NULL DEFAULT 'live',
    pushed_at       timestamptz NOT NULL DEFAULT now(),
    deleting_since  timestamptz,
    UNIQUE (repo_id, digest)
);
CREATE INDEX manifest_digest ON manifest (digest);
CREATE INDEX manifest_subject ON manifest (repo_id, subject_digest) WHERE subject_digest IS NOT NULL;
CREATE INDEX manifest_repo_pushed ON manifest (repo_id, pushed_at DESC, id DESC);

CREATE TABLE manifest_ref (
    manifest_id   bigint NOT NULL REFERENCES manifest (id) ON DELETE CASCADE,
    child_digest  bytea NOT NULL REFERENCES blob (digest),
    kind          ref_kind NOT NULL,
    PRIMARY KEY (manifest_id, child_digest, kind)
);
CREATE INDEX manifest_ref_child ON manifest_ref (child_digest);

CREATE TABLE tag (
    repo_id      bigint NOT NULL REFERENCES repository (id),
    name         text NOT NULL,
    manifest_id  bigint NOT NULL REFERENCES manifest (id),
    pushed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, name)
);
CREATE INDEX tag_manifest ON tag (manifest_id);

-- Every `_manifests/tags/<t>/index/<algo>/<hex>/link` written, so deletes
-- unlink exact paths instead of scanning.
CREATE TABLE tag_index (
    repo_id  bigint NOT NULL REFERENCES repository (id),
    tag      text NOT NULL,
    digest   bytea NOT NULL,
    PRIMARY KEY (repo_id, tag, digest)
);

CREATE TABLE gc_queue (
    kind          text NOT NULL CHECK (kind IN ('blob', 'manifest')),
    key           bytea NOT NULL,
    review_after  timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
);
CREATE INDEX gc_queue_due ON gc_queue (kind, review_after);

CREATE TABLE gc_run (
    id             bigserial PRIMARY KEY,
    params         jsonb NOT NULL DEFAULT '{}',
    phase          text NOT NULL DEFAULT 'pending',
    started_at     timestamptz NOT NULL DEFAULT now(),
    heartbeat_at   timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    examined       bigint NOT NULL DEFAULT 0,
    deleted        bigint NOT NULL DEFAULT 0,
    kept           bigint NOT NULL DEFAULT 0,
    bytes_freed    bigint NOT NULL DEFAULT 0,
    errors         bigint NOT NULL DEFAULT 0,
    stop_requested boolean NOT NULL DEFAULT false
);

-- Events for audit, webhooks and replication, appended in the write's own
-- transaction and consumed at least once by their readers.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_type  text NOT NULL,
    repository  text NOT NULL,
    digest      text,
    tag         text,
    media_type  text,
    size        bigint,
    actor       text,
    payload     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Pull counts and times, batched off the request path.
CREATE TABLE pull_stat (
    repo_id         bigint NOT NULL REFERENCES repository (id) ON DELETE CASCADE,
    digest          bytea NOT NULL,
    pull_count      bigint NOT NULL DEFAULT 0,
    last_pulled_at  timestamptz NOT NULL,
    PRIMARY KEY (repo_id, digest)
);

-- Harbor's system-wide switches that the write path honours.
CREATE TABLE system_setting (
    key    text PRIMARY KEY,
    value  jsonb NOT NULL
);
