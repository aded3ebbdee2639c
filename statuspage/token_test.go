package statuspage_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/boreas/operator-bridge/statuspage"
)

const token = "s3cret-ops-token"

// opsMux stands for the bridge's ops handler.
func opsMux() http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/debug/pprof/", "/events", "/assets/style.css", "/{$}"} {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok " + p)) })
	}
	return mux
}

func TestRequireToken(t *testing.T) {
	srv := httptest.NewServer(statuspage.RequireToken(token, opsMux()))
	defer srv.Close()
	session := signInCookie(t, srv.URL)

	tests := []struct {
		name   string
		path   string
		header map[string]string
		cookie *http.Cookie
		want   int
	}{
		{"healthz open", "/healthz", nil, nil, http.StatusOK},
		{"readyz open", "/readyz", nil, nil, http.StatusOK},
		{"assets open", "/assets/style.css", nil, nil, http.StatusOK},
		{"page without token", "/", nil, nil, http.StatusUnauthorized},
		{"metrics without token", "/metrics", nil, nil, http.StatusUnauthorized},
		{"pprof without token", "/debug/pprof/", nil, nil, http.StatusUnauthorized},
		{"events without token", "/events", nil, nil, http.StatusUnauthorized},
		{"metrics with token", "/metrics", map[string]string{"Authorization": "Bearer " + token}, nil, http.StatusOK},
		{"pprof with token", "/debug/pprof/", map[string]string{"Authorization": "Bearer " + token}, nil, http.StatusOK},
		{"page with token", "/", map[string]string{"Authorization": "bearer " + token}, nil, http.StatusOK},
		{"wrong token", "/metrics", map[string]string{"Authorization": "Bearer nope"}, nil, http.StatusUnauthorized},
		{"basic auth is not the token", "/metrics", map[string]string{"Authorization": "Basic " + token}, nil, http.StatusUnauthorized},
		{"token as a query parameter is not accepted", "/events?token=" + token, nil, nil, http.StatusUnauthorized},
		{"page with session", "/", nil, session, http.StatusOK},
		{"events with session", "/events", nil, session, http.StatusOK},
		{"forged session", "/", nil, &http.Cookie{Name: statuspage.SessionCookie, Value: token}, http.StatusUnauthorized},
		{"wrong bearer beats a good cookie", "/", map[string]string{"Authorization": "Bearer nope"}, session, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.cookie != nil {
				req.AddCookie(tt.cookie)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s: %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
			if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// signInCookie signs in with the form and returns the session cookie.
func signInCookie(t *testing.T, base string) *http.Cookie {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(base+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign in: %s to %q, want 303 to /", resp.Status, resp.Header.Get("Location"))
	}
	for _, c := range resp.Cookies() {
		if c.Name == statuspage.SessionCookie {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 0 || !c.Expires.IsZero() {
				t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, for the browser session", c)
			}
			if strings.Contains(c.Value, token) {
				t.Error("the session cookie carries the token itself")
			}
			return c
		}
	}
	t.Fatal("sign in set no session cookie")
	return nil
}

func TestSignInForm(t *testing.T) {
	srv := httptest.NewServer(statuspage.RequireToken(token, opsMux()))
	defer srv.Close()

	// A browser visiting the page gets the form.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `<form class="filter" method="post" action="/login">`) {
		t.Errorf("browser visit: %d, want 401 with the sign-in form:\n%s", resp.StatusCode, body)
	}

	// A wrong token: the form again, saying so.
	resp, err = http.PostForm(srv.URL+"/login", url.Values{"token": {"guess"}})
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not the right one") || len(resp.Cookies()) != 0 {
		t.Errorf("wrong token: %d, cookies %v:\n%s", resp.StatusCode, resp.Cookies(), body)
	}

	// Signing out clears the cookie.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/logout", nil)
	req.AddCookie(signInCookie(t, srv.URL))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cleared := false
	for _, c := range resp.Cookies() {
		cleared = cleared || (c.Name == statuspage.SessionCookie && c.MaxAge < 0)
	}
	if resp.StatusCode != http.StatusSeeOther || !cleared {
		t.Errorf("sign out: %s, cookies %v: want 303 clearing the session", resp.Status, resp.Cookies())
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
