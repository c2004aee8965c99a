-- Interests, explore and who-to-follow (issue 14).
--
-- The catalogue: each interest is marked on a post by its own slug as a hashtag (#travel), by its other hashtags,
-- or by a caption keyword (lower-case, accents folded). A post is tagged when it is created, in the same
-- transaction (post_interests); deleting the post deletes its tags. followers_count changes with the follows row.
CREATE TABLE interests (
    slug            text     PRIMARY KEY CHECK (slug ~ '^[a-z0-9_]{2,30}$'),
    name            text     NOT NULL,
    position        smallint NOT NULL UNIQUE,  -- catalogue order (GET /interests pages by it)
    hashtags        text[]   NOT NULL DEFAULT '{}',
    keywords        text[]   NOT NULL DEFAULT '{}',
    followers_count integer  NOT NULL DEFAULT 0 CHECK (followers_count >= 0)
);

CREATE TABLE interest_follows (
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    slug       text        NOT NULL REFERENCES interests (slug) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, slug)
);
-- Who follows an interest (shared-interest suggestions), newest first.
CREATE INDEX interest_follows_slug_idx ON interest_follows (slug, created_at DESC, user_id DESC);
-- GET /me/interests, newest follow first.
CREATE INDEX interest_follows_user_idx ON interest_follows (user_id, created_at DESC, slug);

CREATE TABLE post_interests (
    post_id   bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    slug      text   NOT NULL REFERENCES interests (slug) ON DELETE CASCADE,
    author_id bigint NOT NULL,
    PRIMARY KEY (post_id, slug)
);
-- An interest's newest posts (post ids are time-ordered).
CREATE INDEX post_interests_slug_idx ON post_interests (slug, post_id DESC);

-- Explore feedback: one signal per user and post (the latest wins); "less" (-1) or "more" (+1) counts for the
-- post's author and interests. The post may go; its signal on the author stays.
CREATE TABLE explore_feedback (
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id    bigint      NOT NULL,
    author_id  bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    slugs      text[]      NOT NULL DEFAULT '{}',
    signal     smallint    NOT NULL CHECK (signal IN (-1, 1)),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, post_id)
);
CREATE INDEX explore_feedback_user_idx ON explore_feedback (user_id, created_at DESC);

-- A user's recommendation knobs (GET/PUT /me/recommendations); no row = the defaults.
CREATE TABLE recommendation_settings (
    user_id        bigint      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    recency_weight real        NOT NULL DEFAULT 0.3 CHECK (recency_weight >= 0 AND recency_weight <= 1),
    hide_reposts   boolean     NOT NULL DEFAULT false,
    per_author_cap smallint    NOT NULL DEFAULT 2 CHECK (per_author_cap >= 1 AND per_author_cap <= 10),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Small tables a worker recomputes every RECS_REFRESH_S (actors/explore.py ``refresh``), so the request path
-- never scans posts or users: posts trending in the last 24 h (time-decayed engagement), each interest's most
-- engaging recent posts, and each interest's popular authors. No foreign keys to posts or users: a delete must
-- never wait on (or deadlock with) a refresh; readers skip rows whose post or user is gone.
CREATE TABLE trending_posts (
    post_id   bigint PRIMARY KEY,
    author_id bigint NOT NULL,
    score     real   NOT NULL
);
CREATE TABLE interest_top_posts (
    slug      text   NOT NULL REFERENCES interests (slug) ON DELETE CASCADE,
    post_id   bigint NOT NULL,
    author_id bigint NOT NULL,
    score     real   NOT NULL,
    PRIMARY KEY (slug, post_id)
);
CREATE TABLE interest_top_authors (
    slug    text   NOT NULL REFERENCES interests (slug) ON DELETE CASCADE,
    user_id bigint NOT NULL,
    score   real   NOT NULL,
    PRIMARY KEY (slug, user_id)
);
CREATE TABLE recs_refreshed (
    name text        PRIMARY KEY,
    at   timestamptz NOT NULL
);

INSERT INTO interests (position, slug, name, hashtags, keywords) VALUES
(1, 'travel', 'Travel', '{travelgram,wanderlust,vacation,roadtrip,backpacking}',
    '{travel,travels,traveling,travelling,trip,vacation,holiday,holidays,wanderlust,backpacking,passport,itinerary}'),
(2, 'food', 'Food', '{foodie,foodporn,instafood,delicious,yummy}',
    '{food,foodie,recipe,recipes,dinner,lunch,breakfast,brunch,dessert,delicious,yummy,restaurant,pizza,sushi,pasta}'),
(3, 'cooking', 'Cooking', '{homecooking,baking,recipe,chef}',
    '{cooking,cook,baking,bake,baked,chef,kitchen,homemade,oven,bread,sourdough}'),
(4, 'fitness', 'Fitness', '{gym,workout,fitfam,bodybuilding,crossfit}',
    '{fitness,gym,workout,workouts,squat,deadlift,cardio,gains,bodybuilding,crossfit}'),
(5, 'running', 'Running', '{marathon,run,runner,trailrunning}',
    '{running,runner,marathon,halfmarathon,jog,jogging,5k,10k,ultramarathon}'),
(6, 'cycling', 'Cycling', '{bike,bicycle,mtb,roadcycling}',
    '{cycling,bike,biking,bicycle,cyclist,mtb,peloton}'),
(7, 'hiking', 'Hiking', '{mountains,outdoors,trekking,camping}',
    '{hiking,hike,hiker,trek,trekking,trail,summit,mountain,mountains,camping,campfire}'),
(8, 'yoga', 'Yoga', '{meditation,mindfulness}',
    '{yoga,meditation,mindfulness,asana,namaste,pilates}'),
(9, 'music', 'Music', '{newmusic,livemusic,concert,song,musician}',
    '{music,song,songs,album,concert,gig,guitar,piano,drums,musician,playlist,singer}'),
(10, 'dance', 'Dance', '{dancer,ballet,choreography}',
    '{dance,dancing,dancer,ballet,choreography,salsa,hiphopdance}'),
(11, 'photography', 'Photography', '{photooftheday,photo,camera,landscapephotography,portrait}',
    '{photography,photographer,camera,lens,exposure,portrait,landscape}'),
(12, 'art', 'Art', '{artist,painting,drawing,illustration,artwork}',
    '{art,artist,painting,paint,drawing,sketch,illustration,artwork,canvas,gallery,museum}'),
(13, 'design', 'Design', '{graphicdesign,uxdesign,typography}',
    '{design,designer,typography,logo,branding,ux,ui}'),
(14, 'architecture', 'Architecture', '{interiordesign}',
    '{architecture,architect,skyscraper,interior,facade}'),
(15, 'fashion', 'Fashion', '{ootd,style,outfit,streetstyle}',
    '{fashion,outfit,ootd,dress,sneakers,streetwear,wardrobe}'),
(16, 'beauty', 'Beauty', '{makeup,skincare,nails,hair}',
    '{beauty,makeup,skincare,lipstick,nails,manicure,hairstyle,cosmetics}'),
(17, 'gaming', 'Gaming', '{gamer,videogames,esports,twitch}',
    '{gaming,gamer,videogame,videogames,esports,playstation,xbox,nintendo,twitch}'),
(18, 'technology', 'Technology', '{tech,gadgets,ai,innovation}',
    '{technology,tech,gadget,gadgets,smartphone,startup,innovation,ai,robot,robots}'),
(19, 'programming', 'Programming', '{coding,developer,python,javascript,opensource}',
    '{programming,coding,code,developer,python,javascript,rust,golang,opensource,software,compiler}'),
(20, 'science', 'Science', '{physics,biology,chemistry}',
    '{science,scientist,physics,biology,chemistry,research,experiment,lab}'),
(21, 'space', 'Space', '{astronomy,nasa,astrophotography}',
    '{space,astronomy,galaxy,nebula,planet,planets,telescope,rocket,moon,mars,nasa,astronaut}'),
(22, 'books', 'Books', '{bookstagram,reading,booklover,amreading}',
    '{book,books,reading,novel,novels,library,bookworm,chapter}'),
(23, 'movies', 'Movies', '{film,cinema,movie}',
    '{movie,movies,film,films,cinema,director,trailer,oscars,screenplay}'),
(24, 'tv', 'TV and series', '{tvshow,series,netflix,bingewatching}',
    '{tv,series,episode,episodes,netflix,sitcom,showrunner}'),
(25, 'comedy', 'Comedy', '{funny,memes,lol,humor}',
    '{comedy,funny,joke,jokes,meme,memes,lol,humor,humour,standup}'),
(26, 'anime', 'Anime and manga', '{manga,otaku,cosplay}',
    '{anime,manga,otaku,cosplay,shonen}'),
(27, 'sports', 'Sports', '{sport,athlete,olympics}',
    '{sport,sports,athlete,olympics,tennis,golf,boxing,rugby,cricket,baseball}'),
(28, 'football', 'Football', '{soccer,premierleague,worldcup,championsleague}',
    '{football,soccer,striker,goalkeeper,worldcup,premierleague,laliga}'),
(29, 'basketball', 'Basketball', '{nba,hoops,wnba}',
    '{basketball,nba,wnba,dunk,hoops,playoffs}'),
(30, 'cars', 'Cars', '{car,carsofinstagram,supercar,motorsport,f1}',
    '{car,cars,supercar,motorsport,racing,f1,drift,porsche,ferrari}'),
(31, 'nature', 'Nature', '{naturelovers,wildlife,sunset,ocean}',
    '{nature,wildlife,forest,ocean,sunset,sunrise,lake,river,waterfall,flowers,beach}'),
(32, 'pets', 'Pets', '{dogs,cats,puppy,kitten,dogsofinstagram,catsofinstagram}',
    '{pet,pets,dog,dogs,puppy,puppies,cat,cats,kitten,kittens}'),
(33, 'gardening', 'Gardening', '{garden,plants,houseplants,urbanjungle}',
    '{gardening,garden,plants,plant,houseplants,seedlings,compost,harvest}'),
(34, 'diy', 'DIY and crafts', '{crafts,handmade,woodworking,knitting}',
    '{diy,craft,crafts,handmade,woodworking,knitting,sewing,crochet,pottery}'),
(35, 'parenting', 'Parenting', '{momlife,dadlife,family,kids}',
    '{parenting,parent,parents,baby,toddler,kids,momlife,dadlife}'),
(36, 'education', 'Education', '{learning,study,studygram,teacher}',
    '{education,learning,study,studying,teacher,school,university,exam,lecture}'),
(37, 'business', 'Business', '{entrepreneur,startup,marketing,smallbusiness}',
    '{business,entrepreneur,startup,marketing,sales,founder,ceo,smallbusiness}'),
(38, 'finance', 'Finance', '{investing,stocks,crypto,money}',
    '{finance,investing,investment,stocks,crypto,bitcoin,money,budget,savings}'),
(39, 'health', 'Health', '{wellness,nutrition,mentalhealth,selfcare}',
    '{health,wellness,nutrition,mentalhealth,selfcare,vitamins,healthy}'),
(40, 'history', 'History', '{historical,archaeology,vintage}',
    '{history,historical,ancient,archaeology,medieval,vintage,museum}'),
(41, 'coffee', 'Coffee', '{coffeetime,latteart,espresso,barista}',
    '{coffee,espresso,latte,cappuccino,barista,latteart,brew}'),
(42, 'environment', 'Environment', '{climate,sustainability,zerowaste,ecofriendly}',
    '{environment,climate,sustainability,sustainable,recycling,zerowaste,ecofriendly,solar}');
