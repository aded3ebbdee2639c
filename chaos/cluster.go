package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a NATS cluster of in-process nats-servers with JetStream,
// routed on loopback. A node that is shut down can be started again on the
// same ports and store folder.
type Cluster struct {
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	name       string
	clientPort int
	opts       server.Options // template, copied for every start
	srv        *server.Server // nil while down
}

// StartCluster starts n nodes with their store folders and logs under dir.
func StartCluster(dir string, n int) (*Cluster, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	c := &Cluster{}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		c.nodes = append(c.nodes, &clusterNode{
			name:       name,
			clientPort: ports[i],
			opts: server.Options{
				ServerName: name,
				Host:       "127.0.0.1",
				Port:       ports[i],
				JetStream:  true,
				StoreDir:   filepath.Join(dir, name),
				LogFile:    filepath.Join(dir, name+".log"),
				NoSigs:     true,
				MaxPayload: 8 << 20,
				Cluster: server.ClusterOpts{
					Name: "chaos",
					Host: "127.0.0.1",
					Port: ports[n+i],
					// Clients learn no other servers, so a bridge behind a
					// proxy reconnects through the proxy.
					NoAdvertise: true,
				},
				Routes: server.RoutesFromStr(strings.Join(routes, ",")),
			},
		})
	}
	for i := range c.nodes {
		if err := c.Start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Size returns the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// Name returns node i's server name.
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Index returns the index of the node named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// Addrs returns every node's client address, host:port.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = fmt.Sprintf("127.0.0.1:%d", n.clientPort)
	}
	return out
}

// URL returns the client URLs of every node, comma-separated.
func (c *Cluster) URL() string {
	var urls []string
	for _, a := range c.Addrs() {
		urls = append(urls, "nats://"+a)
	}
	return strings.Join(urls, ",")
}

// Start starts node i (again); it is a no-op when it runs.
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.srv != nil {
		return nil
	}
	opts := n.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("nats node %s: %w", n.name, err)
	}
	s.ConfigureLogger()
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats node %s: not ready for connections", n.name)
	}
	n.srv = s
	return nil
}

// Stop shuts node i down and waits until it has stopped.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Running reports whether node i runs.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv != nil
}

// StreamLeader returns the index of the node leading stream (in the global
// account), or -1 when no running node leads it.
func (c *Cluster) StreamLeader(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.nodes {
		if n.srv != nil && n.srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// WaitStreamLeader waits until some running node leads stream.
func (c *Cluster) WaitStreamLeader(ctx context.Context, stream string) (int, error) {
	for {
		if i := c.StreamLeader(stream); i >= 0 {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no leader of stream %s: %w", stream, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitMetaLeader waits until the cluster has elected its JetStream meta
// leader, so streams can be created.
func (c *Cluster) WaitMetaLeader(ctx context.Context) error {
	for {
		c.mu.Lock()
		for _, n := range c.nodes {
			if n.srv != nil && n.srv.JetStreamIsLeader() {
				c.mu.Unlock()
				return nil
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return errors.New("the NATS cluster elected no JetStream meta leader")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close shuts every node down.
func (c *Cluster) Close() {
	for i := range c.nodes {
		c.Stop(i)
	}
}
