package runtime

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

var _ app.ImagePuller = (*Docker)(nil)

// ImagePresent reports whether the engine has the image.
func (d *Docker) ImagePresent(ctx context.Context, ref string) (bool, error) {
	if _, err := d.cli.ImageInspect(ctx, ref); err != nil {
		if cerrdefs.IsNotFound(err) {
			return false, nil
		}
		return false, translate("inspect image "+ref, err)
	}
	return true, nil
}

// PullImage pulls ref from its registry, with the credentials of the Docker config
// (Config.RegistryAuthFile, else $DOCKER_CONFIG/config.json or ~/.docker/config.json) for
// its registry, if any. progress receives the engine's progress lines as they change (a
// layer's status, the digest, the final status; not every byte count). A refused pull is an
// *app.RuntimeError with app.CodeImagePullFailed and the registry's message.
func (d *Docker) PullImage(ctx context.Context, ref string, progress func(string)) error {
	op := "pull image " + ref
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return rtErr(app.CodeImagePullFailed, op+": not an image reference: "+clean(err), err)
	}
	auth, err := registryAuth(d.cfg.RegistryAuthFile, reference.Domain(named))
	if err != nil {
		return rtErr(app.CodeImagePullFailed, op+": registry credentials: "+clean(err), err)
	}
	rc, err := d.cli.ImagePull(ctx, reference.TagNameOnly(named).String(), image.PullOptions{RegistryAuth: auth})
	if err != nil {
		// The engine relays the registry's failure, which may read like its own
		// ("connection refused"): only an engine that does not answer is unavailable.
		if _, perr := d.cli.Ping(ctx); perr != nil {
			return translate(op, err)
		}
		return rtErr(app.CodeImagePullFailed, op+": "+clean(err), err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	last := map[string]string{} // layer id -> last status told
	for {
		var m struct {
			Status      string `json:"status"`
			ID          string `json:"id"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			if ctx.Err() != nil {
				return translate(op, ctx.Err())
			}
			return rtErr(app.CodeImagePullFailed, op+": reading the engine's progress: "+clean(err), err)
		}
		if msg := m.Error; msg != "" || m.ErrorDetail != nil {
			if msg == "" {
				msg = m.ErrorDetail.Message
			}
			return rtErr(app.CodeImagePullFailed, op+": "+msg, errors.New(msg))
		}
		// A layer's byte counts change many times a second under one status: only a
		// change of status is told.
		if progress == nil || m.Status == "" || last[m.ID] == m.Status {
			continue
		}
		last[m.ID] = m.Status
		if m.ID != "" {
			progress(m.ID + ": " + m.Status)
		} else {
			progress(m.Status)
		}
	}
	if ok, err := d.ImagePresent(ctx, ref); err != nil {
		return err
	} else if !ok {
		return rtErr(app.CodeImagePullFailed, op+": the engine reported no error but does not have the image", nil)
	}
	return nil
}

// dockerConfig is the part of a Docker config.json that holds registry credentials.
type dockerConfig struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
	CredsStore  string            `json:"credsStore"`
	CredHelpers map[string]string `json:"credHelpers"`
}

// defaultDockerConfig is the Docker CLI's config file: $DOCKER_CONFIG/config.json, else
// ~/.docker/config.json.
func defaultDockerConfig() string {
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// registryAuth is the encoded X-Registry-Auth of domain from the Docker config file (file,
// or the default one when empty; a missing default file means no credentials, a missing
// named file is an error). "" means anonymous.
func registryAuth(file, domain string) (string, error) {
	path := file
	if path == "" {
		path = defaultDockerConfig()
		if path == "" {
			return "", nil
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		if file == "" && errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("REGISTRY_AUTH_FILE %s: %w", path, err)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", fmt.Errorf("%s is not a Docker config file: %w", path, err)
	}
	server := domain
	if domain == "docker.io" {
		server = "https://index.docker.io/v1/"
	}
	var ac registry.AuthConfig
	for key, a := range cfg.Auths {
		if registryHost(key) != registryHost(server) {
			continue
		}
		ac = registry.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, ServerAddress: server}
		if a.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(a.Auth)
			user, pass, ok := strings.Cut(string(dec), ":")
			if err != nil || !ok {
				return "", fmt.Errorf("%s: the auth of %s is not base64 of user:password", path, key)
			}
			ac.Username, ac.Password = user, pass
		}
		break
	}
	helper := cfg.CredHelpers[domain]
	if helper == "" {
		helper = cfg.CredsStore
	}
	if ac.Username == "" && ac.IdentityToken == "" && helper != "" {
		if ac, err = credentialHelper(helper, server); err != nil {
			return "", err
		}
	}
	if ac.Username == "" && ac.IdentityToken == "" {
		return "", nil
	}
	return registry.EncodeAuthConfig(ac)
}

// registryHost is the host of a config.json key ("https://index.docker.io/v1/" →
// "index.docker.io"; "docker.io" counts as it).
func registryHost(key string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	if h == "docker.io" || h == "registry-1.docker.io" {
		h = "index.docker.io"
	}
	return h
}

// credentialHelper asks docker-credential-NAME for server's credentials (the Docker
// credential-helper protocol). A helper that knows none answers no credentials.
func credentialHelper(name, server string) (registry.AuthConfig, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-credential-"+name, "get")
	cmd.Stdin = strings.NewReader(server)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if strings.Contains(out.String()+errb.String(), "credentials not found") {
			return registry.AuthConfig{}, nil
		}
		return registry.AuthConfig{}, fmt.Errorf("credential helper docker-credential-%s: %v: %s", name, err, strings.TrimSpace(errb.String()+out.String()))
	}
	var c struct{ Username, Secret string }
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		return registry.AuthConfig{}, fmt.Errorf("credential helper docker-credential-%s: %w", name, err)
	}
	if c.Username == "<token>" {
		return registry.AuthConfig{IdentityToken: c.Secret, ServerAddress: server}, nil
	}
	return registry.AuthConfig{Username: c.Username, Password: c.Secret, ServerAddress: server}, nil
}
