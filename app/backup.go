package app

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Snapshotter is implemented by a Store that can write a consistent backup of itself (one
// read transaction; writers go on meanwhile).
type Snapshotter interface {
	Snapshot(ctx context.Context, w io.Writer) (BackupInfo, error)
}

// BackupInfo describes a backup written by Backup.
type BackupInfo struct {
	SchemaVersion int       `json:"schema_version"`
	Bytes         int64     `json:"bytes"`   // written to the stream
	SHA256        string    `json:"sha256"`  // of the uncompressed payload, as in the file's header
	DBSize        int64     `json:"db_size"` // bytes of the database in it
	CreatedAt     time.Time `json:"created_at"`
}

// LocalAdmin is the principal of a request over the server's local admin socket: only the
// server's own user (or root) can open it (mode 0600 in the data dir), so it acts as the
// server itself. uid is the peer's, for the audit trail.
func LocalAdmin(uid int) Principal {
	return Principal{Username: fmt.Sprintf("local-socket:uid=%d", uid), Role: RoleAdmin, Method: MethodSystem, SourceIP: "unix"}
}

// Backup streams a backup of the database to w (admins whose credential may write) and
// audits it (backup.create, with its size and checksum, or the failure).
func (s *Service) Backup(ctx context.Context, p Principal, w io.Writer) (BackupInfo, error) {
	if err := s.requireAdminWrite(ctx, p, "backup.create"); err != nil {
		return BackupInfo{}, err
	}
	sn, ok := s.base.(Snapshotter)
	if !ok {
		return BackupInfo{}, unavailable(CodeBackupUnsupported, "this store cannot be backed up")
	}
	info, err := sn.Snapshot(ctx, w)
	ev := s.event(p, "backup.create", ResultSuccess)
	ev.TargetType = "database"
	if err != nil {
		ev.Result, ev.Message = ResultFailure, "backup failed: "+err.Error()
	} else {
		ev.Message = fmt.Sprintf("schema %d, database %d bytes, backup %d bytes, sha256 %s", info.SchemaVersion, info.DBSize, info.Bytes, info.SHA256)
	}
	s.record(context.WithoutCancel(ctx), ev)
	return info, err
}
