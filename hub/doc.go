// Package hub is the reference Studio hub: the server side of the Studio worker protocol
// (shared/spec/protocol-v1.md). It registers workers, keeps one WebSocket session per worker,
// schedules queued jobs onto connected workers, keeps leases across disconnects, stores results
// and serves the admin job API, with every durable fact in one SQLite file — or in a PostgreSQL
// database that several hubs share as replicas of one queue (cluster*.go) — and result files in a
// data folder.
//
// It speaks only through the protocol package. It must not know about the worker's internals
// (session, app, engines, GPUs, UI): everything it learns about a worker comes over the wire.
//
// Extensions beyond the contract, all additive: GET /v1/jobs lists jobs (most recent first,
// ?limit=, default 100, at most 1000) and GET /v1/workers/{id}/logs returns a worker's latest
// shipped log entries (?limit=, default 100, at most 1000).
package hub
