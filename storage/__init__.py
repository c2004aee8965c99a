"""Storage layer: PostgreSQL (asyncpg), Redis, media. Imports nothing else of ours."""
