package app

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Image pull policies (IMAGE_PULL_POLICY).
const (
	PullMissing = "missing" // pull a host's image when the engine does not have it
	PullAlways  = "always"  // pull it before every container is created
	PullNever   = "never"   // never pull: the image must be built or loaded on the engine
)

// ImagePuller is implemented by a Runtime that can pull images (runtime.Docker).
type ImagePuller interface {
	// ImagePresent reports whether the engine has the image.
	ImagePresent(ctx context.Context, ref string) (bool, error)
	// PullImage pulls the image, telling progress the engine's progress lines as they
	// change. A refused pull is a *RuntimeError with CodeImagePullFailed and the
	// registry's message.
	PullImage(ctx context.Context, ref string, progress func(string)) error
}

// pullPolicy is the configured policy ("" is missing).
func (s *Service) pullPolicy() string {
	if s.cfg.ImagePullPolicy == "" {
		return PullMissing
	}
	return s.cfg.ImagePullPolicy
}

// pullLocks serialises the pulls of one image, so hosts created together pull it once.
// The zero value is ready.
type pullLocks struct {
	mu sync.Mutex
	m  map[string]*pullLock
}

type pullLock struct {
	mu   sync.Mutex
	refs int
}

func (p *pullLocks) lock(ref string) {
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]*pullLock{}
	}
	l := p.m[ref]
	if l == nil {
		l = &pullLock{}
		p.m[ref] = l
	}
	l.refs++
	p.mu.Unlock()
	l.mu.Lock()
}

func (p *pullLocks) unlock(ref string) {
	p.mu.Lock()
	l := p.m[ref]
	if l.refs--; l.refs == 0 {
		delete(p.m, ref)
	}
	p.mu.Unlock()
	l.mu.Unlock()
}

// ensureImage pulls the image of a host about to get a container, as the policy says, with
// the pull and its progress as steps of the task r. Without a puller (or with the policy
// never) it does nothing: creating the container then reports a missing image.
func (s *Service) ensureImage(ctx context.Context, r *taskRun, ref string) error {
	puller, ok := s.runtime.(ImagePuller)
	policy := s.pullPolicy()
	if !ok || policy == PullNever || ref == "" {
		return nil
	}
	if policy == PullMissing {
		present, err := puller.ImagePresent(ctx, ref)
		if err != nil {
			return err
		}
		if present {
			return nil
		}
	}
	s.imagePulls.lock(ref)
	defer s.imagePulls.unlock(ref)
	if policy == PullMissing { // another task may have pulled it while this one waited
		if present, err := puller.ImagePresent(ctx, ref); err == nil && present {
			return nil
		}
	}
	err := r.step(ctx, fmt.Sprintf("pull image %s (IMAGE_PULL_POLICY=%s)", ref, policy), func() error {
		return puller.PullImage(ctx, ref, func(line string) {
			r.note(ctx, "pull: "+truncate(line, 120))
		})
	})
	if err != nil {
		s.log.Warn("image pull failed", "image", ref, "err", err)
	}
	return err
}

// note adds a finished step that reports progress inside the running step (a pull's
// lines), and saves the task so its watchers see it.
func (r *taskRun) note(ctx context.Context, name string) {
	now := r.s.Now()
	if len(r.t.Steps) >= maxTaskSteps {
		return
	}
	r.t.Steps = append(r.t.Steps, TaskStep{Name: name, State: "done", At: now, End: &now})
	r.save(ctx)
}

// maxTaskSteps bounds the steps of one task (a pull of an image with many layers).
const maxTaskSteps = 200

// CheckManagedImage logs, at start-up, a warning naming the fix when MANAGED_IMAGE is not
// on the engine and IMAGE_PULL_POLICY=never (hosts could not be created), and returns
// whether the image is there (true when it cannot be told).
func (s *Service) CheckManagedImage(ctx context.Context) bool {
	puller, ok := s.runtime.(ImagePuller)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	present, err := puller.ImagePresent(ctx, s.cfg.ManagedImage)
	if err != nil {
		return true // an unreachable engine is reported on its own
	}
	if !present && s.pullPolicy() == PullNever {
		s.log.Warn("MANAGED_IMAGE is not on the container engine and IMAGE_PULL_POLICY=never: hosts cannot be created until it is; "+
			"build it (docker build -t IMAGE deploy/docker/managed-user), load it (docker load), or set IMAGE_PULL_POLICY=missing to pull it",
			"image", s.cfg.ManagedImage)
	}
	return present
}
