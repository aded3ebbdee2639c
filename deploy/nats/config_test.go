// Package natsconfig_test keeps deploy/nats honest: the stream and consumer
// JSON files must be what the bridge creates, the .conf files must parse, and
// the users of users.conf must be able to do their job and no more.
//
//	go test ./deploy/nats/                 # check
//	go test ./deploy/nats/ -run Files -update  # rewrite the JSON files from the Go definitions
package natsconfig_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
)

var update = flag.Bool("update", false, "rewrite stream-*.json and consumer-*.json from events.StreamConfigs and bridge.ConsumerConfigs")

// The bridge's defaults (OPERATOR_BRIDGE_ACK_WAIT is not a variable; MAX_IN_FLIGHT is 256).
const (
	defaultAckWait     = 30 * time.Second
	defaultMaxInFlight = 256
)

var confFiles = []string{"nats-server.conf", "cluster/n1.conf", "cluster/n2.conf", "cluster/n3.conf"}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// loadOpts parses a .conf file with the server's own parser.
func loadOpts(t *testing.T, conf string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("%s: %v", conf, err)
	}
	return opts
}

// startNode runs a server from opts on a random client port, without the
// HTTP monitor, storing in a temporary folder.
func startNode(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Port = -1
	opts.HTTPPort = 0
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return s
}

func password(t *testing.T, opts *server.Options, user string) string {
	t.Helper()
	for _, u := range opts.Users {
		if u.Username == user {
			return u.Password
		}
	}
	t.Fatalf("no user %q in the configuration", user)
	return ""
}

// client is one user's connection; errs gets the asynchronous errors
// (permissions violations) the server reports.
type client struct {
	user string
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex
	errs []error
}

func connect(t *testing.T, s *server.Server, opts *server.Options, user string) *client {
	t.Helper()
	c := &client{user: user}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, password(t, opts, user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// violation waits for the server to report a permissions violation naming
// subject, and reports whether it came.
func (c *client) violation(subject string, d time.Duration) bool {
	want := fmt.Sprintf("%q", subject)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, err := range c.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// mustNotPublish publishes on subject and expects the server to refuse it.
func (c *client) mustNotPublish(t *testing.T, subject string) {
	t.Helper()
	if err := c.nc.Publish(subject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	_ = c.nc.Flush()
	if !c.violation(subject, 2*time.Second) {
		t.Errorf("%s could publish on %s", c.user, subject)
	}
}

// mustStore publishes on subject through JetStream and expects a PubAck.
func (c *client) mustStore(t *testing.T, subject string, body string) *jetstream.PubAck {
	t.Helper()
	ack, err := c.js.Publish(ctxT(t, 5*time.Second), subject, []byte(body))
	if err != nil {
		t.Fatalf("%s: publish %s: %v", c.user, subject, err)
	}
	return ack
}

// mustFail expects the JetStream call fn to fail: a refused API request
// gets no answer, so fn's context ends as soon as the server reports a
// permissions violation (or after a few seconds).
func (c *client) mustFail(t *testing.T, what string, fn func(ctx context.Context) error) {
	t.Helper()
	c.mu.Lock()
	seen := len(c.errs)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			c.mu.Lock()
			n := len(c.errs)
			c.mu.Unlock()
			if n > seen {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	if err := fn(ctx); err == nil {
		t.Errorf("%s could %s", c.user, what)
	}
}

// ---------------------------------------------------------------------------
// The .conf files.

func TestConfFilesParse(t *testing.T) {
	for _, conf := range confFiles {
		t.Run(conf, func(t *testing.T) {
			opts := loadOpts(t, conf)
			if !opts.JetStream {
				t.Error("JetStream is off")
			}
			if opts.MaxPayload != 8*1024*1024 {
				t.Errorf("max_payload = %d, want 8MB", opts.MaxPayload)
			}
			if opts.Host != "127.0.0.1" || opts.HTTPHost != "127.0.0.1" {
				t.Errorf("listen %s, http %s: want loopback", opts.Host, opts.HTTPHost)
			}
			if opts.StoreDir == "" {
				t.Error("no store_dir")
			}
			var users []string
			for _, u := range opts.Users {
				users = append(users, u.Username)
				if u.Password == "" {
					t.Errorf("user %s has no password", u.Username)
				}
			}
			sort.Strings(users)
			if diff := cmp.Diff([]string{"admin", "bridge", "master", "sys", "viewer"}, users); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
		})
	}
	single := loadOpts(t, "nats-server.conf")
	if single.Port != 4222 || single.HTTPPort != 8222 {
		t.Errorf("single node: client %d, http %d; want 4222, 8222", single.Port, single.HTTPPort)
	}
	dirs := map[string]bool{}
	for i, conf := range confFiles[1:] {
		opts := loadOpts(t, conf)
		if opts.Port != 4222+i || opts.Cluster.Port != 6222+i || opts.HTTPPort != 8222+i {
			t.Errorf("%s: ports %d/%d/%d, want %d/%d/%d", conf, opts.Port, opts.Cluster.Port, opts.HTTPPort, 4222+i, 6222+i, 8222+i)
		}
		if opts.Cluster.Name != "operator-bridge" || len(opts.Routes) != 3 {
			t.Errorf("%s: cluster %q with %d routes", conf, opts.Cluster.Name, len(opts.Routes))
		}
		dirs[opts.StoreDir] = true
	}
	if len(dirs) != 3 {
		t.Errorf("cluster nodes share store dirs: %v", dirs)
	}
}

// ---------------------------------------------------------------------------
// The JSON files: the same streams and consumers as the bridge creates.

// cleanMeta drops the metadata the server adds (_nats.*).
func cleanMeta(m map[string]string) map[string]string {
	for k := range m {
		if strings.HasPrefix(k, "_nats.") {
			delete(m, k)
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// setFieldsAgree reports the fields that the Go definition sets (non-zero)
// and the file has differently.
func setFieldsAgree(t *testing.T, def, file any) {
	t.Helper()
	d, f := reflect.ValueOf(def), reflect.ValueOf(file)
	for i := 0; i < d.NumField(); i++ {
		if d.Field(i).IsZero() {
			continue
		}
		if !reflect.DeepEqual(d.Field(i).Interface(), f.Field(i).Interface()) {
			t.Errorf("%s: Go definition %v, file %v", d.Type().Field(i).Name, d.Field(i).Interface(), f.Field(i).Interface())
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "deploy.>", not "deploy.\u003e"
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFiles: each stream-*.json / consumer-*.json is what the server makes
// of the bridge's definition (its fields plus the server's defaults), and
// creating from the file gives the very same configuration.
func TestFiles(t *testing.T) {
	opts := loadOpts(t, "nats-server.conf")
	s := startNode(t, opts)
	admin := connect(t, s, opts, "admin")
	ctx := ctxT(t, 30*time.Second)
	js := admin.js

	for _, def := range events.StreamConfigs() {
		t.Run("stream-"+def.Name, func(t *testing.T) {
			st, err := js.CreateStream(ctx, def)
			if err != nil {
				t.Fatal(err)
			}
			made := st.CachedInfo().Config
			made.Metadata = cleanMeta(made.Metadata)
			path := "stream-" + def.Name + ".json"
			if *update {
				writeJSON(t, path, made)
			}
			var file jetstream.StreamConfig
			readJSON(t, path, &file)
			setFieldsAgree(t, def, file)
			if diff := cmp.Diff(made, file); diff != "" {
				t.Errorf("%s differs from what the bridge creates (-bridge +file):\n%s", path, diff)
			}
			// Made from the file, the stream is the same.
			if err := js.DeleteStream(ctx, def.Name); err != nil {
				t.Fatal(err)
			}
			st, err = js.CreateStream(ctx, file)
			if err != nil {
				t.Fatalf("create from %s: %v", path, err)
			}
			again := st.CachedInfo().Config
			again.Metadata = cleanMeta(again.Metadata)
			if diff := cmp.Diff(made, again); diff != "" {
				t.Errorf("stream made from %s (-bridge +file):\n%s", path, diff)
			}
		})
	}

	for stream, def := range bridge.ConsumerConfigs(defaultAckWait, defaultMaxInFlight) {
		t.Run("consumer-"+def.Durable, func(t *testing.T) {
			c, err := js.CreateOrUpdateConsumer(ctx, stream, def)
			if err != nil {
				t.Fatal(err)
			}
			made := c.CachedInfo().Config
			made.Metadata = cleanMeta(made.Metadata)
			path := "consumer-" + def.Durable + ".json"
			if *update {
				writeJSON(t, path, made)
			}
			var file jetstream.ConsumerConfig
			readJSON(t, path, &file)
			setFieldsAgree(t, def, file)
			if diff := cmp.Diff(made, file); diff != "" {
				t.Errorf("%s differs from what the bridge creates (-bridge +file):\n%s", path, diff)
			}
			if err := js.DeleteConsumer(ctx, stream, def.Durable); err != nil {
				t.Fatal(err)
			}
			c, err = js.CreateConsumer(ctx, stream, file)
			if err != nil {
				t.Fatalf("create from %s: %v", path, err)
			}
			again := c.CachedInfo().Config
			again.Metadata = cleanMeta(again.Metadata)
			if diff := cmp.Diff(made, again); diff != "" {
				t.Errorf("consumer made from %s (-bridge +file):\n%s", path, diff)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Permissions on the single node.

func TestSingleNodePermissions(t *testing.T) {
	opts := loadOpts(t, "nats-server.conf")
	s := startNode(t, opts)
	ctx := ctxT(t, 60*time.Second)
	admin := connect(t, s, opts, "admin")
	br := connect(t, s, opts, "bridge")
	master := connect(t, s, opts, "master")
	viewer := connect(t, s, opts, "viewer")

	// Nobody but admin and the bridge creates streams.
	master.mustFail(t, "create a stream", func(ctx context.Context) error {
		_, err := master.js.CreateStream(ctx, jetstream.StreamConfig{Name: "X", Subjects: []string{"x.>"}})
		return err
	})

	// The bridge sets up what it sets up at start.
	for _, sc := range events.StreamConfigs() {
		if _, err := br.js.CreateOrUpdateStream(ctx, sc); err != nil {
			t.Fatalf("bridge: stream %s: %v", sc.Name, err)
		}
	}
	envKV, err := br.js.CreateOrUpdateKeyValue(ctx, bridge.EnvironmentsBucketConfig("environments"))
	if err != nil {
		t.Fatalf("bridge: environments bucket: %v", err)
	}
	orderKV, err := br.js.CreateOrUpdateKeyValue(ctx, bridge.OrderBucketConfig())
	if err != nil {
		t.Fatalf("bridge: order bucket: %v", err)
	}
	consumers := map[string]jetstream.Consumer{}
	for stream, cc := range bridge.ConsumerConfigs(defaultAckWait, defaultMaxInFlight) {
		c, err := br.js.CreateOrUpdateConsumer(ctx, stream, cc)
		if err != nil {
			t.Fatalf("bridge: consumer %s: %v", cc.Durable, err)
		}
		consumers[stream] = c
	}
	br.mustFail(t, "create a stream of its own", func(ctx context.Context) error {
		_, err := br.js.CreateStream(ctx, jetstream.StreamConfig{Name: "X", Subjects: []string{"x.>"}})
		return err
	})
	br.mustFail(t, "delete stream DEPLOY", func(ctx context.Context) error { return br.js.DeleteStream(ctx, "DEPLOY") })

	// master: requests and queries go in; results, health and dead letters do not.
	req := master.mustStore(t, "deploy.request.env-001", `{"id":"r1"}`)
	master.mustStore(t, "status.query.env-001", `{"id":"q1"}`)
	for _, subj := range []string{"deploy.result.env-001", "status.result.env-001", "operator.health.env-001", "deadletter.deploy.request.env-001",
		bridge.ForwardPrefix + "abcd"} {
		master.mustNotPublish(t, subj)
	}
	// Bridges hand requests to each other; nobody else may.
	fwd, err := br.nc.SubscribeSync(bridge.ForwardPrefix + "abcd")
	if err != nil {
		t.Fatal(err)
	}
	if err := br.nc.Publish(bridge.ForwardPrefix+"abcd", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := fwd.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("bridge: forward a request to another bridge: %v", err)
	}

	// viewer: reads only.
	for _, subj := range []string{"deploy.request.env-001", "status.query.env-001", "deploy.result.env-001", "operator.health.env-001", "deadletter.x", bridge.ForwardPrefix + "abcd"} {
		viewer.mustNotPublish(t, subj)
	}
	viewer.mustFail(t, "put into the environments bucket", func(ctx context.Context) error {
		kv, err := viewer.js.KeyValue(ctx, "environments")
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, "env-009", []byte(`{}`))
		return err
	})
	viewer.mustFail(t, "delete the bridge's consumer", func(ctx context.Context) error {
		return viewer.js.DeleteConsumer(ctx, "DEPLOY", bridge.DeployConsumer)
	})
	viewer.mustFail(t, "update the bridge's consumer", func(ctx context.Context) error {
		cc := bridge.ConsumerConfigs(defaultAckWait, defaultMaxInFlight)["DEPLOY"]
		cc.FilterSubject = "deploy.request.env-001"
		_, err := viewer.js.UpdateConsumer(ctx, "DEPLOY", cc)
		return err
	})
	viewer.mustFail(t, "pull from the bridge's consumer", func(ctx context.Context) error {
		c, err := viewer.js.Consumer(ctx, "DEPLOY", bridge.DeployConsumer)
		if err != nil {
			return err
		}
		_, err = c.Next(jetstream.FetchMaxWait(time.Second))
		return err
	})
	viewer.mustFail(t, "purge DEPLOY", func(ctx context.Context) error {
		st, err := viewer.js.Stream(ctx, "DEPLOY")
		if err != nil {
			return err
		}
		return st.Purge(ctx)
	})

	// Nothing of that was stored.
	deploy, err := admin.js.Stream(ctx, "DEPLOY")
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"deploy.result.env-001", "deploy.request.env-002"} {
		if _, err := deploy.GetLastMsgForSubject(ctx, subj); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("%s: %v, want nothing stored", subj, err)
		}
	}
	if last, err := deploy.GetLastMsgForSubject(ctx, "deploy.request.env-001"); err != nil || last.Sequence != req.Sequence {
		t.Errorf("last deploy.request.env-001: %v %v, want master's seq %d", last, err, req.Sequence)
	}

	// The bridge pulls through its durable consumers and acknowledges.
	for stream, c := range consumers {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("bridge: next from %s: %v", stream, err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("bridge: ack on %s: %v", stream, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending != 0 || info.AckFloor.Stream == 0 {
			t.Errorf("%s: ack not taken: %+v", stream, info)
		}
	}
	// ...and publishes what only it publishes, but no requests.
	br.mustStore(t, "deploy.result.env-001", `{"id":"res1"}`)
	br.mustStore(t, "status.result.env-001", `{"id":"res2"}`)
	br.mustStore(t, "operator.health.env-001", `{"healthy":true}`)
	br.mustStore(t, "deadletter.deploy.request.env-001", `not an event`)
	br.mustNotPublish(t, "deploy.request.env-001")
	br.mustNotPublish(t, "status.query.env-001")

	// Its key-value buckets: reads environments (admin writes them), owns
	// the order state.
	adminEnv, err := admin.js.KeyValue(ctx, "environments")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminEnv.Put(ctx, "env-001", []byte(`{"id":"env-001","type":"mock"}`)); err != nil {
		t.Fatalf("admin: put environment: %v", err)
	}
	if e, err := envKV.Get(ctx, "env-001"); err != nil || e.Revision() == 0 {
		t.Errorf("bridge: get environment: %v", err)
	}
	w, err := envKV.WatchAll(ctx)
	if err != nil {
		t.Fatalf("bridge: watch environments: %v", err)
	}
	select {
	case e := <-w.Updates():
		if e == nil || e.Key() != "env-001" {
			t.Errorf("bridge: watch gave %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Error("bridge: watch gave nothing")
	}
	_ = w.Stop()
	br.mustFail(t, "write the environments bucket", func(ctx context.Context) error {
		_, err := envKV.Put(ctx, "env-002", []byte(`{}`))
		return err
	})
	rev, err := orderKV.Create(ctx, "env-001.my-app", []byte(`{}`))
	if err != nil {
		t.Fatalf("bridge: order create: %v", err)
	}
	if _, err := orderKV.Update(ctx, "env-001.my-app", []byte(`{"x":1}`), rev); err != nil {
		t.Fatalf("bridge: order update: %v", err)
	}
	if _, err := orderKV.Get(ctx, "env-001.my-app"); err != nil {
		t.Fatalf("bridge: order get: %v", err)
	}

	// Reading: master and viewer watch streams with ordered consumers and
	// get messages; subscribe to results and health.
	for _, c := range []*client{master, viewer} {
		oc, err := c.js.OrderedConsumer(ctx, "DEPLOY", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"deploy.result.>"}})
		if err != nil {
			t.Fatalf("%s: ordered consumer: %v", c.user, err)
		}
		m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil || string(m.Data()) != `{"id":"res1"}` {
			t.Errorf("%s: ordered consumer read: %v", c.user, err)
		}
		st, err := c.js.Stream(ctx, "HEALTH")
		if err != nil {
			t.Fatalf("%s: stream info: %v", c.user, err)
		}
		if m, err := st.GetLastMsgForSubject(ctx, "operator.health.env-001"); err != nil || string(m.Data) != `{"healthy":true}` {
			t.Errorf("%s: last health: %v", c.user, err)
		}
		if _, err := st.GetMsg(ctx, 1); err != nil {
			t.Errorf("%s: get message: %v", c.user, err)
		}
		sub, err := c.nc.SubscribeSync("operator.health.>")
		if err != nil {
			t.Fatal(err)
		}
		_ = c.nc.Flush()
		br.mustStore(t, "operator.health.env-002", `{"healthy":false}`)
		if _, err := sub.NextMsg(5 * time.Second); err != nil {
			t.Errorf("%s: subscribe to health: %v", c.user, err)
		}
		_ = sub.Unsubscribe()
	}
	// Dead letters are the viewer's and admin's to read.
	dl, err := viewer.js.Stream(ctx, "DEADLETTER")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := dl.GetLastMsgForSubject(ctx, "deadletter.deploy.request.env-001"); err != nil || string(m.Data) != "not an event" {
		t.Errorf("viewer: dead letter: %v", err)
	}
	if _, err := master.nc.SubscribeSync("deadletter.>"); err == nil {
		_ = master.nc.Flush()
		if !master.violation("deadletter.>", 2*time.Second) {
			t.Error("master could subscribe to dead letters")
		}
	}

	// A consumer's delivery subject is not checked against its creator's
	// publish permissions, so a viewer can aim a push consumer at
	// deploy.request.x: core subscribers of that subject get the copies, but
	// JetStream does not store them, so nothing reaches the bridge's DEPLOY
	// consumer.
	spy, err := admin.nc.SubscribeSync("deploy.request.forged")
	if err != nil {
		t.Fatal(err)
	}
	_ = admin.nc.Flush()
	if _, err := viewer.js.CreatePushConsumer(ctx, "HEALTH", jetstream.ConsumerConfig{
		Name: "forge", DeliverSubject: "deploy.request.forged", DeliverPolicy: jetstream.DeliverLastPolicy, AckPolicy: jetstream.AckNonePolicy,
	}); err != nil {
		t.Fatalf("viewer: push consumer: %v", err)
	}
	if _, err := spy.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the forged delivery did not come: %v", err)
	}
	_ = viewer.js.DeleteConsumer(ctx, "HEALTH", "forge")
	if _, err := deploy.GetLastMsgForSubject(ctx, "deploy.request.forged"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("DEPLOY stored a push consumer's delivery: %v", err)
	}

	// The micro service: the bridge serves, master and viewer ask.
	svc, err := micro.AddService(br.nc, micro.Config{Name: bridge.ServiceName, Version: "0.0.0"})
	if err != nil {
		t.Fatalf("bridge: micro service: %v", err)
	}
	defer func() { _ = svc.Stop() }()
	if err := svc.AddGroup(bridge.ServiceName).AddEndpoint("environments", micro.HandlerFunc(func(r micro.Request) { _ = r.Respond([]byte(`[]`)) })); err != nil {
		t.Fatal(err)
	}
	if err := br.nc.Flush(); err != nil { // the endpoint's subscription is in place
		t.Fatal(err)
	}
	for _, c := range []*client{master, viewer} {
		if m, err := c.nc.Request(events.SubjectEnvironments, nil, 2*time.Second); err != nil || string(m.Data) != "[]" {
			t.Errorf("%s: request %s: %v", c.user, events.SubjectEnvironments, err)
		}
		if _, err := c.nc.Request("$SRV.PING."+bridge.ServiceName, nil, 2*time.Second); err != nil {
			t.Errorf("%s: $SRV.PING: %v", c.user, err)
		}
	}
}

// ---------------------------------------------------------------------------
// The real bridge, logged in as `bridge`.

func TestBridgeRunsAsBridgeUser(t *testing.T) {
	opts := loadOpts(t, "nats-server.conf")
	s := startNode(t, opts)
	ctx := ctxT(t, 60*time.Second)
	br := connect(t, s, opts, "bridge")
	master := connect(t, s, opts, "master")
	viewer := connect(t, s, opts, "viewer")

	envFile := filepath.Join(t.TempDir(), "envs.json")
	if err := os.WriteFile(envFile, []byte(`[{"id":"env-001","name":"dev","type":"mock"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opsAddr := ln.Addr().String()
	ln.Close()
	b, err := newBridge(br.nc, bridge.Config{
		Instance:           "natsconfig-test",
		HTTPAddr:           opsAddr, // the status page follows streams as this user too
		EnvironmentsFile:   envFile,
		EnvironmentsBucket: "environments",
		HealthInterval:     time.Hour,
		ShutdownGrace:      2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("bridge did not stop")
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !b.Ready() {
		select {
		case err := <-done:
			t.Fatalf("bridge stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("bridge not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	results, err := viewer.nc.SubscribeSync("deploy.result.env-001")
	if err != nil {
		t.Fatal(err)
	}
	_ = viewer.nc.Flush()
	event := fmt.Sprintf(`{"specversion":"1.0","id":"req-1","source":"/master-service","type":%q,"time":%q,"datacontenttype":"application/json","data":{"app":"my-app","version":"v1.0.0"}}`,
		events.TypeDeployRequest, time.Now().UTC().Format(time.RFC3339Nano))
	msg := nats.NewMsg("deploy.request.env-001")
	msg.Header.Set("Content-Type", events.ContentTypeStructured)
	msg.Header.Set(events.HeaderMsgID, "req-1")
	msg.Data = []byte(event)
	if _, err := master.js.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("master: publish request: %v", err)
	}
	m, err := results.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("viewer: no deploy result: %v", err)
	}
	var res struct {
		Data struct {
			Outcome string `json:"outcome"`
		} `json:"data"`
	}
	if err := json.Unmarshal(m.Data, &res); err != nil || res.Data.Outcome != "succeeded" {
		t.Errorf("result %s: %v", m.Data, err)
	}

	// A redelivered request looks for its stored result the way the bridge
	// does: an ephemeral consumer, headers only, over its environment's results,
	// deleted after.
	for _, sub := range [][2]string{{"DEPLOY", "deploy.result.env-001"}, {"STATUS", "status.result.env-001"}} {
		oc, err := br.js.CreateConsumer(ctx, sub[0], jetstream.ConsumerConfig{Name: "operator-bridge-look-test", FilterSubject: sub[1],
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: 1, AckPolicy: jetstream.AckNonePolicy,
			HeadersOnly: true, MemoryStorage: true, InactiveThreshold: time.Minute})
		if err != nil {
			t.Fatalf("bridge: look through %s: %v", sub[1], err)
		}
		defer func() {
			if err := br.js.DeleteConsumer(ctx, sub[0], "operator-bridge-look-test"); err != nil {
				t.Errorf("bridge: delete its look through %s: %v", sub[1], err)
			}
		}()
		if sub[0] == "DEPLOY" {
			b, err := oc.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for range b.Messages() {
				n++
			}
			if n != 1 || b.Error() != nil {
				t.Fatalf("bridge: read %d stored results through an ordered consumer: %v", n, b.Error())
			}
		}
	}

	// Health at start, readable by the viewer from the stream.
	hs, err := viewer.js.Stream(ctx, "HEALTH")
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := hs.GetLastMsgForSubject(ctx, "operator.health.env-001"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no health of env-001: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The status page, reading the streams as the bridge user, shows the
	// environment's health and the result.
	deadline = time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + opsAddr + "/")
		var page []byte
		if err == nil {
			page, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if strings.Contains(string(page), `id="env-env-001" data-state="healthy"`) && strings.Contains(string(page), "my-app") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status page does not show env-001 healthy and my-app's result: %v\n%s", err, page)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The micro service answers master and viewer.
	for _, c := range []*client{master, viewer} {
		m, err := c.nc.Request(events.SubjectEnvironments, nil, 5*time.Second)
		if err != nil || !strings.Contains(string(m.Data), `"env-001"`) {
			t.Errorf("%s: environments: %v", c.user, err)
		}
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	for _, err := range br.errs {
		t.Errorf("bridge connection error: %v", err)
	}
}

// newBridge makes a bridge whose environments all use the mock operator.
func newBridge(nc *nats.Conn, cfg bridge.Config) (*bridge.Bridge, error) {
	settings := operator.DefaultSettings()
	settings.UseMock = true
	f, err := operator.NewFactory(settings)
	if err != nil {
		return nil, err
	}
	return bridge.New(nc, f, cfg)
}

// ---------------------------------------------------------------------------
// The 3-node cluster, on random loopback ports.

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers")
	}
	ports := freePorts(t, 3)
	var all []*server.Options
	for _, conf := range confFiles[1:] {
		all = append(all, loadOpts(t, conf))
	}
	var nodes []*server.Server
	for i, opts := range all {
		opts.Cluster.Port = ports[i]
		var routes []*url.URL
		for j, r := range opts.Routes {
			u := *r
			u.Host = fmt.Sprintf("127.0.0.1:%d", ports[j])
			routes = append(routes, &u)
		}
		opts.Routes = routes
		nodes = append(nodes, startNode(t, opts))
	}
	for _, s := range nodes {
		deadline := time.Now().Add(20 * time.Second)
		for s.NumRoutes() < 2 || !s.JetStreamIsClustered() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d routes", s.Name(), s.NumRoutes())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ctx := ctxT(t, 60*time.Second)
	admin := connect(t, nodes[0], all[0], "admin")
	var sc jetstream.StreamConfig
	readJSON(t, "stream-DEPLOY.json", &sc)
	sc.Replicas = 3
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// The meta leader may still be on its way.
		try, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = admin.js.CreateStream(try, sc)
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("admin: create R3 DEPLOY: %v", err)
	}
	master := connect(t, nodes[1], all[1], "master")
	master.mustStore(t, "deploy.request.env-001", `{"id":"r1"}`)
	viewer := connect(t, nodes[2], all[2], "viewer")
	viewer.mustNotPublish(t, "deploy.request.env-001")
	oc, err := viewer.js.OrderedConsumer(ctx, "DEPLOY", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("viewer: ordered consumer: %v", err)
	}
	if m, err := oc.Next(jetstream.FetchMaxWait(10 * time.Second)); err != nil || m.Subject() != "deploy.request.env-001" {
		t.Errorf("viewer: read: %v", err)
	}
}
