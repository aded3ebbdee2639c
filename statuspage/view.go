package statuspage

import (
	"cmp"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// filter narrows the page to environments and apps whose names contain
// Env and App (case-insensitive); empty matches everything.
type filter struct {
	Env, App string
}

func parseFilter(q url.Values) filter {
	return filter{Env: strings.TrimSpace(q.Get("env")), App: strings.TrimSpace(q.Get("app"))}
}

// Active reports whether the filter narrows anything.
func (f filter) Active() bool { return f.Env != "" || f.App != "" }

// Query is the filter as a query string ("" or "?env=...&app=...").
func (f filter) Query() string {
	q := url.Values{}
	if f.Env != "" {
		q.Set("env", f.Env)
	}
	if f.App != "" {
		q.Set("app", f.App)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func contains(s, sub string) bool {
	return sub == "" || strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func (f filter) env(env string) bool       { return contains(env, f.Env) }
func (f filter) pair(env, app string) bool { return contains(env, f.Env) && contains(app, f.App) }

// envRow is one environment as the page shows it.
type envRow struct {
	events.EnvironmentInfo
	Health *events.Health
}

// State is "healthy", "unhealthy", "inactive" or "unknown" (no check yet).
func (e envRow) State() string {
	switch {
	case !e.Active:
		return "inactive"
	case e.Health == nil:
		return "unknown"
	case e.Health.Healthy:
		return "healthy"
	default:
		return "unhealthy"
	}
}

// Circuit is the circuit state reported with the last health event.
func (e envRow) Circuit() string {
	if e.Health == nil || e.Health.Circuit == "" {
		return "unknown"
	}
	return e.Health.Circuit
}

// summary counts what the page shows.
type summary struct {
	Envs, Healthy, Unhealthy, Unknown, Open int
	Rollouts                                int
	DeadLetters                             uint64
	Syncing                                 bool
}

// view is everything one render of the page shows, taken at once.
type view struct {
	Filter      filter
	SignOut     bool
	Summary     summary
	Envs        []envRow
	Rollouts    []rollout
	Results     []result // newest first
	Applied     []applied
	DeadLetters []deadLetter // newest first
	History     int
	// Hidden counts the rows left out of the tables past their limits.
	Hidden struct{ Envs, Applied int }
}

// The most rows the environments and applied-last tables show; the
// summary still counts them all, and the filter finds the others.
const (
	maxEnvs    = 1000
	maxApplied = 500
)

// view takes the board's state through f.
func (p *Page) view(f filter) view {
	var registered []events.EnvironmentInfo
	if p.cfg.Environments != nil {
		registered = p.cfg.Environments()
	}
	v := view{Filter: f, SignOut: p.cfg.SignOut, History: p.cfg.History}

	b := p.board
	b.mu.RLock()
	if p.cfg.Environments == nil {
		for id, h := range b.health {
			registered = append(registered, events.EnvironmentInfo{ID: id, Type: h.Operator, Endpoint: h.Endpoint, Active: true})
		}
	}
	for _, e := range registered {
		if !f.env(e.ID) {
			continue
		}
		row := envRow{EnvironmentInfo: e, Health: e.Health}
		// The stream's health is the cluster's latest; this replica's own
		// stands in until the stream has one.
		if h, ok := b.health[e.ID]; ok && (row.Health == nil || !row.Health.CheckedAt.After(h.CheckedAt)) {
			row.Health = &h
		}
		row.Endpoint = withoutCredentials(cmp.Or(row.Endpoint, healthEndpoint(row.Health)))
		v.Envs = append(v.Envs, row)
	}
	for _, r := range b.rollouts {
		if f.pair(r.Environment, r.App) {
			v.Rollouts = append(v.Rollouts, r)
		}
	}
	for i := len(b.results) - 1; i >= 0; i-- {
		if r := b.results[i]; f.pair(r.Environment, r.App) {
			v.Results = append(v.Results, r)
		}
	}
	for _, a := range b.applied {
		if f.pair(a.Environment, a.App) {
			v.Applied = append(v.Applied, a)
		}
	}
	for i := len(b.dead) - 1; i >= 0; i-- {
		if d := b.dead[i]; f.Env == "" || f.env(lastToken(d.Subject)) {
			v.DeadLetters = append(v.DeadLetters, d)
		}
	}
	v.Summary.DeadLetters = b.deadN
	for _, s := range b.synced {
		v.Summary.Syncing = v.Summary.Syncing || !s
	}
	b.mu.RUnlock()

	slices.SortFunc(v.Envs, func(a, b envRow) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(v.Rollouts, func(a, b rollout) int { return b.Time.Compare(a.Time) })
	slices.SortFunc(v.Applied, func(a, b applied) int {
		return cmp.Or(strings.Compare(a.Environment, b.Environment), strings.Compare(a.App, b.App))
	})
	if len(v.Applied) > maxApplied {
		v.Hidden.Applied = len(v.Applied) - maxApplied
		v.Applied = v.Applied[:maxApplied]
	}
	v.Summary.Envs, v.Summary.Rollouts = len(v.Envs), len(v.Rollouts)
	for _, e := range v.Envs {
		switch e.State() {
		case "healthy":
			v.Summary.Healthy++
		case "unhealthy":
			v.Summary.Unhealthy++
		case "unknown":
			v.Summary.Unknown++
		}
		if e.Circuit() == "open" || e.Circuit() == "half_open" {
			v.Summary.Open++
		}
	}
	if len(v.Envs) > maxEnvs {
		v.Hidden.Envs = len(v.Envs) - maxEnvs
		v.Envs = v.Envs[:maxEnvs]
	}
	return v
}

func healthEndpoint(h *events.Health) string {
	if h == nil {
		return ""
	}
	return h.Endpoint
}

// withoutCredentials drops a URL's user information, should one reach the
// page (the bridge already leaves it out).
func withoutCredentials(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}

func lastToken(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

var funcs = template.FuncMap{
	// when formats a time as UTC, to the second.
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// percent formats a share of 1 as a percentage.
	"percent": func(f float64) string {
		return strconv.FormatFloat(f*100, 'f', -1, 64) + "%"
	},
	// duration formats milliseconds.
	"duration": func(ms int64) string {
		d := time.Duration(ms) * time.Millisecond
		if d < time.Second {
			return fmt.Sprintf("%d ms", ms)
		}
		return d.Round(100 * time.Millisecond).String()
	},
	// plural picks the word for n things.
	"plural": func(n any, one, many string) string {
		if fmt.Sprint(n) == "1" {
			return one
		}
		return many
	},
}

func parseTemplates() (*template.Template, error) {
	return template.New("").Funcs(funcs).ParseFS(templates, "templates/*.html")
}
