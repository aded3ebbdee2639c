package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// ErrClientClosed is returned by calls waiting on a Client that was closed.
var ErrClientClosed = errors.New("events: client closed")

// Client publishes deploy requests and waits for their results, asks for
// status over the bridge's request/reply endpoint, and watches results and
// health events. It speaks only the contract, for master-service and
// scripts; it does not depend on the bridge. It is safe for concurrent use.
//
// The Client does not own the connection: Close it, then the connection.
type Client struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	source  string
	timeout time.Duration
	enc     encoder
	// lookupAfter is how long Deploy waits for a live result before it also
	// looks for a stored one (5 s).
	lookupAfter time.Duration

	mu      sync.Mutex
	closed  bool
	done    chan struct{}                  // closed by Close
	subs    map[string]*envSub             // env -> its deploy.result.<env> subscription
	waiters map[string][]chan DeployResult // request id -> Deploy calls waiting for its result
}

// envSub is one environment's result subscription, shared by the Deploy
// calls waiting on that environment and dropped when the last returns.
type envSub struct {
	sub   *nats.Subscription
	users int
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithSource sets the CloudEvent source of the events the client sends, a
// URI-reference such as "/master-service/eu-1". The default is
// "/operator-bridge-client/<host name>".
func WithSource(source string) ClientOption {
	return func(c *Client) { c.source = source }
}

// WithRequestTimeout bounds Status and Environments calls whose context has
// no deadline (default 15s, a little more than the bridge's default
// operator timeout). Deploy waits as long as its context allows: a deploy
// may be retried by the bridge for its whole retry window.
func WithRequestTimeout(d time.Duration) ClientOption {
	return func(c *Client) { c.timeout = d }
}

// NewClient returns a Client using nc.
func NewClient(nc *nats.Conn, opts ...ClientOption) (*Client, error) {
	if nc == nil {
		return nil, errors.New("events: NewClient: nil connection")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("events: NewClient: %w", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	c := &Client{
		nc:      nc,
		js:      js,
		source:  "/operator-bridge-client/" + host,
		timeout: 15 * time.Second,
		enc:     defaultEncoder,

		lookupAfter: 5 * time.Second,
		done:        make(chan struct{}),
		subs:        map[string]*envSub{},
		waiters:     map[string][]chan DeployResult{},
	}
	for _, opt := range opts {
		opt(c)
	}
	if c.source == "" {
		return nil, errors.New("events: NewClient: empty source")
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("events: NewClient: request timeout %v is not positive", c.timeout)
	}
	return c, nil
}

// Close stops the client's subscriptions; Deploy calls still waiting
// return ErrClientClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.done)
	var errs []error
	for env, s := range c.subs {
		if err := s.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, fmt.Errorf("unsubscribe %s: %w", DeployResultSubject(env), err))
		}
	}
	clear(c.subs)
	return errors.Join(errs...)
}

// PublishDeploy publishes a deploy request for env through JetStream with
// Nats-Msg-Id set to its id, waits for the stream to store it, and returns
// its id without waiting for the result. Sending again with WithID and the
// same id inside the duplicate window (2 minutes) stores it once; Deploy sent again so then
// answers with the result stored for the first copy.
func (c *Client) PublishDeploy(ctx context.Context, env string, req DeployRequest, opts ...EventOption) (string, error) {
	msg, id, err := c.enc.deployRequest(c.source, env, req, opts...)
	if err != nil {
		return "", err
	}
	if err := c.publish(ctx, msg); err != nil {
		return id, err
	}
	return id, nil
}

// Deploy publishes a deploy request for env like PublishDeploy and waits
// for its result: the deploy.result.<env> event whose requestid is the
// request's id. It listens before it publishes, so the result cannot be
// missed; and when the live result does not come within a few seconds (it
// may have been published while the connection was down), or the request
// was a duplicate of one already stored, it also reads the stored results
// from the request's place in the stream. A failed, rejected or superseded
// deploy is a result, not an
// error; the error is for what kept the result from coming (publishing
// failed, ctx done, client closed).
func (c *Client) Deploy(ctx context.Context, env string, req DeployRequest, opts ...EventOption) (DeployResult, error) {
	msg, id, err := c.enc.deployRequest(c.source, env, req, opts...)
	if err != nil {
		return DeployResult{}, err
	}
	release, err := c.listen(ctx, env)
	if err != nil {
		return DeployResult{}, err
	}
	defer release()
	ch := c.wait(id)
	defer c.unwait(id, ch)
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		return DeployResult{}, fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	// The stored result is the truth when the live one may have been
	// missed: at once when the request was a duplicate (sent again within
	// the duplicate window, JetStream kept the first copy, whose result may
	// be stored already), and after a while otherwise (a result published
	// while this connection was down never reaches the subscription).
	// Either way the search starts at the request's place in the stream.
	lookup := time.NewTimer(c.lookupAfter)
	defer lookup.Stop()
	if ack.Duplicate {
		lookup.Reset(0)
	}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	for {
		select {
		case r := <-ch:
			return r, nil
		case <-lookup.C:
			go c.findStored(fctx, env, id, ack.Sequence, ch)
			continue
		case <-ctx.Done():
			return DeployResult{}, fmt.Errorf("deploy %s to %s: waiting for the result: %w", id, env, ctx.Err())
		case <-c.done:
			return DeployResult{}, fmt.Errorf("deploy %s to %s: %w", id, env, ErrClientClosed)
		}
	}
}

func (c *Client) publish(ctx context.Context, msg *nats.Msg) error {
	if _, err := c.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	return nil
}

// listen makes sure the client is subscribed to env's results until the
// returned release is called; the last release unsubscribes. The lock is
// not held across the network: the flush that confirms a new subscription
// runs outside it, and ends when the client is closed.
func (c *Client) listen(ctx context.Context, env string) (release func(), err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClientClosed
	}
	if s, ok := c.subs[env]; ok {
		// Its SUB went out before this call's request will: the server
		// handles a connection's messages in order.
		s.users++
		c.mu.Unlock()
		return c.releaser(env, s), nil
	}
	sub, err := c.nc.Subscribe(DeployResultSubject(env), c.onResult)
	if err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("subscribe %s: %w", DeployResultSubject(env), err)
	}
	// Results arrive at the subscription's own pace; many Deploy calls to
	// one environment share it, so do not let the default limits drop them.
	_ = sub.SetPendingLimits(-1, 64<<20)
	s := &envSub{sub: sub, users: 1}
	c.subs[env] = s
	c.mu.Unlock()
	release = c.releaser(env, s)

	// The server handles a connection's messages in order, so the request
	// published after this is seen after the subscription; the flush makes
	// a failed subscription an error here rather than a silent timeout.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := c.flush(ctx); err != nil {
		release()
		if c.isClosed() {
			return nil, ErrClientClosed
		}
		return nil, fmt.Errorf("subscribe %s: %w", DeployResultSubject(env), err)
	}
	return release, nil
}

// releaser returns the func that ends one Deploy call's use of s.
func (c *Client) releaser(env string, s *envSub) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			s.users--
			if s.users == 0 && c.subs[env] == s {
				delete(c.subs, env)
				_ = s.sub.Unsubscribe() // queues UNSUB; no wait on the server
			}
		})
	}
}

func (c *Client) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *Client) flush(ctx context.Context) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return c.nc.FlushWithContext(ctx)
}

func (c *Client) wait(id string) chan DeployResult {
	ch := make(chan DeployResult, 1) // one result per waiter; never blocks onResult
	c.mu.Lock()
	c.waiters[id] = append(c.waiters[id], ch)
	c.mu.Unlock()
	return ch
}

func (c *Client) unwait(id string, ch chan DeployResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(c.waiters, id)
	} else {
		c.waiters[id] = ws
	}
}

// onResult hands a result to the Deploy calls waiting for it. Results of
// requests nobody here waits for (other publishers', or duplicates) are
// dropped.
func (c *Client) onResult(m *nats.Msg) {
	e, r, err := DecodeDeployResult(m.Header, m.Data)
	if err != nil {
		return
	}
	id := resultRequestID(e.Extensions(), r)
	c.mu.Lock()
	ws := c.waiters[id]
	delete(c.waiters, id)
	c.mu.Unlock()
	for _, w := range ws {
		select {
		case w <- r:
		default: // the stored result was first; never block the subscription
		}
	}
}

// findStored reads env's stored results from stream sequence from on until
// it finds the one of request id, and hands it to ch, or until ctx ends.
func (c *Client) findStored(ctx context.Context, env, id string, from uint64, ch chan DeployResult) {
	cons, err := c.js.OrderedConsumer(ctx, StreamDeploy, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{DeployResultSubject(env)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
		// Gone soon after the look ends, not after nats.go's 5 minutes: a
		// busy publisher must not pile consumers up on DEPLOY.
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return // the live subscription may still bring it
	}
	it, err := cons.Messages(jetstream.PullHeartbeat(followHeartbeat))
	if err != nil {
		return
	}
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		m, err := it.Next()
		if err != nil {
			return
		}
		e, r, err := DecodeDeployResult(m.Headers(), m.Data())
		if err != nil {
			continue
		}
		if rid, _ := e.Extensions()[ExtRequestID].(string); rid == id || r.RequestID == id {
			select {
			case ch <- r:
			default: // the live subscription was first
			}
			return
		}
	}
}

// Status asks the bridge for app's status in env over its request/reply
// endpoint operator-bridge.status.<env>, sending a status.query event, and
// decodes the status.result event it answers. An operator failure is a
// degraded result, not an error.
func (c *Client) Status(ctx context.Context, env, app string) (StatusResult, error) {
	q, id, err := c.enc.statusQuery(c.source, env, app)
	if err != nil {
		return StatusResult{}, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req := &nats.Msg{Subject: StatusEndpointSubject(env), Header: q.Header, Data: q.Data}
	reply, err := c.request(ctx, req)
	if err != nil {
		return StatusResult{}, err
	}
	e, r, err := DecodeStatusResult(reply.Header, reply.Data)
	if err != nil {
		return StatusResult{}, fmt.Errorf("%s: reply: %w", req.Subject, err)
	}
	if rid, ok := e.Extensions()[ExtRequestID].(string); ok && rid != id {
		return StatusResult{}, fmt.Errorf("%s: reply answers request %q, not %q", req.Subject, rid, id)
	}
	return r, nil
}

// Environments lists the environments registered with the bridge, through
// its operator-bridge.environments endpoint.
func (c *Client) Environments(ctx context.Context) ([]EnvironmentInfo, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	reply, err := c.request(ctx, &nats.Msg{Subject: SubjectEnvironments})
	if err != nil {
		return nil, err
	}
	var envs []EnvironmentInfo
	if err := json.Unmarshal(reply.Data, &envs); err != nil {
		return nil, fmt.Errorf("%s: reply: %w", SubjectEnvironments, err)
	}
	return envs, nil
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// request sends a request and turns a micro service error reply into an
// error.
func (c *Client) request(ctx context.Context, msg *nats.Msg) (*nats.Msg, error) {
	reply, err := c.nc.RequestMsgWithContext(ctx, msg)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%s: no bridge answers: %w", msg.Subject, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", msg.Subject, err)
	}
	if desc := reply.Header.Get(micro.ErrorHeader); desc != "" {
		return nil, fmt.Errorf("%s: bridge error %s: %s", msg.Subject, reply.Header.Get(micro.ErrorCodeHeader), desc)
	}
	return reply, nil
}
