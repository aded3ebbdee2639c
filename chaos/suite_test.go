//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChaos is the fault suite (make chaos-short, make chaos). It fails when
// the bridge broke a promise; the report says which and where.
func TestChaos(t *testing.T) {
	cfg, err := ConfigFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir = t.TempDir()
	cfg.Root = ".."
	cfg.Logf = t.Logf
	if cfg.Duration == 0 {
		cfg.Duration = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), cfg.Duration+10*time.Minute)
	defer cancel()

	h, err := Run(ctx, cfg)
	if err != nil {
		t.Errorf("the run itself went wrong: %v", err)
	}
	f := Check(h)
	var report bytes.Buffer
	if err := f.Report(&report, "Fault suite"); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", report.String())
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, report.Bytes(), 0o644); err != nil {
			t.Errorf("CHAOS_REPORT: %v", err)
		}
	}
	if !f.OK() || err != nil {
		logTails(t, cfg.Dir, 60)
	}
	if !f.OK() {
		t.Errorf("the bridge broke its promises under faults (seed %d): %d violations, see the report above", h.Seed, len(f.Violations))
	}
}

// logTails prints the last n lines of every replica's log.
func logTails(t *testing.T, dir string, n int) {
	paths, _ := filepath.Glob(filepath.Join(dir, "replica-*.log"))
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if len(lines) > n {
				lines = lines[1:]
			}
		}
		f.Close()
		t.Logf("----- %s (last %d lines)\n%s", filepath.Base(p), len(lines), strings.Join(lines, "\n"))
	}
}
