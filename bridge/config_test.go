package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
)

func TestNewRejectsNegativeSettings(t *testing.T) {
	w := newWorld(t)
	f, err := newFactory(t)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  bridge.Config
		want string
	}{
		{"operator timeout", bridge.Config{OperatorTimeout: -time.Second}, "OperatorTimeout -1s is negative"},
		{"retry window", bridge.Config{RetryWindow: -time.Minute}, "RetryWindow -1m0s is negative"},
		{"health interval", bridge.Config{HealthInterval: -time.Second}, "HealthInterval -1s is negative"},
		{"ack wait", bridge.Config{AckWait: -time.Second}, "AckWait -1s is negative"},
		{"shutdown grace", bridge.Config{ShutdownGrace: -time.Second}, "ShutdownGrace -1s is negative"},
		{"max clock skew", bridge.Config{MaxClockSkew: -time.Second}, "MaxClockSkew -1s is negative"},
		{"max in flight", bridge.Config{MaxInFlight: -1}, "MaxInFlight -1 is negative"},
		{"ack wait past the duplicate window", bridge.Config{AckWait: 2 * time.Minute}, "inside the 2m duplicate window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bridge.New(w.nc, f, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// Every problem is named at once.
	_, err = bridge.New(w.nc, f, bridge.Config{OperatorTimeout: -1, ShutdownGrace: -1})
	if err == nil || !strings.Contains(err.Error(), "OperatorTimeout") || !strings.Contains(err.Error(), "ShutdownGrace") {
		t.Fatalf("New with two negative settings = %v, want both named", err)
	}
}

// The zero Config manages the streams, as MANAGE_STREAMS defaults to true.
func TestZeroConfigCreatesTheStreams(t *testing.T) {
	w := newWorld(t)
	f, err := newFactory(t)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(w.connect(), f, bridge.Config{EnvironmentsFile: w.file, HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	w.eventually(10*time.Second, "bridge ready", b.Ready)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, sc := range events.StreamConfigs() {
		if _, err := w.js.Stream(t.Context(), sc.Name); err != nil {
			t.Errorf("stream %s after a run with the zero Config: %v", sc.Name, err)
		}
	}
}
