-- Engagement totals (issue 12): reactions, the comment count and likes survive a restart and an
-- idle room being dropped. Each edge adds the deltas it saw (MetaStore.add_engagement).
CREATE TABLE stream_counts (
    stream_id text PRIMARY KEY,
    comments bigint NOT NULL
);
CREATE TABLE stream_reactions (
    stream_id text NOT NULL,
    emoji text NOT NULL,
    total bigint NOT NULL,
    PRIMARY KEY (stream_id, emoji)
);
CREATE TABLE comment_likes (
    stream_id text NOT NULL,
    comment_id bigint NOT NULL,
    likes bigint NOT NULL,
    PRIMARY KEY (stream_id, comment_id)
);
