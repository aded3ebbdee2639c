package events

import (
	"context"
	"fmt"
	"iter"
	"time"
)

// ProgressOption says where Progress and WaitRollout start reading.
type ProgressOption func(*WatchOptions)

// ProgressSince reads the progress events stored at or after t. The default
// is the start of the DEPLOY stream, which always finds the events but
// reads every progress event of the environment on the way; a time a
// little before the request was published (allowing for clock skew) is
// cheaper.
func ProgressSince(t time.Time) ProgressOption {
	return func(o *WatchOptions) { o.StartTime, o.StartSeq = t, 0 }
}

// ProgressFromSeq reads the progress events from stream sequence seq on,
// for instance the sequence at which the request was stored.
func ProgressFromSeq(seq uint64) ProgressOption {
	return func(o *WatchOptions) { o.StartSeq, o.StartTime = seq, time.Time{} }
}

// Progress yields the progress events (deploy.progress.<env>) of the
// deploy request requestID, stored ones first and then live ones, in stream
// order, and ends after the final one. A request that is not tracked (its
// rollout is false, or it did not succeed) has none: bound ctx. When ctx
// ends or the watch fails before the final event, the error is yielded
// last.
//
//	for p, err := range client.Progress(ctx, "env-001", id) {
//		if err != nil { ... }
//		fmt.Println(p.Phase, p.Message)
//	}
func (c *Client) Progress(ctx context.Context, env, requestID string, opts ...ProgressOption) iter.Seq2[DeployProgress, error] {
	return func(yield func(DeployProgress, error) bool) {
		wo := WatchOptions{Subjects: []string{DeployProgressSubject(env)}, Stream: StreamDeploy}
		for _, opt := range opts {
			opt(&wo)
		}
		for w, err := range c.Watch(ctx, wo) {
			if err != nil && w.Data == nil {
				yield(DeployProgress{}, fmt.Errorf("progress of %s: %w", requestID, err))
				return
			}
			if err != nil {
				continue // not an event at all: not ours
			}
			if rid, _ := w.Event.Extensions()[ExtRequestID].(string); rid != requestID {
				continue
			}
			p, err := w.DeployProgress()
			if err != nil || p.RequestID != requestID {
				continue
			}
			if !yield(p, nil) || p.Final {
				return
			}
		}
		if err := ctx.Err(); err != nil {
			yield(DeployProgress{}, fmt.Errorf("progress of %s: no final event: %w", requestID, err))
		}
	}
}

// WaitRollout waits for the final progress event of the deploy request
// requestID in env (converged, degraded, timed_out or superseded) and
// returns it; an event stored before the call is found too. The error is
// for what kept it from coming (ctx done, the watch failed); bound ctx, as
// a request that is not tracked gets no final event.
func (c *Client) WaitRollout(ctx context.Context, env, requestID string, opts ...ProgressOption) (DeployProgress, error) {
	for p, err := range c.Progress(ctx, env, requestID, opts...) {
		if err != nil {
			return DeployProgress{}, err
		}
		if p.Final {
			return p, nil
		}
	}
	return DeployProgress{}, fmt.Errorf("progress of %s: the watch ended before the final event", requestID)
}
