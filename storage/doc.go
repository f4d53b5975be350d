// Package storage is the storage room of cloud-cli-proxy: it keeps every record the service
// owns in one bbolt file and implements app.Store on it.
//
// Each entity has its own bucket of JSON records keyed by id, plus index buckets that make
// every lookup and listing the service needs a direct seek instead of a scan (users by name,
// hosts by short id and by user, bindings by host and by egress IP, tokens by hash, by name
// and by user, tasks by time, host and state, audit events by time, host, user and type,
// revoked JWT ids by expiry). Unique indexes turn violations into app.ErrConflict.
//
// The schema version lives in the meta bucket; Open applies pending migrations in one
// transaction and refuses a file written by a newer program. Backup and BackupFile take a
// consistent copy of a live database.
//
// Bucket and key layout:
//
//	meta                   "schema_version" -> uint64 BE
//	users                  id -> User JSON
//	users_by_name          username -> id                         (unique)
//	ssh_keys               id -> SSHKey JSON
//	ssh_keys_by_user       userID 0x00 id -> ""
//	ssh_keys_by_fp         userID 0x00 fingerprint -> id          (unique)
//	egress                 id -> EgressIP JSON
//	hosts                  id -> Host JSON
//	hosts_by_short_id      shortID -> id                          (unique)
//	hosts_by_user          userID 0x00 id -> ""
//	bindings               id -> Binding JSON
//	bindings_by_host       hostID -> id                           (unique)
//	bindings_by_egress     egressID 0x00 id -> ""
//	tokens                 id -> AccessToken JSON
//	tokens_by_hash         hash -> id                             (unique)
//	tokens_by_name         userID 0x00 name -> id                 (unique)
//	tokens_by_user         userID 0x00 id -> ""
//	tasks                  id -> Task JSON
//	tasks_by_time          created(8) id -> ""
//	tasks_by_host          hostID 0x00 created(8) id -> ""
//	tasks_by_state         state 0x00 created(8) id -> ""
//	events                 time(8) seq(8) -> Event JSON           (Event.ID = hex of the key)
//	events_by_host         hostID 0x00 time(8) seq(8) -> ""
//	events_by_user         userID 0x00 time(8) seq(8) -> ""
//	events_by_type         action 0x00 time(8) seq(8) -> ""
//	revocations            jti -> expires(8)
//	revocations_by_expiry  expires(8) jti -> ""
//
// Times in keys are big-endian unix nanoseconds (zero and pre-1970 times sort as 0).
package storage
