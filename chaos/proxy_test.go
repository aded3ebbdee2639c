package chaos

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// echoServer echoes every line back, on loopback, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					c.Write([]byte(sc.Text() + "\n"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// deadAddr is a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestProxy(t *testing.T) {
	p, err := NewProxy([]string{deadAddr(t), echoServer(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	roundTrip := func(line string, wait time.Duration) (string, error) {
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(wait))
		got, err := r.ReadString('\n')
		return strings.TrimSpace(got), err
	}

	if got, err := roundTrip("hello", 10*time.Second); got != "hello" || err != nil {
		t.Fatalf("through the proxy (first target dead): %q, %v", got, err)
	}

	p.Stall(true)
	if got, err := roundTrip("stalled", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("while stalled got %q, %v; want nothing", got, err)
	}
	p.Stall(false)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := r.ReadString('\n'); strings.TrimSpace(got) != "stalled" || err != nil {
		t.Fatalf("after the stall: %q, %v; want the line held back", got, err)
	}

	p.Delay(50 * time.Millisecond)
	for _, line := range []string{"one", "two", strings.Repeat("x", 50_000)} {
		if got, err := roundTrip(line, 10*time.Second); got != line || err != nil {
			t.Fatalf("delayed: %.20q, %v; want %.20q", got, err, line)
		}
	}
}

func TestProxyWithoutTargetsClosesConnections(t *testing.T) {
	p, err := NewProxy([]string{deadAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read = %v, want the connection closed", err)
	}
}
