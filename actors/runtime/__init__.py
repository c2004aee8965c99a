"""The Ray runtime: the shard host (entities, locks, batched calls), the Ray shells and their placement, the
typed client the api calls shards with, delivery after commit, and the local cluster for development. The only
package that imports Ray."""
