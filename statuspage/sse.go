package statuspage

import (
	"bytes"
	"net/http"
	"strings"
	"time"
)

// serveEvents streams the page's sections as server-sent events: all of
// them when the connection opens (so a reconnecting page catches up), then
// each section again whenever its content changes, gathered over
// Config.Coalesce. The event's name is the section's, its data the
// section's HTML rendered with the page's filter.
func (p *Page) serveEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case p.streams <- struct{}{}:
		defer func() { <-p.streams }()
	default:
		http.Error(w, "too many open status pages", http.StatusServiceUnavailable)
		return
	}
	f := parseFilter(r.URL.Query())
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell proxies not to buffer the stream
	w.WriteHeader(http.StatusOK)

	var (
		gensSent [numSections]uint64 // generations sent
		htmlSent [numSections]string // the HTML sent
		out      bytes.Buffer
	)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// Reconnect after 2 s when the connection drops.
	if !write([]byte("retry: 2000\n\n")) {
		return
	}
	keepAlive := time.NewTicker(p.cfg.KeepAlive)
	defer keepAlive.Stop()
	for {
		gens, changed := p.board.watch()
		if gens != gensSent {
			now := p.rendered(f, gens)
			out.Reset()
			for s := range numSections {
				if now.html[s] != htmlSent[s] {
					htmlSent[s] = now.html[s]
					writeEvent(&out, sectionNames[s], now.html[s])
				}
			}
			gensSent = gens
			if out.Len() > 0 && !write(out.Bytes()) {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-p.done:
			return
		case <-keepAlive.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		case <-changed:
			// Gather what else changes meanwhile into one update.
			t := time.NewTimer(p.cfg.Coalesce)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-p.done:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// rendering is the page's sections rendered for one filter at one set of
// generations.
type rendering struct {
	gens [numSections]uint64
	html [numSections]string
}

// maxRenderings bounds the renderings kept: one per filter in use.
const maxRenderings = 64

// rendered returns the sections for filter f at generations gens, rendering
// them only when no open page with the same filter has already: a hundred
// open pages cost one rendering per change, not a hundred.
func (p *Page) rendered(f filter, gens [numSections]uint64) *rendering {
	p.renderMu.Lock()
	r := p.renderings[f]
	p.renderMu.Unlock()
	if r != nil && r.gens == gens {
		return r
	}
	v := p.view(f)
	r = &rendering{gens: gens}
	var buf bytes.Buffer
	for s := range numSections {
		buf.Reset()
		if err := p.tmpl.ExecuteTemplate(&buf, sectionNames[s], v); err != nil {
			p.log.Warn("status page: render", "section", sectionNames[s], "err", err)
			continue
		}
		r.html[s] = buf.String()
	}
	p.renderMu.Lock()
	if len(p.renderings) >= maxRenderings {
		clear(p.renderings)
	}
	p.renderings[f] = r
	p.renderMu.Unlock()
	return r
}

// writeEvent writes one server-sent event; each line of data gets its own
// data field, which the browser joins with newlines again.
func writeEvent(out *bytes.Buffer, name, data string) {
	out.WriteString("event: ")
	out.WriteString(name)
	out.WriteByte('\n')
	for line := range strings.Lines(data) {
		out.WriteString("data: ")
		out.WriteString(strings.TrimRight(line, "\r\n"))
		out.WriteByte('\n')
	}
	out.WriteByte('\n')
}
