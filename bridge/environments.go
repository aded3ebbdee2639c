package bridge

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/operator"
)

// envSources combines the two sources of environments: the file, read at
// start, and the key-value bucket, watched live. For one ID the bucket's
// entry wins; deleting it brings the file's back.
type envSources struct {
	mu      sync.Mutex
	file    []operator.Environment // sorted by ID
	bucket  map[string]operator.Environment
	changed chan struct{} // size 1: a pending "the set changed" for the health loop
}

func newEnvSources() *envSources {
	return &envSources{
		bucket:  map[string]operator.Environment{},
		changed: make(chan struct{}, 1),
	}
}

// setFile makes envs, with unique IDs, the file's environments; they are
// not changed.
func (s *envSources) setFile(envs []operator.Environment) {
	byID := func(a, b operator.Environment) int { return strings.Compare(a.ID, b.ID) }
	file := envs
	if !slices.IsSortedFunc(file, byID) {
		file = slices.Clone(envs)
		slices.SortFunc(file, byID)
	}
	s.mu.Lock()
	s.file = file
	s.mu.Unlock()
}

// merged returns the effective environments, sorted by ID: the file's, in
// order, with the bucket's merged in.
func (s *envSources) merged() []operator.Environment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]operator.Environment, 0, len(s.file)+len(s.bucket))
	file := s.file
	for _, id := range slices.Sorted(maps.Keys(s.bucket)) {
		n, found := slices.BinarySearchFunc(file, id, func(e operator.Environment, id string) int { return strings.Compare(e.ID, id) })
		out = append(out, file[:n]...)
		if found {
			n++ // the bucket's entry wins
		}
		file = file[n:]
		out = append(out, s.bucket[id])
	}
	return append(out, file...)
}

// loadEnvironments reads the file (unless Config.FileEnvironments holds it)
// and the bucket's current entries and builds the manager; it fails when
// the file cannot be read.
func (b *Bridge) loadEnvironments(ctx context.Context) error {
	envs := b.cfg.FileEnvironments
	if path := b.cfg.EnvironmentsFile; path != "" && envs == nil {
		var err error
		if envs, err = operator.LoadEnvironmentsFile(path); err != nil {
			return err
		}
	}
	b.envs.setFile(envs)
	if b.envKV != nil {
		w, err := b.openEnvWatch(ctx)
		if err != nil {
			return err
		}
		b.envWatch = w
	}
	if err := b.rebuild(); err != nil {
		return err
	}
	if b.manager.Len() == 0 {
		b.warnNoEnvironments()
	}
	b.envsLoaded.Store(true)
	return nil
}

// warnNoEnvironments says, once at start, that every deploy request will be
// rejected, and where environments come from.
func (b *Bridge) warnNoEnvironments() {
	file, bucket := b.cfg.EnvironmentsFile, b.cfg.EnvironmentsBucket
	if file == "" {
		file = "none (OPERATOR_BRIDGE_ENVIRONMENTS_FILE)"
	}
	if bucket == "" {
		bucket = "off (OPERATOR_BRIDGE_ENVIRONMENTS_BUCKET)"
	}
	b.log.Warn("no environments: every request will be rejected as unknown_environment until some are added, "+
		"in the environments file (OPERATOR_BRIDGE_ENVIRONMENTS_FILE, read at start) or as entries of the environments bucket (watched live)",
		"environments_file", file, "environments_bucket", bucket)
}

// putBucketEnv records one bucket entry; an entry that is not a valid
// environment is logged and left out.
func (b *Bridge) putBucketEnv(key string, value []byte) {
	env, err := operator.ParseEnvironment(value)
	if err == nil && env.ID == "" {
		env.ID = key
	}
	if err == nil && env.ID != key {
		err = fmt.Errorf("id %q differs from its key", env.ID)
	}
	b.envs.mu.Lock()
	defer b.envs.mu.Unlock()
	if err != nil {
		delete(b.envs.bucket, key)
		b.log.Error("environments bucket: entry left out", "key", key, "err", err)
		return
	}
	b.envs.bucket[key] = env
}

// rebuild builds the operators of the effective environments, swaps the
// manager's table as a whole, and forgets what only removed environments
// used.
func (b *Bridge) rebuild() error {
	built, err := b.factory.Build(b.envs.merged())
	if built == nil {
		return fmt.Errorf("environments: %w", err)
	}
	// Build keeps the environments it could make and names the others.
	if err != nil {
		b.log.Error("environments left out", "err", err)
	}
	b.manager.Take(built)
	b.metrics.environments.Set(float64(b.manager.Len()))
	b.forgetGone()
	select {
	case b.envs.changed <- struct{}{}:
	default:
	}
	return nil
}

// openEnvWatch watches the whole bucket, takes its current entries as the
// bucket's part of the environments, and returns the watcher for what follows.
func (b *Bridge) openEnvWatch(ctx context.Context) (jetstream.KeyWatcher, error) {
	w, err := b.envKV.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("environments bucket: %w", err)
	}
	b.envs.mu.Lock()
	clear(b.envs.bucket)
	b.envs.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			_ = w.Stop()
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("environments bucket: watch ended")
			}
			if e == nil { // the current entries are all in
				return w, nil
			}
			if e.Operation() == jetstream.KeyValuePut {
				b.putBucketEnv(e.Key(), e.Value())
			}
		}
	}
}

// watchEnvironments applies the bucket's puts and deletes as they happen,
// watching anew if the watch ends.
func (b *Bridge) watchEnvironments(ctx context.Context) {
	w := b.envWatch
	for {
		b.applyUpdates(ctx, w)
		_ = w.Stop()
		for {
			if ctx.Err() != nil {
				return
			}
			var err error
			if w, err = b.openEnvWatch(ctx); err == nil {
				break
			}
			b.log.Error("environments watch", "err", err)
			if !sleep(ctx, 2*time.Second) {
				return
			}
		}
		if err := b.rebuild(); err != nil {
			b.log.Error("environments: reload not applied", "err", err)
		}
	}
}

func (b *Bridge) applyUpdates(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		var batch []jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			batch = append(batch, e)
		}
		// What else has arrived (a script putting many environments) goes
		// into the same rebuild: each rebuild takes every environment.
		ended := false
	more:
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					ended = true
					break more
				}
				if e != nil {
					batch = append(batch, e)
				}
			default:
				break more
			}
		}
		b.applyBatch(batch)
		if ended {
			return
		}
	}
}

// applyBatch applies the bucket's puts and deletes of batch, in order, and
// rebuilds the manager once.
func (b *Bridge) applyBatch(batch []jetstream.KeyValueEntry) {
	for _, e := range batch {
		switch e.Operation() {
		case jetstream.KeyValuePut:
			b.putBucketEnv(e.Key(), e.Value())
		default: // delete or purge
			b.envs.mu.Lock()
			delete(b.envs.bucket, e.Key())
			b.envs.mu.Unlock()
		}
	}
	if err := b.rebuild(); err != nil {
		if len(batch) == 1 {
			b.log.Error("environments: change not applied", "key", batch[0].Key(), "err", err)
		} else {
			b.log.Error("environments: changes not applied", "changes", len(batch), "err", err)
		}
		return
	}
	n := b.manager.Len()
	for _, e := range batch {
		b.log.Info("environments changed", "key", e.Key(), "op", e.Operation().String(), "environments", n)
	}
}
