-- Hold for review (issue 12): the never-used hold_seconds becomes the per-stream bound in ms, and
-- the mode is added (NULL: the edge's default, chat.moderation.hold).
ALTER TABLE room_modes RENAME COLUMN hold_seconds TO hold_ms;
ALTER TABLE room_modes ADD COLUMN hold text CHECK (hold IN ('off', 'open', 'closed'));
