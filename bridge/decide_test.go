package bridge

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	const window = 10 * time.Minute
	tests := []struct {
		name      string
		f         finding
		age       time.Duration
		delivered uint64
		hint      time.Duration
		want      action
		wantDelay time.Duration
	}{
		{"result stored is acked", settled, time.Hour, 1, 0, ackAfterResult, 0},
		{"unidentifiable goes to dead letters", unidentifiable, 0, 1, 0, deadLetter, 0},
		{"not started while stopping is nakked at once", notStarted, 0, 1, 0, nakNow, 0},
		{"first retry waits the base delay", retryable, time.Second, 1, 0, nakWithDelay, retryBase},
		{"delay grows with deliveries", retryable, time.Second, 3, 0, nakWithDelay, 4 * retryBase},
		{"delay is capped", retryable, time.Second, 40, 0, nakWithDelay, retryMax},
		{"delay ends with the window", retryable, window - 2*time.Second, 40, 0, nakWithDelay, 2 * time.Second},
		{"spent window fails", retryable, window, 1, 0, failAfterWindow, 0},
		{"blocked waits its hint", blocked, time.Second, 7, 3 * time.Second, nakWithDelay, 3 * time.Second},
		{"blocked without hint backs off", blocked, time.Second, 2, 0, nakWithDelay, 2 * retryBase},
		{"blocked past the window fails", blocked, window + time.Second, 2, time.Second, failAfterWindow, 0},
		{"tiny hint is raised to the minimum", blocked, 0, 1, time.Microsecond, nakWithDelay, retryMin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, delay := decide(tt.f, tt.age, window, tt.delivered, tt.hint)
			if got != tt.want || delay != tt.wantDelay {
				t.Fatalf("decide = (%v, %v), want (%v, %v)", got, delay, tt.want, tt.wantDelay)
			}
		})
	}
}
