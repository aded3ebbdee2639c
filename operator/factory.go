package operator

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// Factory makes the operator of each environment from its record and the
// Settings (what the original operator client called
// CreateOperatorFromEnvironment, CreateOperatorByType and
// InitializeOperators). It keeps one *Client per kind and endpoint, shared
// by every environment on that endpoint; the clients of the endpoints on
// one host (operators told apart by their paths) share one pool of
// keep-alive connections. It keeps one *MockClient per environment ID,
// whose state survives later builds. It is safe for concurrent use.
type Factory struct {
	settings Settings
	roots    *x509.CertPool
	observer Observer

	mu      sync.Mutex
	clients map[clientKey]*Client
	// written maps a kind and a URL as written, when it is not written as
	// normalized (clients has those), to its client and normalized URL:
	// thousands of environments on one operator parse its URL once.
	written map[clientKey]sharedClient
	pools   map[string]*http.Client // scheme://host[:port] -> its pool
	mocks   map[string]*MockClient
}

type clientKey struct {
	kind Kind
	url  string // normalized, with credentials: different credentials, different client
}

type sharedClient struct {
	c   *Client
	url string // normalized
}

// FactoryOption configures a Factory.
type FactoryOption func(*Factory)

// WithObserver makes every operator the Factory creates report its calls to
// o (for metrics).
func WithObserver(o Observer) FactoryOption { return func(f *Factory) { f.observer = o } }

// NewFactory validates s, loads its CA file (OPERATOR_TLS_CA) and returns a
// Factory.
func NewFactory(s Settings, opts ...FactoryOption) (*Factory, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	f := &Factory{settings: s, clients: make(map[clientKey]*Client), written: make(map[clientKey]sharedClient),
		pools: make(map[string]*http.Client), mocks: make(map[string]*MockClient)}
	if s.TLSCA != "" {
		pool, err := LoadCAFile(s.TLSCA)
		if err != nil {
			return nil, err
		}
		f.roots = pool
	}
	for _, o := range opts {
		o(f)
	}
	return f, nil
}

// Settings returns the factory's settings.
func (f *Factory) Settings() Settings { return f.settings }

// New returns the operator of env (the original operator client's
// CreateOperatorFromEnvironment).
func (f *Factory) New(env Environment) (Operator, error) {
	e, err := f.Entry(env)
	if err != nil {
		return nil, err
	}
	return e.Operator, nil
}

// NewByType returns the operator of the given type ("kubernetes", "k8s",
// "physical", "pm", "mock") at operatorURL, empty meaning the type's default
// (the original operator client's CreateOperatorByType). A mock made this way is a new one each time.
func (f *Factory) NewByType(typ, operatorURL string) (Operator, error) {
	kind, err := ParseKind(typ)
	if err != nil {
		return nil, err
	}
	if f.mock(kind) {
		return f.newMock(), nil
	}
	c, _, err := f.client(kind, operatorURL)
	return c, err
}

// Entry returns the manager entry of env: its operator, its effective
// endpoint, and env with its Type canonical and OperatorURL filled in.
func (f *Factory) Entry(env Environment) (Entry, error) {
	kind, err := ParseKind(string(env.Type))
	if err != nil {
		return Entry{}, fmt.Errorf("environment %q: %w", env.ID, err)
	}
	env.Type = kind
	if f.mock(kind) {
		f.mu.Lock()
		m, ok := f.mocks[env.ID]
		if !ok {
			m = f.newMock()
			f.mocks[env.ID] = m
		}
		f.mu.Unlock()
		env.OperatorURL = MockEndpoint
		return Entry{Environment: env, Operator: m, Endpoint: MockEndpoint}, nil
	}
	c, u, err := f.client(kind, env.OperatorURL)
	if err != nil {
		return Entry{}, fmt.Errorf("environment %q: %w", env.ID, err)
	}
	env.OperatorURL = u
	return Entry{Environment: env, Operator: c, Endpoint: c.Endpoint()}, nil
}

// Build makes the operators of envs and returns a Manager holding them
// (the original operator client's InitializeOperators). When some environments fail, it returns a Manager
// holding the others and an error naming each failed environment.
func (f *Factory) Build(envs []Environment) (*Manager, error) {
	entries := make([]Entry, 0, len(envs))
	var errs []error
	for _, env := range envs {
		e, err := f.Entry(env)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		entries = append(entries, e)
	}
	m := NewManager()
	m.replaceWith(entries)
	return m, errors.Join(errs...)
}

// Endpoint returns where env's operator is, without credentials: its
// effective base URL, or MockEndpoint; "" when env is invalid.
func (f *Factory) Endpoint(env Environment) string {
	kind, err := ParseKind(string(env.Type))
	if err != nil {
		return ""
	}
	if f.mock(kind) {
		return MockEndpoint
	}
	u, err := parseOperatorURL(f.operatorURL(kind, env.OperatorURL))
	if err != nil {
		return ""
	}
	return redactURL(u)
}

// mock reports whether an environment of kind gets the mock operator. This
// is the one place where USE_MOCK applies.
func (f *Factory) mock(kind Kind) bool { return f.settings.UseMock || kind == Mock }

func (f *Factory) newMock() *MockClient {
	m := NewMockClient()
	m.observer = f.observer
	return m
}

// operatorURL is raw, or the default URL of kind when raw is empty.
func (f *Factory) operatorURL(kind Kind, raw string) string {
	if raw != "" {
		return raw
	}
	if spec, ok := lookupKind(kind); ok && spec.defaultURL != nil {
		return spec.defaultURL(f.settings)
	}
	return ""
}

// client returns the shared client of kind at raw (or its default URL),
// and the effective URL.
func (f *Factory) client(kind Kind, raw string) (*Client, string, error) {
	raw = f.operatorURL(kind, raw)
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[clientKey{kind: kind, url: raw}]; ok { // written as normalized
		return c, raw, nil
	}
	if s, ok := f.written[clientKey{kind: kind, url: raw}]; ok {
		return s.c, s.url, nil
	}
	u, err := parseOperatorURL(raw)
	if err != nil {
		return nil, "", err
	}
	key := clientKey{kind: kind, url: u.String()}
	c, ok := f.clients[key]
	if !ok {
		host := u.Scheme + "://" + u.Host
		hc := f.pools[host]
		if hc == nil {
			hc = NewHTTPClient(f.roots)
			f.pools[host] = hc
		}
		c, err = newClient(kind, u, ClientOptions{
			HTTPClient: hc,
			Timeout:    f.settings.Timeout,
			Token:      f.settings.Token,
			Observer:   f.observer,
		})
		if err != nil {
			return nil, "", err
		}
		f.clients[key] = c
	}
	if raw != key.url {
		f.written[clientKey{kind: kind, url: raw}] = sharedClient{c: c, url: key.url}
	}
	return c, key.url, nil
}
