package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/statuspage"
)

// Factory builds the operators of a set of environments; *operator.Factory
// is one.
type Factory interface {
	Build(envs []operator.Environment) (*operator.Manager, error)
}

// Bridge is one replica of the operator-bridge service. Create it with New
// and run it with Run; any number of replicas may run against one JetStream.
type Bridge struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	factory Factory
	log     *slog.Logger
	metrics *metrics
	tracer  trace.Tracer // nil: tracing off
	source  string
	owner   string // unique per process: lease owner
	inbox   string // where other replicas forward requests (ForwardPrefix + a token)

	manager  *operator.Manager
	envs     *envSources
	order    *orderBook
	keys     *keyQueues
	circuits *circuits
	health   *healthBoard
	progress *progress
	rollouts *rollouts // rollout tracking (issue 12; rollout.go)
	envKV    jetstream.KeyValue
	envWatch jetstream.KeyWatcher

	tasks    chan task     // to the MAX_IN_FLIGHT workers; unbuffered: a message waits for a free one
	held     chan struct{} // one per message held, running or queued for its key: the bound of both
	unstored *unstored
	stopping chan struct{} // closed when Run's context ends
	workers  sync.WaitGroup

	envsLoaded atomic.Bool
	consumers  sync.Map      // stream name -> *atomic.Bool (consumer in place)
	firstReady chan struct{} // closed when the bridge is first ready
	readyOnce  sync.Once
}

// New checks cfg and prepares a bridge on nc. Nothing touches NATS before Run.
func New(nc *nats.Conn, factory Factory, cfg Config) (*Bridge, error) {
	if nc == nil {
		return nil, errors.New("bridge: nil NATS connection")
	}
	if factory == nil {
		return nil, errors.New("bridge: nil operator factory")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("bridge: metrics: %w", err)
	}
	nonce := make([]byte, 4)
	_, _ = rand.Read(nonce)
	b := &Bridge{
		cfg:      cfg,
		nc:       nc,
		js:       js,
		factory:  factory,
		log:      cfg.Logger,
		metrics:  m,
		tracer:   newTracer(cfg.TracerProvider),
		source:   events.SourceFor(cfg.Instance),
		owner:    cfg.Instance + "-" + hex.EncodeToString(nonce),
		inbox:    ForwardPrefix + hex.EncodeToString(nonce),
		manager:  operator.NewManager(),
		envs:     newEnvSources(),
		keys:     newKeyQueues(perKeyQueue(cfg.MaxInFlight), maxHeld(cfg.MaxInFlight)),
		health:   newHealthBoard(),
		progress: newProgress(),
		tasks:    make(chan task),
		held:     make(chan struct{}, maxHeld(cfg.MaxInFlight)),
		unstored: newUnstored(),
		stopping: make(chan struct{}),

		firstReady: make(chan struct{}),
	}
	b.rollouts = newRollouts(b) // rollout tracking (issue 12)
	b.circuits = newCircuits(circuitThreshold, circuitCoolDown, func(endpoint string, s circuitState) {
		m.circuit.WithLabelValues(endpoint).Set(float64(s))
		b.log.Warn("operator circuit", "endpoint", endpoint, "state", s.String())
	})
	return b, nil
}

// maxHeld bounds the messages the bridge holds (delivered, not yet settled):
// its workers' and four times as many waiting in key queues. All key queues
// together may take that much too: when the bridge holds that much, the
// consumer stops pulling (pull), so no request is sent back for want of
// room and comes back after newer ones of its key. Only a key's own queue,
// full, sends requests back: a hot key never fills the bridge.
func maxHeld(maxInFlight int) int { return 5 * maxInFlight }

// perKeyQueue bounds one key's queue: keyQueueLen, or less when MaxInFlight
// is small, so a key's owner and queue leave room for MaxInFlight requests
// of other keys.
func perKeyQueue(maxInFlight int) int {
	return min(keyQueueLen, maxHeld(maxInFlight)-maxInFlight-1)
}

// afterWork is the part of a shutdown grace kept for what follows the
// in-flight requests: freeing order leases (sweepTimeout) and closing the
// ops server.
func afterWork(grace time.Duration) time.Duration { return min(3*time.Second, grace/4) }

// Circuit settings: a few consecutive unavailable answers open an endpoint's
// circuit; after the cool-down one probe call is let through.
const (
	circuitThreshold = 5
	circuitCoolDown  = 5 * time.Second
)

// Manager is the live environment → operator table.
func (b *Bridge) Manager() *operator.Manager { return b.manager }

// Ready reports whether the bridge is connected to NATS with its consumers in
// place and its environments loaded (what /readyz answers).
func (b *Bridge) Ready() bool {
	if !b.nc.IsConnected() || !b.envsLoaded.Load() {
		return false
	}
	for _, stream := range []string{events.StreamDeploy, events.StreamStatus} {
		v, ok := b.consumers.Load(stream)
		if !ok || !v.(*atomic.Bool).Load() {
			return false
		}
	}
	return true
}

func (b *Bridge) setConsumerReady(stream string, ok bool) {
	v, _ := b.consumers.LoadOrStore(stream, new(atomic.Bool))
	v.(*atomic.Bool).Store(ok)
	if ok && b.Ready() {
		b.readyOnce.Do(func() { close(b.firstReady) })
	}
}

// Run sets up streams, buckets and consumers, then handles requests until ctx
// ends. It then stops fetching, lets in-flight requests finish within
// ShutdownGrace, naks what has not started, and returns nil once every
// goroutine it started has stopped.
func (b *Bridge) Run(ctx context.Context) error {
	if err := b.setupStreams(ctx); err != nil {
		return err
	}
	if err := b.rollouts.setup(ctx); err != nil { // rollout tracking (issue 12)
		return err
	}
	if err := b.loadEnvironments(ctx); err != nil {
		return err
	}
	// Consumers exist before Run goes on, so a start-up problem is an error.
	for _, stream := range []string{events.StreamDeploy, events.StreamStatus} {
		if _, err := b.ensureConsumer(ctx, stream); err != nil {
			return err
		}
	}
	svc, err := b.startService(ctx)
	if err != nil {
		return err
	}
	var srv *http.Server
	var serving sync.WaitGroup
	// The status page follows the streams until ctx ends (or Run returns
	// early), then closes its live connections, so the server's shutdown
	// does not wait on them.
	pageCtx, stopPage := context.WithCancel(ctx)
	var paging sync.WaitGroup
	defer func() { stopPage(); paging.Wait() }()
	if b.cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", b.cfg.HTTPAddr)
		if err != nil {
			_ = svc.Stop()
			return fmt.Errorf("ops HTTP address (Config.HTTPAddr) %s: %w", b.cfg.HTTPAddr, err)
		}
		page, err := statuspage.New(statuspage.Config{
			JetStream: b.js, Environments: b.environmentInfos, SignOut: b.cfg.OpsToken != "", Logger: b.log,
		})
		if err != nil {
			_ = ln.Close()
			_ = svc.Stop()
			return err
		}
		srv = &http.Server{Handler: b.opsHandler(page), ReadHeaderTimeout: 5 * time.Second}
		paging.Go(func() { _ = page.Run(pageCtx) })
		serving.Go(func() { _ = srv.Serve(ln) })
	}

	// work outlives ctx by the shutdown grace: in-flight requests finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	b.runWorkers(work)
	stopForwards, err := b.listen(b.inbox)
	if err != nil {
		close(b.tasks)
		_ = svc.Stop()
		if srv != nil {
			_ = srv.Close()
			serving.Wait()
		}
		return err
	}

	// The keeper outlives the consumers: it reports in-flight messages in
	// progress until they finish, frees idle keys' order leases after their
	// linger, and all of them once the work is done.
	var keeper sync.WaitGroup
	keepCtx, stopKeeper := context.WithCancel(context.WithoutCancel(ctx)) // not work: it must outlast the cancelled requests
	keeper.Go(func() { b.progress.run(keepCtx, b.cfg.AckWait/3) })
	// The sweeper frees idle keys' leases; a request that queues for a key
	// while its lease is being freed is then run here.
	keeper.Go(func() {
		b.order.runSweeper(keepCtx, func(key string) (func(), bool) {
			if !b.keys.tryOwn(key) {
				return nil, false
			}
			return func() {
				if j := b.keys.next(key); j != nil {
					keeper.Go(func() { b.runKey(work, j) })
				}
			}, true
		})
	})

	var loops sync.WaitGroup
	loops.Go(func() { b.consumeLoop(ctx, events.StreamDeploy, b.handleDeploy) })
	loops.Go(func() { b.consumeLoop(ctx, events.StreamStatus, b.handleStatusQuery) })
	loops.Go(func() { b.healthLoop(ctx) })
	loops.Go(func() { b.rollouts.run(ctx) }) // rollout tracking (issue 12)
	if b.envKV != nil {
		loops.Go(func() { b.watchEnvironments(ctx) })
	}
	b.log.Info("bridge running", "instance", b.cfg.Instance, "environments", b.manager.Len(),
		"max_in_flight", b.cfg.MaxInFlight, "http", b.cfg.HTTPAddr)

	<-ctx.Done()
	// Everything below ends within the grace: in-flight requests get it
	// less what freeing leases and closing the ops server need after them.
	stopBy := time.Now().Add(b.cfg.ShutdownGrace)
	close(b.stopping)
	b.log.Info("bridge stopping", "grace", b.cfg.ShutdownGrace)
	stopForwards() // nothing forwarded starts now
	loops.Wait()   // consumers drained: nothing new starts
	close(b.tasks) // the workers end once they are done

	done := make(chan struct{})
	go func() { b.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(stopBy.Add(-afterWork(b.cfg.ShutdownGrace)))):
		b.log.Warn("shutdown grace spent: cancelling in-flight requests")
		cancelWork()
		<-done
	}
	stopKeeper()
	keeper.Wait()
	_ = svc.Stop()
	if srv != nil {
		sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), stopBy)
		defer cancel()
		_ = srv.Shutdown(sctx)
		serving.Wait()
	}
	b.log.Info("bridge stopped")
	return nil
}

// handler handles one message; it owns the message's acknowledgement, and
// calls release once the message is settled (which may be after it returns:
// a deploy request that waits for its key).
type handler func(ctx context.Context, m jetstream.Msg)

// task is a message for a worker and what handles it.
type task struct {
	m jetstream.Msg
	h handler
}

// runWorkers starts the MAX_IN_FLIGHT workers, which handle tasks under work
// until tasks is closed. A fixed set of workers keeps the stacks they grew,
// where a goroutine per message would grow one anew each time.
func (b *Bridge) runWorkers(work context.Context) {
	for range b.cfg.MaxInFlight {
		b.workers.Go(func() {
			for t := range b.tasks {
				t.h(work, t.m)
			}
		})
	}
}

// dispatch hands m to a worker once the bridge has room for it, keeping it
// in progress from the moment it is delivered; when the bridge stops first,
// m is nak'd. While the bridge holds as many messages as its workers and key
// queues take, dispatch waits for room.
func (b *Bridge) dispatch(m jetstream.Msg, h handler) {
	b.hold(m)
	select {
	case b.held <- struct{}{}:
	case <-b.stopping:
		_ = m.Nak()
		b.unhold(m)
		return
	}
	select {
	case b.tasks <- task{m: m, h: h}:
	case <-b.stopping:
		_ = m.Nak()
		b.release(m)
	}
}

// hold counts a message as the bridge's from the moment it is delivered: it
// is reported in progress until release.
func (b *Bridge) hold(m jetstream.Msg) {
	b.metrics.inFlight.Inc()
	b.progress.add(m)
}

// unhold ends what hold began.
func (b *Bridge) unhold(m jetstream.Msg) {
	b.progress.remove(m)
	b.metrics.inFlight.Dec()
}

// release ends what dispatch began.
func (b *Bridge) release(m jetstream.Msg) {
	b.unhold(m)
	<-b.held
}

// room waits until the bridge has room for least more messages, and says
// for how many, up to most; 0 when stop ends first.
func (b *Bridge) room(stop <-chan struct{}, least, most int) int {
	n := 0
	defer func() { // a count only: the room is not kept
		for range n {
			<-b.held
		}
	}()
	for n < least {
		select {
		case b.held <- struct{}{}:
			n++
		case <-stop:
			return 0
		}
	}
	for n < most {
		select {
		case b.held <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// Pull requests: each lasts pullWait, of which the server waits for
// messages all but a tenth (so its end, not the client's deadline, closes
// the fetch), and sends a heartbeat every pullHeartbeat while it has none: a
// request lost with a connection or a server is noticed within two. After
// an error the next request waits pullPause.
const (
	pullWait      = 5 * time.Second
	pullHeartbeat = time.Second
	pullPause     = 250 * time.Millisecond
)

// consumeLoop consumes stream's durable consumer until stop ends, handing
// each message to h on a worker within the bridge's bounds. A consumer that
// disappears (deleted, stream recreated) is created again.
func (b *Bridge) consumeLoop(stop context.Context, stream string, h handler) {
	for {
		cons, err := b.ensureConsumer(stop, stream)
		if err != nil {
			b.setConsumerReady(stream, false)
			if stop.Err() != nil {
				return
			}
			b.log.Error("consumer", "stream", stream, "err", err)
			if !sleep(stop, time.Second) {
				return
			}
			continue
		}
		lost := make(chan struct{}, 1) // one pending signal is enough
		signal := func() {
			select {
			case lost <- struct{}{}:
			default:
			}
		}
		b.setConsumerReady(stream, true)
		recreate := b.watchConsumer(stop, cons, signal)
		b.pull(stop, stream, cons, h, lost)
		recreate()
		if stop.Err() != nil {
			return
		}
		b.setConsumerReady(stream, false)
		b.log.Warn("consumer lost: creating it again", "stream", stream)
	}
}

// pull fetches cons's messages for h while the bridge has room for them,
// until stop ends or the consumer is lost. Each pull request asks for as
// many messages as the bridge has room for when it is sent (an idle request
// keeps none of that room from the other stream). A delivered message is
// kept in progress at once and goes to a worker as soon as there is room:
// nothing waits unseen in a client buffer while its ack wait runs out.
//
// A loop of Fetch rather than Consume: nats.go's Consume (v1.55 and v1.56)
// skips its refill check while its previous pull request is still being
// sent; when the last messages of a batch are handled in that moment, it
// pulls nothing more until its missed-heartbeat check 30 s later, with
// messages waiting (bench showed such 30 s stalls). A fetch is one pull
// request with nothing carried over to the next.
func (b *Bridge) pull(stop context.Context, stream string, cons jetstream.Consumer, h handler, lost <-chan struct{}) {
	most := b.cfg.MaxInFlight
	least := max(1, most/8) // no request for a few messages while the bridge is full
	for {
		n := b.room(stop.Done(), least, most)
		if n == 0 {
			return
		}
		// Stopping ends the request at once: its subscription goes, and
		// with it the server's interest in delivering to it.
		ctx, cancel := context.WithTimeout(stop, pullWait)
		batch, err := cons.Fetch(n, jetstream.FetchContext(ctx), jetstream.FetchHeartbeat(pullHeartbeat))
		if err != nil {
			cancel()
			b.pullFailed(stream, err)
			if !sleep(stop, pullPause) {
				return
			}
			continue
		}
		b.take(batch, h)
		cancel()
		err = batch.Error()
		switch {
		case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, jetstream.ErrConsumerLeadershipChanged):
		case stop.Err() != nil:
			return
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			return
		default:
			b.pullFailed(stream, err)
			if !sleep(stop, pullPause) {
				return
			}
		}
		select {
		case <-lost:
			return
		default:
		}
	}
}

// pullFailed logs a failed pull request: a warning while connected, and
// only at debug level while NATS is away (which is said when it happens).
func (b *Bridge) pullFailed(stream string, err error) {
	level := slog.LevelWarn
	if !b.nc.IsConnected() {
		level = slog.LevelDebug
	}
	b.log.Log(context.Background(), level, "pull request", "stream", stream, "err", err)
}

// take hands batch's messages to h; once the bridge is stopping, they are
// nak'd for another replica to take.
func (b *Bridge) take(batch jetstream.MessageBatch, h handler) {
	for m := range batch.Messages() {
		if b.isStopping() {
			_ = m.Nak()
			continue
		}
		b.dispatch(m, h)
	}
}

// watchConsumer checks every few seconds that cons still exists and signals
// when it does not; the returned func stops the check.
func (b *Bridge) watchConsumer(ctx context.Context, cons jetstream.Consumer, lost func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := cons.Info(ictx)
			icancel()
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				lost()
				return
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (b *Bridge) isStopping() bool {
	select {
	case <-b.stopping:
		return true
	default:
		return false
	}
}

// startService registers the operator-bridge micro service (docs/contract.md, Request/reply).
func (b *Bridge) startService(ctx context.Context) (micro.Service, error) {
	svc, err := micro.AddService(b.nc, micro.Config{
		Name:        ServiceName,
		Version:     b.cfg.Version,
		Description: "operator-bridge: status of apps and environments, answered at once",
	})
	if err != nil {
		return nil, fmt.Errorf("micro service: %w", err)
	}
	g := svc.AddGroup(ServiceName)
	if err := g.AddEndpoint("status", micro.HandlerFunc(func(r micro.Request) { b.serveStatus(ctx, r) }), micro.WithEndpointSubject("status.*")); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("micro endpoint status: %w", err)
	}
	if err := g.AddEndpoint("environments", micro.HandlerFunc(b.serveEnvironments)); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("micro endpoint environments: %w", err)
	}
	return svc, nil
}
