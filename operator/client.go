package operator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is the bridge's version, sent in the User-Agent header as
// "operator-bridge/<Version>". cmd sets it with
// -ldflags "-X github.com/boreas/operator-bridge/operator.Version=v1.2.3".
var Version = "dev"

// Defaults of ClientOptions.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBodyBytes = 1 << 20 // 1 MiB
)

// ClientOptions configures a Client. The zero value works.
type ClientOptions struct {
	// Timeout bounds each call; it is derived from the caller's context.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// Token, when set, is sent as "Authorization: Bearer <Token>" on every
	// call, health checks included.
	Token string
	// HTTPClient makes the calls. Nil means a new client with its own pool of
	// keep-alive connections (see NewHTTPClient), trusting RootCAs.
	HTTPClient *http.Client
	// RootCAs, when HTTPClient is nil, replaces the system roots for HTTPS.
	RootCAs *x509.CertPool
	// UserAgent defaults to "operator-bridge/" + Version.
	UserAgent string
	// MaxBodyBytes limits a response body; a 2xx over it is
	// InvalidResponse. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Observer, when set, is called after every call, for metrics.
	Observer Observer
}

// Call describes one finished operator call; see Observer.
type Call struct {
	Op         string // "apply", "status", "health"
	Kind       Kind
	Endpoint   string // without credentials
	StatusCode int    // 0 when there was no HTTP answer
	Duration   time.Duration
	Err        error // nil on success, else usually a *Error
}

// Observer is told about each finished call (for metrics). It must be fast
// and safe for concurrent use.
type Observer func(Call)

// Client calls an HTTP operator (Kubernetes or physical-machine). Both kinds
// speak the same JSON and differ only in their routes (see RoutesFor). A
// Client is safe for concurrent use; share one per endpoint so its
// connections are pooled.
type Client struct {
	kind      Kind
	routes    Routes
	base      *url.URL // with credentials, path without trailing slash
	endpoint  string   // base without credentials
	hc        *http.Client
	token     string
	userAgent string
	timeout   time.Duration
	maxBody   int64
	observer  Observer
	err       error // a configuration error, returned by every call
}

var _ Operator = (*Client)(nil)

// NewClient returns a client of an HTTP operator of the given kind at
// baseURL (http or https, with a host; a path prefix is kept).
func NewClient(kind Kind, baseURL string, opts ClientOptions) (*Client, error) {
	if _, ok := RoutesFor(kind); !ok {
		return nil, fmt.Errorf("operator type %q has no HTTP client", kind)
	}
	u, err := parseOperatorURL(baseURL)
	if err != nil {
		return nil, err
	}
	return newClient(kind, u, opts)
}

// newClient is NewClient of a URL parseOperatorURL made.
func newClient(kind Kind, u *url.URL, opts ClientOptions) (*Client, error) {
	routes, ok := RoutesFor(kind)
	if !ok {
		return nil, fmt.Errorf("operator type %q has no HTTP client", kind)
	}
	c := &Client{
		kind:      kind,
		routes:    routes,
		base:      u,
		endpoint:  redactURL(u),
		hc:        opts.HTTPClient,
		token:     opts.Token,
		userAgent: opts.UserAgent,
		timeout:   opts.Timeout,
		maxBody:   opts.MaxBodyBytes,
		observer:  opts.Observer,
	}
	if c.hc == nil {
		c.hc = NewHTTPClient(opts.RootCAs)
	}
	if c.userAgent == "" {
		c.userAgent = "operator-bridge/" + Version
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	return c, nil
}

// NewK8sClient returns a client of the Kubernetes operator at baseURL with
// default options. If baseURL is invalid, every call returns that error.
func NewK8sClient(baseURL string) *Client { return brokenOrClient(Kubernetes, baseURL) }

// NewPMClient returns a client of the physical-machine operator at baseURL
// with default options. If baseURL is invalid, every call returns that error.
func NewPMClient(baseURL string) *Client { return brokenOrClient(Physical, baseURL) }

func brokenOrClient(kind Kind, baseURL string) *Client {
	c, err := NewClient(kind, baseURL, ClientOptions{})
	if err != nil {
		return &Client{kind: kind, endpoint: redactString(baseURL), err: err}
	}
	return c
}

// NewHTTPClient returns an HTTP client with its own pool of keep-alive
// connections, sized for many concurrent calls to one operator. rootCAs,
// when not nil, replaces the system roots. It sets no overall timeout: each
// call's timeout comes from its context.
func NewHTTPClient(rootCAs *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	if rootCAs != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t}
}

// LoadCAFile reads a PEM file of CA certificates (OPERATOR_TLS_CA).
func LoadCAFile(path string) (*x509.CertPool, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("operator TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("operator TLS CA %s: no PEM certificate found", path)
	}
	return pool, nil
}

// Kind returns the operator's kind.
func (c *Client) Kind() Kind { return c.kind }

// Endpoint returns the operator's base URL without credentials.
func (c *Client) Endpoint() string { return c.endpoint }

// Apply sends req to the operator, with its fencing headers (see
// ApplyRequest.FencingHeaders). An answer with success: false returns the
// answer and a *Error with Reason Rejected carrying its message; a 409
// Conflict is a *Error with Reason Stale.
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (ApplyResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return ApplyResponse{}, c.fail("apply", Rejected, 0, "cannot encode request: "+err.Error(), err)
	}
	start := time.Now()
	code, data, err := c.roundTrip(ctx, "apply", http.MethodPost, c.routes.Apply, body, true, req.FencingHeaders())
	if err == nil {
		var resp ApplyResponse
		resp, err = c.decodeApply(code, data)
		c.observe("apply", code, start, err)
		return resp, err
	}
	c.observe("apply", code, start, err)
	return ApplyResponse{}, err
}

// Status asks the operator for app's status. app is path-escaped.
func (c *Client) Status(ctx context.Context, app string) (Status, error) {
	start := time.Now()
	if app == "" {
		err := c.fail("status", Rejected, 0, "empty app name", nil)
		c.observe("status", 0, start, err)
		return Status{}, err
	}
	code, data, err := c.roundTrip(ctx, "status", http.MethodGet, c.routes.Status+escapeSegment(app), nil, true, nil)
	if err == nil {
		var st Status
		st, err = decodeStatus(data)
		if err != nil {
			err = c.fail("status", InvalidResponse, code, err.Error(), nil)
		}
		c.observe("status", code, start, err)
		return st, err
	}
	c.observe("status", code, start, err)
	return Status{}, err
}

// HealthCheck calls the operator's health endpoint: any 2xx is healthy.
func (c *Client) HealthCheck(ctx context.Context) error {
	start := time.Now()
	code, _, err := c.roundTrip(ctx, "health", http.MethodGet, c.routes.Health, nil, false, nil)
	c.observe("health", code, start, err)
	return err
}

func (c *Client) observe(op string, code int, start time.Time, err error) {
	if c.observer == nil {
		return
	}
	c.observer(Call{Op: op, Kind: c.kind, Endpoint: c.endpoint, StatusCode: code, Duration: time.Since(start), Err: err})
}

func (c *Client) fail(op string, r Reason, code int, msg string, err error) *Error {
	return &Error{Op: op, Kind: c.kind, Endpoint: c.endpoint, Reason: r, StatusCode: code, Message: msg, Err: err}
}

func (c *Client) decodeApply(code int, data []byte) (ApplyResponse, error) {
	resp, err := decodeApply(data)
	if err != nil {
		return ApplyResponse{}, c.fail("apply", InvalidResponse, code, err.Error(), nil)
	}
	if !resp.Success {
		msg := resp.Message
		if msg == "" {
			msg = "operator answered success: false"
		}
		return resp, c.fail("apply", Rejected, code, msg, nil)
	}
	return resp, nil
}

// errCallTimeout is the cause of a call's context when its own timeout ends it.
var errCallTimeout = errors.New("operator call timed out")

// roundTrip makes one HTTP call, with the extra headers hdr, and returns the
// status and body of a 2xx answer, or a *Error. Without needBody, a 2xx body
// of any size is fine.
func (c *Client) roundTrip(ctx context.Context, op, method, path string, body []byte, needBody bool, hdr http.Header) (int, []byte, error) {
	if c.err != nil {
		return 0, nil, c.fail(op, Rejected, 0, "invalid operator client: "+c.err.Error(), c.err)
	}
	callCtx, cancel := context.WithTimeoutCause(ctx, c.timeout, errCallTimeout)
	defer cancel()

	u := *c.base
	u.RawPath = c.base.EscapedPath() + path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return 0, nil, c.fail(op, Rejected, 0, "bad request path: "+err.Error(), err)
	}
	u.Path = p
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(callCtx, method, u.String(), rd)
	if err != nil {
		return 0, nil, c.fail(op, Rejected, 0, "cannot build request: "+err.Error(), err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, c.transportError(ctx, callCtx, op, 0, err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, nil, c.transportError(ctx, callCtx, op, resp.StatusCode, err)
	}
	tooLarge := int64(len(data)) > c.maxBody
	if tooLarge {
		data = data[:c.maxBody]
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		if tooLarge && needBody {
			return code, nil, c.fail(op, InvalidResponse, code, fmt.Sprintf("response body exceeds %d bytes", c.maxBody), nil)
		}
		return code, data, nil
	case code == http.StatusConflict && op == "apply":
		detail := ""
		if snippet(data) != "" {
			detail = errorMessage(code, data)
		}
		return code, nil, c.fail(op, Stale, code, staleMessage(detail), nil)
	case code >= 400 && code <= 499:
		return code, nil, c.fail(op, Rejected, code, errorMessage(code, data), nil)
	case code >= 500 && code <= 599:
		return code, nil, c.fail(op, Unavailable, code, errorMessage(code, data), nil)
	default:
		return code, nil, c.fail(op, InvalidResponse, code, "unexpected HTTP status: "+errorMessage(code, data), nil)
	}
}

// transportError classifies a failure to get (or read) an answer.
func (c *Client) transportError(ctx, callCtx context.Context, op string, code int, err error) *Error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // its text carries the URL; Endpoint says where
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return c.fail(op, Timeout, code, "caller's deadline passed", ctxErr)
		}
		return c.fail(op, Unavailable, code, "call cancelled by caller", ctxErr)
	}
	if callCtx.Err() != nil && errors.Is(context.Cause(callCtx), errCallTimeout) {
		return c.fail(op, Timeout, code, fmt.Sprintf("no answer within %s", c.timeout), errCallTimeout)
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return c.fail(op, Timeout, code, err.Error(), err)
	}
	return c.fail(op, Unavailable, code, err.Error(), err)
}

// staleMessage is the Message of a Stale error, with the operator's own
// words (detail) when it gave any.
func staleMessage(detail string) string {
	const msg = "the operator refused the apply as stale: it already accepted a newer one for this app"
	if detail == "" {
		return msg
	}
	return msg + " (" + detail + ")"
}

// escapeSegment path-escapes one path segment; "." and ".." are escaped too
// so that they cannot walk the path.
func escapeSegment(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}

// maxMessage bounds the part of an error body quoted in a *Error.
const maxMessage = 200

// errorMessage pulls the operator's message from an error answer: the
// "message" or "error" string of a JSON object, else a trimmed snippet of the
// body, else the status text.
func errorMessage(code int, body []byte) string {
	var v struct {
		Message any `json:"message"`
		Error   any `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil {
		for _, f := range []any{v.Message, v.Error} {
			switch m := f.(type) {
			case string:
				if s := snippet([]byte(m)); s != "" {
					return s
				}
			case map[string]any:
				if s, ok := m["message"].(string); ok && strings.TrimSpace(s) != "" {
					return snippet([]byte(s))
				}
			}
		}
	}
	if s := snippet(body); s != "" {
		return s
	}
	if t := http.StatusText(code); t != "" {
		return t
	}
	return fmt.Sprintf("HTTP status %d", code)
}

// snippet returns b as printable text on one line, at most maxMessage bytes.
func snippet(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r < 0x20 || r == 0x7f
	}), " ")
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// decodeApply decodes an apply answer: a JSON object with a boolean
// "success" and an optional string "message".
func decodeApply(data []byte) (ApplyResponse, error) {
	var v struct {
		Success *bool   `json:"success"`
		Message *string `json:"message"`
	}
	if err := decodeObject(data, &v); err != nil {
		return ApplyResponse{}, err
	}
	if v.Success == nil {
		return ApplyResponse{}, fmt.Errorf("answer has no \"success\" field: %s", snippet(data))
	}
	resp := ApplyResponse{Success: *v.Success}
	if v.Message != nil {
		resp.Message = *v.Message
	}
	return resp, nil
}

// decodeStatus decodes a status answer and checks it is the documented
// shape: an object with "app", health levels in 0–100 and percents in 0–1.
func decodeStatus(data []byte) (Status, error) {
	var st Status
	if err := decodeObject(data, &st); err != nil {
		return Status{}, err
	}
	if st.App == "" {
		return Status{}, fmt.Errorf("status answer has no \"app\": %s", snippet(data))
	}
	if err := checkLevel("healthy", st.Healthy); err != nil {
		return Status{}, err
	}
	if st.Versions == nil {
		st.Versions = []VersionStatus{}
	}
	for i, v := range st.Versions {
		if v.Percent < 0 || v.Percent > 1 {
			return Status{}, fmt.Errorf("versions[%d].percent %v is not in [0, 1]", i, v.Percent)
		}
		if err := checkLevel("versions[%d].healthy", v.Healthy, i); err != nil {
			return Status{}, err
		}
		if v.Nodes == nil {
			st.Versions[i].Nodes = []NodeStatus{}
		}
		for j, n := range v.Nodes {
			if err := checkLevel("versions[%d].nodes[%d].healthy", n.Healthy, i, j); err != nil {
				return Status{}, err
			}
		}
	}
	return st, nil
}

// checkLevel checks a health level; field (a format, with args) names it
// only when it is wrong, so that a valid answer costs no formatting.
func checkLevel(field string, h Health, args ...any) error {
	if h.Level < 0 || h.Level > 100 {
		return fmt.Errorf("%s.level %d is not in [0, 100]", fmt.Sprintf(field, args...), h.Level)
	}
	return nil
}

// decodeObject decodes exactly one JSON object from data into v.
func decodeObject(data []byte, v any) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return errors.New("empty answer where JSON was expected")
	}
	if trimmed[0] != '{' {
		return fmt.Errorf("answer is not a JSON object: %s", snippet(trimmed))
	}
	// Unmarshal takes exactly one value: anything after it is a syntax
	// error (and costs less than a Decoder with its buffer).
	if err := json.Unmarshal(trimmed, v); err != nil {
		if syn := (*json.SyntaxError)(nil); errors.As(err, &syn) && strings.HasSuffix(syn.Error(), "after top-level value") {
			return fmt.Errorf("answer has data after its JSON object: %s", snippet(trimmed))
		}
		return fmt.Errorf("answer is not the documented JSON (%v): %s", err, snippet(trimmed))
	}
	return nil
}
