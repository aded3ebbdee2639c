// Package natsembed runs a nats-server with JetStream inside the process.
//
// It serves two callers with one piece of code: the bridge's embedded default
// (OPERATOR_BRIDGE_NATS_URL empty), and every test that needs a real
// JetStream (see [Start] with Listen "127.0.0.1:-1" and a t.TempDir()).
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says where the embedded server listens and stores its streams.
// The zero value listens on a random loopback port and stores JetStream
// data in a temporary folder chosen by nats-server.
type Config struct {
	// Listen is host:port; port -1 or 0 picks a free port. Default 127.0.0.1:-1.
	Listen string
	// StoreDir holds JetStream's file storage.
	StoreDir string
	// ServerName names the server (default "operator-bridge-embedded").
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept connections (default 10s).
	ReadyTimeout time.Duration
}

// Server is a running embedded nats-server.
type Server struct {
	*server.Server
}

// Start starts a nats-server with JetStream and waits until it accepts
// connections. The caller stops it with Shutdown (and WaitForShutdown).
func Start(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:-1"
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "operator-bridge-embedded"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	host, portText, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen port %q: %w", portText, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// Leave room for events up to the bridge's own size limit and headers.
		MaxPayload: 8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	// Start directly (not `go s.Start()`): it returns once the listeners are
	// up, which keeps TCP readiness fast.
	s.Start()
	if !s.ReadyForConnections(cfg.ReadyTimeout) {
		s.Shutdown()
		return nil, errors.New("embedded nats: server did not become ready (is " + cfg.Listen + " in use?)")
	}
	return &Server{Server: s}, nil
}

// Stop shuts the server down and waits until it has stopped.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}
