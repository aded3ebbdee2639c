package operator_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// httpServer serves h on 127.0.0.1 for the test and returns its URL.
func httpServer(t testing.TB, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}
