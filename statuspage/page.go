package statuspage

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

// assets are the stylesheet and script, served under /assets/; templates
// are the HTML the page and the sign-in form are rendered from.
var (
	//go:embed assets
	assets embed.FS
	//go:embed templates
	templates embed.FS
)

// Config configures a Page. Zero values take the documented defaults.
type Config struct {
	// JetStream is where the page reads the HEALTH, DEPLOY and DEADLETTER
	// streams. Required.
	JetStream jetstream.JetStream
	// Environments lists the registered environments (the bridge's
	// operator-bridge.environments answer). Nil lists the environments that
	// have health events.
	Environments func() []events.EnvironmentInfo

	// History is how many deploy results the page keeps (default 200).
	History int
	// Lookback is how many of DEPLOY's last messages are read at start to
	// find recent results, rollouts in progress and the versions applied
	// last (default 10000).
	Lookback int
	// DeadLetters is how many recent dead letters are shown (default 10).
	DeadLetters int
	// MaxStreams bounds the live connections (open pages) at once; more
	// get 503 (default 100).
	MaxStreams int
	// Coalesce is how long a live connection gathers changes before it
	// sends them (default 250ms): at most one update per section per period.
	Coalesce time.Duration
	// KeepAlive is the period of the comments that keep an idle live
	// connection open through proxies (default 15s).
	KeepAlive time.Duration
	// RetryDelay is the wait before a stream is followed anew after an
	// error (default 2s).
	RetryDelay time.Duration
	// SignOut shows a sign-out button (the ops address needs a token).
	SignOut bool

	// Logger receives the page's few warnings; nil discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.JetStream == nil {
		return errors.New("statuspage: nil JetStream")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.History, 200)
	def(&c.Lookback, 10000)
	def(&c.DeadLetters, 10)
	def(&c.MaxStreams, 100)
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&c.Coalesce, 250*time.Millisecond)
	defDur(&c.KeepAlive, 15*time.Second)
	defDur(&c.RetryDelay, 2*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Page is the status page of one replica: an http.Handler serving the page
// at /, its live updates at /events and its assets under /assets/, and the
// stream followers that feed it (Run).
type Page struct {
	cfg     Config
	log     *slog.Logger
	board   *board
	tmpl    *template.Template
	mux     *http.ServeMux
	streams chan struct{} // MaxStreams tokens: one per open live connection
	done    chan struct{} // closed when Run returns: live connections end
	once    sync.Once

	renderMu   sync.Mutex
	renderings map[filter]*rendering // the latest per filter, shared by live connections
}

// New checks cfg and prepares a page; nothing touches NATS before Run.
func New(cfg Config) (*Page, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	p := &Page{
		cfg:        cfg,
		log:        cfg.Logger,
		board:      newBoard(limits{results: cfg.History, rollouts: 500, applied: 5000, deadLetters: cfg.DeadLetters}),
		tmpl:       tmpl,
		streams:    make(chan struct{}, cfg.MaxStreams),
		done:       make(chan struct{}),
		renderings: map[filter]*rendering{},
	}
	static, _ := fs.Sub(assets, "assets")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.servePage)
	mux.HandleFunc("GET /events", p.serveEvents)
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", staticFiles(static)))
	p.mux = mux
	return p, nil
}

// ServeHTTP serves the page, its live updates and its assets.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// Run follows the streams until ctx ends, then ends the live connections
// and returns once its goroutines have stopped. The page serves what it has
// read so far meanwhile.
func (p *Page) Run(ctx context.Context) error {
	defer p.once.Do(func() { close(p.done) })
	var wg sync.WaitGroup
	for _, f := range p.followers() {
		wg.Go(func() { p.follow(ctx, f) })
	}
	// Dead letters age out and are purged without a message to follow:
	// their count is read again now and then.
	wg.Go(func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if st, err := p.cfg.JetStream.Stream(ctx, events.StreamDeadLetter); err == nil {
				_ = p.countDeadLetters(ctx, st)
			}
		}
	})
	wg.Wait()
	return nil
}

// staticFiles serves the embedded assets; they change only with the
// binary, so browsers may keep them for a while.
func staticFiles(fsys fs.FS) http.Handler {
	h := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

func (p *Page) servePage(w http.ResponseWriter, r *http.Request) {
	v := p.view(parseFilter(r.URL.Query()))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	setSecurityHeaders(w.Header())
	if err := p.tmpl.ExecuteTemplate(w, "page", v); err != nil {
		p.log.Warn("status page: render", "err", err)
	}
}

// setSecurityHeaders keeps the page to its own scripts and styles and out
// of frames.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}
