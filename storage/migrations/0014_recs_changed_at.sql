-- When the precomputed recommendation tables last changed their contents (issue 14): a refresh that recomputes
-- the same trending posts and the same top posts and authors per interest leaves it, so a kept explore ranking
-- (actors/explore.py) stands until what it was made from is different, not merely recomputed.
ALTER TABLE recs_refreshed ADD COLUMN changed_at timestamptz;
UPDATE recs_refreshed SET changed_at = at;
