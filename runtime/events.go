package runtime

import (
	"context"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// eventActions are the container actions Events forwards: state changes, not exec,
// attach or resize chatter.
var eventActions = []events.Action{
	events.ActionCreate, events.ActionStart, events.ActionRestart, events.ActionStop,
	events.ActionKill, events.ActionDie, events.ActionOOM, events.ActionDestroy,
	events.ActionPause, events.ActionUnPause, events.ActionUpdate, events.ActionRename,
}

// Events streams state changes (create, start, restart, kill, die, stop, oom, destroy,
// pause, unpause, update, rename) of this product's containers, filtered by the engine on
// type=container and label cloud-cli-proxy.managed=true.
//
// The subscription is established before Events returns, so an action taken afterwards is
// seen. Both channels are closed when the stream ends: when ctx ends (no error is sent)
// or when the engine stream fails, in which case exactly one translated *app.RuntimeError
// is sent on the error channel first (buffered, so it never blocks). The stream does not
// reconnect by itself; callers resubscribe (and reconcile with List) after an error.
func (d *Docker) Events(ctx context.Context) (<-chan app.RuntimeEvent, <-chan error) {
	out := make(chan app.RuntimeEvent, 64)
	errc := make(chan error, 1)

	args := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", LabelManaged+"=true"),
	)
	for _, a := range eventActions {
		args.Add("event", string(a))
	}
	sctx, cancel := context.WithCancel(ctx)
	msgs, errs := d.cli.Events(sctx, events.ListOptions{Filters: args})

	go func() {
		defer close(errc)
		defer close(out)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case err, ok := <-errs:
				if ctx.Err() != nil {
					return
				}
				if !ok || err == nil {
					errc <- rtErr(app.CodeRuntimeError, "container event stream ended", nil)
				} else {
					errc <- translate("container event stream", err)
				}
				return
			case m := <-msgs:
				ev := app.RuntimeEvent{
					HostID:      m.Actor.Attributes[LabelHostID],
					ContainerID: m.Actor.ID,
					Action:      string(m.Action),
					At:          eventTime(m),
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, errc
}

func eventTime(m events.Message) time.Time {
	switch {
	case m.TimeNano != 0:
		return time.Unix(0, m.TimeNano)
	case m.Time != 0:
		return time.Unix(m.Time, 0)
	default:
		return time.Now()
	}
}
