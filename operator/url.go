package operator

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// parseOperatorURL parses an operator base URL: http or https, with a host.
// A trailing slash of its path is dropped.
func parseOperatorURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("invalid operator URL %q: %w", redactString(raw), unwrapURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid operator URL %q: scheme must be http or https", redactURL(u))
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("invalid operator URL %q: no host", redactURL(u))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("invalid operator URL %q: query and fragment are not allowed", redactURL(u))
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

func unwrapURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// redactURL returns u as a string without its user information.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// redactString removes user information from a URL string, even one that
// does not parse.
func redactString(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return redactURL(u)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	hostEnd := strings.IndexAny(rest, "/?#")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	if at := strings.LastIndex(rest[:hostEnd], "@"); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + "://" + rest
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
