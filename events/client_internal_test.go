package events

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// resultFor makes the deploy result event of request id in env.
func resultFor(t *testing.T, env, id string) *nats.Msg {
	t.Helper()
	req, _, err := NewDeployRequest("/test", env, DeployRequest{App: "app", Version: "v1"}, WithID(id))
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := DecodeDeployRequest(req.Subject, req.Header, req.Data)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := NewDeployResult(SourceFor("test-bridge"), e, 1, DeployResult{App: "app", Version: "v1", Operator: "mock", Outcome: Succeeded, Success: true, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// A waiter whose one slot is already full (the stored result came first)
// must not stop the environment's subscription: later results still come.
func TestClientSubscriptionNotWedgedByAFullWaiter(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)
	pub, _ := connect(t, url)
	release, err := c.listen(t.Context(), "env-w")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	first := c.wait("req-1")
	first <- DeployResult{Message: "found stored"} // what findStored does when it is first
	if err := pub.PublishMsg(resultFor(t, "env-w", "req-1")); err != nil {
		t.Fatal(err)
	}
	second := c.wait("req-2")
	if err := pub.PublishMsg(resultFor(t, "env-w", "req-2")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-second:
		if r.RequestID != "req-2" {
			t.Fatalf("second waiter got %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription is wedged: the result of req-2 never came")
	}
}

// The client's subscriptions follow the Deploy calls waiting: none is left
// once they have returned.
func TestClientUnsubscribesWhenNoDeployWaits(t *testing.T) {
	url := startJetStream(t)
	respondDeploys(t, url)
	c := newClient(t, url)
	var wg sync.WaitGroup
	for _, env := range []string{"env-1", "env-2", "env-3"} {
		for range 5 {
			wg.Go(func() {
				if _, err := c.Deploy(t.Context(), env, DeployRequest{App: "app", Version: "v1"}); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	c.mu.Lock()
	left := len(c.subs)
	c.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d environment subscriptions left after every Deploy returned", left)
	}
	if n := c.nc.NumSubscriptions(); n > 1 { // JetStream's reply inbox may stay
		t.Fatalf("%d subscriptions on the connection after every Deploy returned", n)
	}
}

// stallProxy forwards a TCP connection to NATS and can hold back what the
// server sends, so that a flush never gets its answer.
type stallProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool
	sent    bytes.Buffer // what the client sent
	conns   []net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln}
	p.cond = sync.NewCond(&p.mu)
	addr := target[len("nats://"):]
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", addr)
			if err != nil {
				client.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, client, server)
			p.mu.Unlock()
			go p.pipe(server, client, false)
			go p.pipe(client, server, true)
		}
	}()
	t.Cleanup(func() {
		p.resume()
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *stallProxy) pipe(from, to net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if fromClient {
				p.sent.Write(buf[:n])
			}
			for !fromClient && p.stalled {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				to.Close()
			}
			return
		}
	}
}

func (p *stallProxy) stall() { p.mu.Lock(); p.stalled = true; p.mu.Unlock() }

func (p *stallProxy) resume() {
	p.mu.Lock()
	p.stalled = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *stallProxy) clientSent(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Contains(p.sent.Bytes(), []byte(s))
}

func (p *stallProxy) url() string { return "nats://" + p.ln.Addr().String() }

// A flush that gets no answer holds no lock: Close goes on, and the Deploy
// waiting on the flush returns ErrClientClosed.
func TestClientCloseWhileASubscriptionFlushHangs(t *testing.T) {
	url := startJetStream(t)
	p := newStallProxy(t, url)
	nc, _ := connect(t, p.url())
	c, err := NewClient(nc, WithSource("/master-service/test"), WithRequestTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p.stall()
	deployed := make(chan error, 1)
	go func() {
		_, err := c.Deploy(t.Context(), "env-a", DeployRequest{App: "app", Version: "v1"})
		deployed <- err
	}()
	for !p.clientSent("SUB deploy.result.env-a") {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a flush that gets no answer")
	}
	select {
	case err := <-deployed:
		if !errors.Is(err, ErrClientClosed) {
			t.Fatalf("Deploy after Close = %v, want ErrClientClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Deploy still waiting on its flush after Close")
	}
}
