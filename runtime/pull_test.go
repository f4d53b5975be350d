package runtime

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/registry"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// unreachableImage names an image on a registry that refuses connections at once: no
// registry is reachable from the tests, so this is the refusal path of a pull.
func unreachableImage(t *testing.T) string {
	return "127.0.0.1:1/ccp-no-such-image-" + randHex(t, 4) + ":latest"
}

func TestPullRefusedCarriesRegistryMessage(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	ref := unreachableImage(t)
	if ok, err := d.ImagePresent(ctx, ref); err != nil || ok {
		t.Fatalf("ImagePresent(%s) = %v, %v", ref, ok, err)
	}
	if ok, err := d.ImagePresent(ctx, testImage()); err != nil || !ok {
		t.Fatalf("ImagePresent(%s) = %v, %v", testImage(), ok, err)
	}
	var lines []string
	err := d.PullImage(ctx, ref, func(l string) { lines = append(lines, l) })
	var re *app.RuntimeError
	if !errors.As(err, &re) || re.Code != app.CodeImagePullFailed || !strings.Contains(re.Message, "127.0.0.1:1") {
		t.Fatalf("pull of %s: %v", ref, err)
	}
	// The engine's words for the registry's refusal, not a generic failure.
	if !strings.Contains(re.Message, "connection refused") && !strings.Contains(re.Message, "connect") {
		t.Errorf("message lacks the registry's error: %q", re.Message)
	}
}

// pullService is a service on the real engine with the policy and managed image given.
func pullService(t *testing.T, d *Docker, policy, image string) (context.Context, *app.Service, string) {
	t.Helper()
	env := testenv.NewService(t, testenv.WithRuntime(d), testenv.WithConfig(func(c *app.Config) {
		c.ReconcileInterval, c.ImagePullPolicy, c.ManagedImage = -1, policy, image
	}))
	ctx := env.Start()
	admin := app.Principal{Username: "system", Role: app.RoleAdmin, Method: "system"}
	u, err := env.Service.CreateUser(ctx, admin, app.CreateUserInput{Username: "puller", Password: "puller-password"})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := env.Service.CreateHost(ctx, admin, app.CreateHostInput{UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = d.Remove(cctx, hc.Host.ID, false)
	})
	return ctx, env.Service, hc.Task.ID
}

func waitTask(t *testing.T, ctx context.Context, svc *app.Service, id string) (app.Task, string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	task, err := svc.WaitTask(wctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, s := range task.Steps {
		steps = append(steps, s.Name+" ["+s.State+"]")
	}
	return task, strings.Join(steps, "\n")
}

func TestPullPolicyAgainstEngine(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	t.Run("missing pulls an absent image: the registry's refusal is the task error", func(t *testing.T) {
		t.Parallel()
		ref := unreachableImage(t)
		ctx, svc, id := pullService(t, d, app.PullMissing, ref)
		task, steps := waitTask(t, ctx, svc, id)
		if task.State != app.TaskFailed || task.Error == nil || task.Error.Code != app.CodeImagePullFailed ||
			!strings.Contains(task.Error.Message, "127.0.0.1:1") {
			t.Fatalf("task %s: %+v\n%s", task.State, task.Error, steps)
		}
		if !strings.Contains(steps, "pull image "+ref+" (IMAGE_PULL_POLICY=missing) [failed]") {
			t.Errorf("steps:\n%s", steps)
		}
	})
	t.Run("missing does not pull a local image", func(t *testing.T) {
		t.Parallel()
		ctx, svc, id := pullService(t, d, app.PullMissing, testImage())
		task, steps := waitTask(t, ctx, svc, id)
		if task.State != app.TaskSucceeded || strings.Contains(steps, "pull") {
			t.Fatalf("task %s: %+v\n%s", task.State, task.Error, steps)
		}
	})
	t.Run("never does not pull an absent image", func(t *testing.T) {
		t.Parallel()
		ref := unreachableImage(t)
		ctx, svc, id := pullService(t, d, app.PullNever, ref)
		task, steps := waitTask(t, ctx, svc, id)
		if task.State != app.TaskFailed || task.Error == nil || task.Error.Code != app.CodeImageMissing ||
			!strings.Contains(task.Error.Message, "IMAGE_PULL_POLICY=missing") || strings.Contains(steps, "pull") {
			t.Fatalf("task %s: %+v\n%s", task.State, task.Error, steps)
		}
	})
}

func TestRegistryAuthFromDockerConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.json")
	cfg := `{"auths":{"registry.example:5000":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) + `"},` +
		`"https://index.docker.io/v1/":{"username":"bob","password":"hub-pass"}}}`
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	decode := func(enc string) registry.AuthConfig {
		t.Helper()
		var ac registry.AuthConfig
		raw, err := base64.URLEncoding.DecodeString(enc)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &ac); err != nil {
			t.Fatal(err)
		}
		return ac
	}
	for domain, want := range map[string][2]string{"registry.example:5000": {"alice", "s3cret"}, "docker.io": {"bob", "hub-pass"}} {
		enc, err := registryAuth(file, domain)
		if err != nil {
			t.Fatal(err)
		}
		if ac := decode(enc); ac.Username != want[0] || ac.Password != want[1] {
			t.Errorf("%s: %+v", domain, ac)
		}
	}
	if enc, err := registryAuth(file, "other.example"); err != nil || enc != "" {
		t.Errorf("a registry without credentials: %q, %v", enc, err)
	}
	if _, err := registryAuth(filepath.Join(dir, "missing.json"), "docker.io"); err == nil {
		t.Error("a missing REGISTRY_AUTH_FILE is not an error")
	}
}
