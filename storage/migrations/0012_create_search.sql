-- Search (issue 13, DESIGN.md 5): full-text search of posts with tsvector + GIN, typo tolerance and user and
-- hashtag search with pg_trgm, accents folded with unaccent. Everything is maintained in the writer's
-- transaction (triggers), so a post is findable as soon as its create returns and gone as soon as its delete does.
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;

-- unaccent() is only STABLE (its dictionary could change); index expressions need IMMUTABLE, so this wrapper
-- names the dictionary and promises it will not.
CREATE FUNCTION i9_fold(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, value)) $$;

-- A post's document: its caption (hashtags included, '#' dropped by the parser) weighted A, its author's name and
-- username weighted B. The 'simple' configuration: no stemming, no stop words (posts are in every language).
ALTER TABLE posts ADD COLUMN search tsvector;

CREATE FUNCTION i9_post_document(caption text, author_name text, author_username text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT setweight(to_tsvector('simple', i9_fold(coalesce(caption, ''))), 'A')
              || setweight(to_tsvector('simple', i9_fold(coalesce(author_name, '') || ' '
                                                        || coalesce(author_username, ''))), 'B') $$;

-- The vocabulary the typo correction matches against: every word of every caption, with how many posts use it.
CREATE TABLE search_words (
    word text PRIMARY KEY,
    n    integer NOT NULL CHECK (n >= 0)
);
CREATE INDEX search_words_trgm_idx ON search_words USING gist (word gist_trgm_ops);

CREATE FUNCTION i9_post_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT i9_post_document(NEW.caption, u.name, u.username) INTO NEW.search FROM users u WHERE u.id = NEW.author_id;
        INSERT INTO search_words (word, n)
            SELECT w, 1 FROM unnest(tsvector_to_array(to_tsvector('simple', i9_fold(NEW.caption)))) AS w
            WHERE length(w) BETWEEN 2 AND 40
            ON CONFLICT (word) DO UPDATE SET n = search_words.n + 1;
        RETURN NEW;
    END IF;
    UPDATE search_words s SET n = s.n - 1
        FROM unnest(tsvector_to_array(to_tsvector('simple', i9_fold(OLD.caption)))) AS w
        WHERE s.word = w AND s.n > 0;
    RETURN OLD;
END $$;

CREATE TRIGGER posts_search_insert BEFORE INSERT ON posts FOR EACH ROW EXECUTE FUNCTION i9_post_search();
CREATE TRIGGER posts_search_delete AFTER DELETE ON posts FOR EACH ROW EXECUTE FUNCTION i9_post_search();

UPDATE posts p SET search = i9_post_document(p.caption, u.name, u.username) FROM users u WHERE u.id = p.author_id;
INSERT INTO search_words (word, n)
    SELECT w, count(*) FROM posts p, unnest(tsvector_to_array(to_tsvector('simple', i9_fold(p.caption)))) AS w
    WHERE length(w) BETWEEN 2 AND 40 GROUP BY w;

CREATE INDEX posts_search_idx ON posts USING gin (search);

-- Users: a username prefix (typeahead) through text_pattern_ops, then trigram similarity of username and name.
CREATE INDEX users_username_prefix_idx ON users (username text_pattern_ops);
-- GiST, for its nearest-first order (<->> word-similarity distance): a short or common name matches thousands.
CREATE INDEX users_search_trgm_idx ON users USING gist ((username || ' ' || i9_fold(name)) gist_trgm_ops);

-- Hashtags: prefix and trigram match, ranked by use, recent use weighted up.
ALTER TABLE hashtags ADD COLUMN last_used_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX hashtags_prefix_idx ON hashtags (tag text_pattern_ops);
CREATE INDEX hashtags_trgm_idx ON hashtags USING gin (tag gin_trgm_ops);
