package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// natsAuth is how to authenticate to NATS and secure the connection.
type natsAuth struct {
	Creds    string
	Nkey     string // path of an nkey seed file
	User     string
	Password string
	Token    string
	TLSCA    string
	TLSCert  string
	TLSKey   string
}

// options returns the nats.Options of a.
func (a natsAuth) options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.Creds != "" {
		if _, err := os.Stat(a.Creds); err != nil {
			return nil, fmt.Errorf("nats credentials: %w", err)
		}
		opts = append(opts, nats.UserCredentials(a.Creds))
	}
	if a.Nkey != "" {
		o, err := nats.NkeyOptionFromSeed(a.Nkey)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed: %w", err)
		}
		opts = append(opts, o)
	}
	if a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.Token != "" {
		opts = append(opts, nats.Token(a.Token))
	}
	if a.TLSCA != "" {
		if _, err := os.Stat(a.TLSCA); err != nil {
			return nil, fmt.Errorf("nats TLS CA: %w", err)
		}
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" || a.TLSKey != "" {
		if a.TLSCert == "" || a.TLSKey == "" {
			return nil, errors.New("nats TLS: a client certificate needs both the certificate and the key")
		}
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts, nil
}

// redactURL returns the NATS server URLs without user information, for logs.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			u.User = nil
			p = u.String()
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}

// connectServe connects the bridge: reconnecting for ever, and logging what
// happens to the connection (never its secrets).
func connectServe(urls string, auth natsAuth, log *slog.Logger) (*nats.Conn, error) {
	opts, err := auth.options()
	if err != nil {
		return nil, usageError("%v", err)
	}
	opts = append(opts,
		nats.Name("operator-bridge"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.Timeout(5*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", redactURL(nc.ConnectedUrl()))
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Debug("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats async error", "subject", subject, "err", err)
		}),
	)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, connectError(urls, err)
	}
	return nc, nil
}

// connectError explains a failed connection, with the exit code scripts
// expect: 3 when NATS cannot be reached, 1 when it refused us (credentials
// or certificates: trying again will not help).
func connectError(urls string, err error) error {
	refused := isAuthError(err) || isTLSError(err)
	err = fmt.Errorf("connect to NATS at %s: %w", redactURL(urls), err)
	if refused {
		return withCode(exitFailed, err)
	}
	return withCode(exitTimeout, err)
}

// isTLSError reports whether a connection failed in its TLS handshake: a
// certificate refused by either side, or TLS wanted by one side only.
func isTLSError(err error) bool {
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	return errors.As(err, &verr) || errors.As(err, &uerr) ||
		errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) ||
		strings.Contains(err.Error(), "tls: ") || strings.Contains(err.Error(), "tls error")
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		strings.Contains(strings.ToLower(err.Error()), "authorization violation")
}

// isTimeout reports whether err means "no answer in time" or "cannot reach".
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionClosed) || (errors.As(err, &ne) && ne.Timeout())
}

// clientFlags are the connection flags of the client commands, with
// defaults from the same variables as serve's.
type clientFlags struct {
	url     string
	auth    natsAuth
	json    bool
	timeout time.Duration

	mu       sync.Mutex
	asyncErr error         // the last permissions violation the server sent
	refused  chan struct{} // closed at the first permissions violation
}

func (cf *clientFlags) register(fs *flag.FlagSet, c *cli, timeout time.Duration) {
	env := func(name, def string) string {
		if v := c.getenv(envPrefix + name); v != "" {
			return v
		}
		return def
	}
	defURL := nats.DefaultURL
	if listen := c.getenv(envPrefix + "EMBEDDED_NATS_LISTEN"); listen != "" {
		defURL = "nats://" + listen // where serve's embedded server listens
	}
	fs.StringVar(&cf.url, "nats", env("NATS_URL", defURL), "NATS server `URL` ($"+envPrefix+"NATS_URL, else $"+envPrefix+"EMBEDDED_NATS_LISTEN)")
	fs.StringVar(&cf.auth.User, "user", env("NATS_USER", ""), "NATS user ($"+envPrefix+"NATS_USER)")
	fs.StringVar(&cf.auth.Password, "password", env("NATS_PASSWORD", ""), "NATS password ($"+envPrefix+"NATS_PASSWORD)")
	fs.StringVar(&cf.auth.Creds, "creds", env("NATS_CREDS", ""), "NATS credentials `file` ($"+envPrefix+"NATS_CREDS)")
	fs.StringVar(&cf.auth.Nkey, "nkey", env("NATS_NKEY", ""), "NATS nkey seed `file` ($"+envPrefix+"NATS_NKEY)")
	fs.StringVar(&cf.auth.Token, "token", env("NATS_TOKEN", ""), "NATS token ($"+envPrefix+"NATS_TOKEN)")
	fs.StringVar(&cf.auth.TLSCA, "tls-ca", env("NATS_TLS_CA", ""), "CA `file` for TLS to NATS ($"+envPrefix+"NATS_TLS_CA)")
	fs.StringVar(&cf.auth.TLSCert, "tls-cert", env("NATS_TLS_CERT", ""), "client certificate `file` ($"+envPrefix+"NATS_TLS_CERT)")
	fs.StringVar(&cf.auth.TLSKey, "tls-key", env("NATS_TLS_KEY", ""), "client key `file` ($"+envPrefix+"NATS_TLS_KEY)")
	fs.BoolVar(&cf.json, "json", false, "print JSON for scripts")
	if timeout > 0 {
		fs.DurationVar(&cf.timeout, "timeout", timeout, "how long to wait for an answer")
	}
}

// connect connects a client command: no reconnect loop, a short dial.
func (cf *clientFlags) connect(name string) (*nats.Conn, error) {
	opts, err := cf.auth.options()
	if err != nil {
		return nil, usageError("%v", err)
	}
	opts = append(opts, nats.Name("operator-bridge "+name), nats.Timeout(3*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if !isPermissionError(err) {
				return
			}
			cf.mu.Lock()
			defer cf.mu.Unlock()
			if cf.asyncErr == nil {
				close(cf.refused)
			}
			cf.asyncErr = err
		}))
	cf.refused = make(chan struct{})
	nc, err := nats.Connect(cf.url, opts...)
	if err != nil {
		return nil, connectError(cf.url, err)
	}
	return nc, nil
}

// explain adds what the server said to an error of a client command: a
// request that timed out because the server refused it is a failure (exit
// code 1), not a timeout.
func (cf *clientFlags) explain(err error) error {
	if err == nil {
		return nil
	}
	if r := cf.refusal(); r != nil {
		return r
	}
	return err
}

// refusal is the server's refusal of something the command did (exit code
// 1), or nil.
func (cf *clientFlags) refusal() error {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if cf.asyncErr == nil {
		return nil
	}
	return withCode(exitFailed, fmt.Errorf("NATS refused: %v", cf.asyncErr))
}

func isPermissionError(err error) bool {
	return errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation")
}

// untilRefused returns a context that also ends when the server refuses
// something the command does, so the command fails at once instead of
// waiting out its timeout.
func (cf *clientFlags) untilRefused(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if cf.refused == nil {
		return ctx, cancel
	}
	go func() {
		select {
		case <-cf.refused:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
