package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// useColor reports whether to colour what goes to w: a terminal, and
// NO_COLOR not set.
func (c *cli) useColor(w io.Writer) bool {
	return isTerminal(w) && c.getenv("NO_COLOR") == "" && c.getenv("TERM") != "dumb"
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger is the one place that picks the log handler: tint's colour text
// on a terminal (format auto) or when asked (text), JSON otherwise.
func (c *cli) newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	jsonOpts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationText}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, jsonOpts))
	case "text":
		return slog.New(tint.NewHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly, NoColor: !c.useColor(w)}))
	default:
		if isTerminal(w) {
			return slog.New(tint.NewHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly, NoColor: !c.useColor(w)}))
		}
		return slog.New(slog.NewJSONHandler(w, jsonOpts))
	}
}

// durationText writes durations as people read them ("493µs", "15s")
// instead of slog's JSON default, a number of nanoseconds.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// palette colours text for people when enabled.
type palette struct{ on bool }

func (p palette) wrap(code, s string) string {
	if !p.on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p palette) green(s string) string  { return p.wrap("32", s) }
func (p palette) red(s string) string    { return p.wrap("31", s) }
func (p palette) yellow(s string) string { return p.wrap("33", s) }
func (p palette) cyan(s string) string   { return p.wrap("36", s) }
func (p palette) dim(s string) string    { return p.wrap("2", s) }
func (p palette) bold(s string) string   { return p.wrap("1", s) }
