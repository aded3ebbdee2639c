package chaos

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on loopback in front of a set of servers: each
// connection it accepts goes to the first of them (round robin) that
// answers. It can stall its connections (stop forwarding, in both
// directions, without closing anything) and delay them (every byte arrives
// that much later).
type Proxy struct {
	ln      net.Listener
	targets []string

	mu      sync.Mutex
	next    int
	stalled bool
	resume  chan struct{} // closed when a stall ends
	delay   time.Duration
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// NewProxy listens on a free loopback port in front of targets (host:port).
func NewProxy(targets []string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, targets: targets, resume: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stall stops (on) or resumes (off) forwarding on every connection.
func (p *Proxy) Stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on == p.stalled {
		return
	}
	p.stalled = on
	if on {
		p.resume = make(chan struct{})
	} else {
		close(p.resume)
	}
}

// Delay makes every byte forwarded from now on arrive d later (0: none).
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Close stops accepting, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := p.dial()
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			in.Close()
			out.Close()
			return
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// dial connects to the next target that answers.
func (p *Proxy) dial() (net.Conn, error) {
	p.mu.Lock()
	start := p.next
	p.next = (p.next + 1) % len(p.targets)
	p.mu.Unlock()
	var errs []error
	for i := range p.targets {
		c, err := net.DialTimeout("tcp", p.targets[(start+i)%len(p.targets)], time.Second)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

type chunk struct {
	data []byte
	at   time.Time // when it was read
}

// pipe copies src to dst through the stall gate and the delay; when either
// side ends, both connections are closed.
func (p *Proxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	chunks := make(chan chunk, 256)
	done := make(chan struct{})
	go func() { // reader
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{buf[:n], time.Now()}:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		close(done)
		src.Close()
		dst.Close()
		p.untrack(src)
		p.untrack(dst)
		for range chunks { // let the reader end
		}
	}()
	for c := range chunks {
		for {
			p.mu.Lock()
			stalled, resume, delay := p.stalled, p.resume, p.delay
			p.mu.Unlock()
			if stalled {
				<-resume
				continue
			}
			if wait := time.Until(c.at.Add(delay)); wait > 0 {
				time.Sleep(wait)
				continue // the stall may have begun meanwhile
			}
			break
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}
