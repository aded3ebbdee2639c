package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestJSONLogDurations(t *testing.T) {
	var b bytes.Buffer
	c := &cli{getenv: func(string) string { return "" }}
	log := c.newLogger(&b, slog.LevelInfo, "json")
	log.Info("handled", "duration", 493*time.Microsecond, slog.Group("shutdown", "grace", 15*time.Second), "attempts", 2)
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, b.String())
	}
	delete(got, "time")
	want := map[string]any{"level": "INFO", "msg": "handled", "duration": "493µs",
		"shutdown": map[string]any{"grace": "15s"}, "attempts": float64(2)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line (-want +got):\n%s", diff)
	}
}
