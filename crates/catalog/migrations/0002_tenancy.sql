-- Tenancy and identity, owned by core: users, projects, members, robots,
-- quotas, immutability rules and the audit log.

CREATE TABLE harbor_user (
    user_id        bigserial PRIMARY KEY,
    username       text NOT NULL,
    email          text NOT NULL DEFAULT '',
    realname       text NOT NULL DEFAULT '',
    comment        text NOT NULL DEFAULT '',
    password_hash  text NOT NULL,
    sysadmin_flag  boolean NOT NULL DEFAULT false,
    creation_time  timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX harbor_user_username ON harbor_user (lower(username));
CREATE UNIQUE INDEX harbor_user_email ON harbor_user (lower(email)) WHERE email <> '';

CREATE TABLE project (
    project_id     bigserial PRIMARY KEY,
    name           text COLLATE "C" NOT NULL UNIQUE,
    owner_id       bigint NOT NULL REFERENCES harbor_user (user_id),
    registry_id    bigint NOT NULL DEFAULT 0,
    creation_time  timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now()
);

-- Harbor keeps project settings as string key/value pairs ("public": "true").
CREATE TABLE project_metadata (
    project_id  bigint NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    name        text NOT NULL,
    value       text NOT NULL,
    PRIMARY KEY (project_id, name)
);

-- role: 1 projectAdmin, 2 developer, 3 guest, 4 maintainer, 5 limitedGuest.
CREATE TABLE project_member (
    id             bigserial PRIMARY KEY,
    project_id     bigint NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    entity_id      bigint NOT NULL,
    entity_type    char(1) NOT NULL DEFAULT 'u' CHECK (entity_type IN ('u', 'g')),
    role           integer NOT NULL CHECK (role BETWEEN 1 AND 5),
    creation_time  timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, entity_id, entity_type)
);
CREATE INDEX project_member_entity ON project_member (entity_type, entity_id);

CREATE TABLE robot (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL,
    description    text NOT NULL DEFAULT '',
    secret_hash    text NOT NULL,
    level          text NOT NULL CHECK (level IN ('system', 'project')),
    project_id     bigint REFERENCES project (project_id) ON DELETE CASCADE,
    duration       bigint NOT NULL DEFAULT -1,
    expires_at     bigint NOT NULL DEFAULT -1,
    disabled       boolean NOT NULL DEFAULT false,
    creator_ref    text NOT NULL DEFAULT '',
    creation_time  timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX robot_name ON robot (name, coalesce(project_id, 0));

-- One row per (robot, namespace, resource, action).
CREATE TABLE robot_permission (
    robot_id   bigint NOT NULL REFERENCES robot (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    namespace  text NOT NULL,
    resource   text NOT NULL,
    action     text NOT NULL,
    PRIMARY KEY (robot_id, kind, namespace, resource, action)
);

CREATE TABLE quota (
    id             bigserial PRIMARY KEY,
    project_id     bigint NOT NULL UNIQUE REFERENCES project (project_id) ON DELETE CASCADE,
    hard_storage   bigint NOT NULL DEFAULT -1,
    creation_time  timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE immutable_rule (
    id            bigserial PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES project (project_id) ON DELETE CASCADE,
    disabled      boolean NOT NULL DEFAULT false,
    priority      integer NOT NULL DEFAULT 0,
    -- Harbor's rule body: tag_selectors and scope_selectors, kept as sent.
    rule          jsonb NOT NULL
);
CREATE INDEX immutable_rule_project ON immutable_rule (project_id);

CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    project_id      bigint,
    operation       text NOT NULL,
    resource_type   text NOT NULL,
    resource        text NOT NULL,
    username        text NOT NULL DEFAULT '',
    op_time         timestamptz NOT NULL DEFAULT now(),
    -- Outbox row this entry came from, so consuming twice writes once.
    outbox_id       bigint UNIQUE
);
CREATE INDEX audit_log_project_time ON audit_log (project_id, op_time DESC);
CREATE INDEX audit_log_time ON audit_log (op_time DESC);

-- How far each outbox consumer has read.
CREATE TABLE outbox_cursor (
    consumer  text PRIMARY KEY,
    last_id   bigint NOT NULL DEFAULT 0
);

-- Artifact and repository extras that core owns.
CREATE TABLE repository_meta (
    repo_id      bigint PRIMARY KEY REFERENCES repository (id) ON DELETE CASCADE,
    description  text NOT NULL DEFAULT ''
);
