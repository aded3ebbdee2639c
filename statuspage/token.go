package statuspage

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"html/template"
	"net/http"
	"strings"
)

// SessionCookie is the cookie a browser gets when it signs in with the ops
// token: HttpOnly, SameSite=Strict, for the browser session only.
const SessionCookie = "operator_bridge_ops"

// openPath reports the requests that need no token: the probes, and the assets the sign-in form uses.
func openPath(r *http.Request) bool {
	switch p := r.URL.Path; {
	case p == "/healthz", p == "/readyz":
		return true
	case strings.HasPrefix(p, "/assets/") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return true
	}
	return false
}

// RequireToken protects next with a bearer token: every request but
// /healthz, /readyz and the page's assets needs "Authorization: Bearer
// <token>" or the session cookie. Browsers, which cannot add the header to
// a page visit or to an EventSource, sign in once with a form: POST /login
// with the token sets the session cookie (HttpOnly, so scripts never see
// it; SameSite=Strict, so other sites cannot use it; no expiry, so it ends
// with the browser session), and POST /logout clears it. The cookie holds
// a keyed hash of the token, not the token, and every replica with the
// same token accepts it.
func RequireToken(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	session := sessionValue(token)
	tmpl := template.Must(parseTemplates())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openPath(r) {
			next.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/login" && r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
			got := sha256.Sum256([]byte(r.PostFormValue("token")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				signIn(w, tmpl, "That token is not the right one.")
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name: SessionCookie, Value: session, Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
			})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		if r.URL.Path == "/logout" && r.Method == http.MethodPost {
			http.SetCookie(w, &http.Cookie{Name: SessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		if authorized(r, want, session) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="operator-bridge"`)
		if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
			signIn(w, tmpl, "")
			return
		}
		http.Error(w, "unauthorized: this address needs Authorization: Bearer <OPERATOR_BRIDGE_OPS_TOKEN>", http.StatusUnauthorized)
	})
}

// authorized checks the bearer token, then the session cookie.
func authorized(r *http.Request, want [sha256.Size]byte, session string) bool {
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		return subtle.ConstantTimeCompare(got[:], want[:]) == 1
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		return subtle.ConstantTimeCompare([]byte(c.Value), []byte(session)) == 1
	}
	return false
}

// sessionValue is the session cookie's value for token.
func sessionValue(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("operator-bridge ops session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// signIn answers 401 with the sign-in form.
func signIn(w http.ResponseWriter, tmpl *template.Template, problem string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	setSecurityHeaders(w.Header())
	w.WriteHeader(http.StatusUnauthorized)
	_ = tmpl.ExecuteTemplate(w, "signin", problem)
}
