-- MetaStore schema, version 1 (livechat.ports.meta). Times are wall-clock seconds as double
-- precision, so a Python float round-trips exactly; comment ids are 63-bit (livechat.ids) -> bigint.

CREATE TABLE streams (
    stream_id   text PRIMARY KEY,
    owner_id    text NOT NULL,
    title       text NOT NULL,
    created_at  double precision NOT NULL,
    ended_at    double precision
);

CREATE TABLE users (
    user_id      text PRIMARY KEY,
    display_name text NOT NULL,
    created_at   double precision NOT NULL
);

-- Only non-viewer roles are stored; stream_id '*' is the site-wide role.
CREATE TABLE roles (
    stream_id text NOT NULL,
    user_id   text NOT NULL,
    role      text NOT NULL CHECK (role IN ('moderator', 'broadcaster')),
    PRIMARY KEY (stream_id, user_id)
);

CREATE TABLE follows (
    channel_id  text NOT NULL,
    user_id     text NOT NULL,
    followed_at double precision NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);

CREATE TABLE room_modes (
    stream_id                text PRIMARY KEY,
    slow_seconds             integer NOT NULL CHECK (slow_seconds >= 0),
    followers_only_min_age_s integer CHECK (followers_only_min_age_s >= 0),
    comments_off             boolean NOT NULL,
    emote_only               boolean NOT NULL,
    hold_seconds             integer NOT NULL CHECK (hold_seconds >= 0)
);

CREATE TABLE pins (
    stream_id  text PRIMARY KEY,
    comment_id bigint NOT NULL,
    pinned_by  text NOT NULL,
    payload    bytea NOT NULL,
    pinned_at  double precision NOT NULL,
    expires_at double precision
);

-- Highlighted comments; seq orders them (a repeat highlight takes a new seq: it becomes the newest).
CREATE SEQUENCE highlights_seq;
CREATE TABLE highlights (
    stream_id      text NOT NULL,
    comment_id     bigint NOT NULL,
    seq            bigint NOT NULL DEFAULT nextval('highlights_seq'),
    highlighted_at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
    PRIMARY KEY (stream_id, comment_id)
);
ALTER SEQUENCE highlights_seq OWNED BY highlights.seq;
CREATE INDEX highlights_by_seq ON highlights (stream_id, seq);

-- A ban (expires_at NULL) or a timeout; stream_id '*' is a global ban. The primary key serves
-- get_ban (stream_id = ANY('{s,*}') AND user_id = u), the hot lookup on stream open and on post.
CREATE TABLE bans (
    stream_id  text NOT NULL,
    user_id    text NOT NULL,
    banned_by  text NOT NULL,
    reason     text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision,
    PRIMARY KEY (stream_id, user_id)
);
-- purge_expired scans only rows that can expire.
CREATE INDEX bans_expiring ON bans (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE mod_actions (
    action_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id         text NOT NULL,
    actor_id          text NOT NULL,
    kind              text NOT NULL,
    created_at        double precision NOT NULL,
    target_user_id    text,
    target_comment_id bigint,
    reason            text NOT NULL
);
CREATE INDEX mod_actions_by_stream ON mod_actions (stream_id, action_id);

CREATE TABLE user_reports (
    report_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id         text NOT NULL,
    reporter_id       text NOT NULL,
    target_user_id    text NOT NULL,
    reason            text NOT NULL,
    created_at        double precision NOT NULL,
    target_comment_id bigint
);
CREATE INDEX user_reports_by_stream ON user_reports (stream_id, report_id);
-- One report per reporter and comment. NULLs are distinct here (the default), so reports of a
-- user (no comment) are all kept.
CREATE UNIQUE INDEX user_reports_once ON user_reports (stream_id, target_comment_id, reporter_id);

CREATE TABLE flagged_comments (
    stream_id   text NOT NULL,
    comment_id  bigint NOT NULL,
    user_id     text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    score       double precision NOT NULL,
    created_at  double precision NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    resolved_by text,
    resolved_at double precision,
    PRIMARY KEY (stream_id, comment_id)
);
CREATE INDEX flagged_by_status ON flagged_comments (stream_id, status, created_at, comment_id);

CREATE TABLE reputation (
    user_id text NOT NULL,
    counter text NOT NULL,
    value   bigint NOT NULL,
    PRIMARY KEY (user_id, counter)
);
