-- Home feed (issue 12). A repost is a feed entry of its own, so it gets a time-ordered id like every entry
-- (existing rows get one derived from their created_at, in the layout of storage/ids.py: milliseconds since
-- 2024-01-01 shifted past 22 bits of node and sequence, plus a tie-breaker from the row's position).
ALTER TABLE reposts ADD COLUMN id bigint;
UPDATE reposts r SET id = ((floor(extract(epoch FROM r.created_at) * 1000)::bigint - 1704067200000) << 22)
                          + (n.rn % 4096)
FROM (SELECT post_id, user_id, row_number() OVER (ORDER BY created_at, post_id, user_id) AS rn FROM reposts) n
WHERE n.post_id = r.post_id AND n.user_id = r.user_id;
ALTER TABLE reposts ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX reposts_id_key ON reposts (id);
-- Feed reads and timeline rebuilds take the newest entries of each followee below a cursor (an entry id).
CREATE INDEX reposts_user_id_idx ON reposts (user_id, id DESC);
CREATE INDEX posts_author_id_idx ON posts (author_id, id DESC);
-- Authors above FANOUT_MAX_FOLLOWERS are merged into their followers' feeds at read time: the few users above
-- the threshold are found through this index, not by scanning a reader's every followee.
CREATE INDEX users_followers_count_idx ON users (followers_count DESC);
