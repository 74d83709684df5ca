// Package redisstate is the Redis implementation of state.Coordinator: dedupe
// records as SET NX PX keys and per-key leases whose holder and fencing
// counter share a Redis Cluster hash slot and change together in Lua scripts.
// It works against a single node, Sentinel or Cluster through
// redis.NewUniversalClient. Redis here is an optimisation and a lock service,
// never a record of truth: losing it costs speed, never a lifecycle change.
// It must not import other state backends (memstate, jsstate) or application
// packages, and must never log its URL or password.
package redisstate
