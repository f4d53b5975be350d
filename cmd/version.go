package cmd

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// version is the release, set at build time:
// go build -ldflags "-X github.com/cloud-cli-proxy/cloud-cli-proxy/cmd.version=v1.2.3".
var version = ""

// buildVersion returns the version (the -X value, else the module's, else "devel") and the
// commit the binary was built from (vcs.revision, "+dirty" when modified; "unknown" when the
// build had no VCS information).
func buildVersion() (ver, commit string) {
	ver, commit = version, "unknown"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if ver == "" {
			ver = "devel"
		}
		return ver, commit
	}
	if ver == "" {
		ver = info.Main.Version
		if ver == "" || ver == "(devel)" {
			ver = "devel"
		}
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && commit != "unknown" {
		commit += "+dirty"
	}
	return ver, commit
}

// programVersion is "VERSION (COMMIT)", recorded in backups.
func programVersion() string {
	v, c := buildVersion()
	if len(c) > 12 {
		c = c[:12]
	}
	return v + " (" + c + ")"
}

// Version prints the version, commit and database schema version ("version" subcommand).
func Version(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version\n\nPrints the version, the commit it was built from and the database schema version it writes.", stderr)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	v, c := buildVersion()
	fmt.Fprintf(stdout, "cloud-cli-proxy %s\ncommit %s\nschema version %d\n%s %s/%s\n", v, c, storage.LatestSchemaVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
