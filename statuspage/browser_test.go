package statuspage_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

var update = flag.Bool("update", false, "write the browser test's screenshots to docs/ for the README")

// ScreenshotEnv names where the browser test saves its screenshot (default:
// the test's temporary folder); the dark one goes next to it.
const ScreenshotEnv = "STATUSPAGE_SCREENSHOT"

// chromium finds the browser, or skips the test when there is none (CI
// installs Debian's chromium package, see .ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary on PATH (apt-get install chromium)")
	return ""
}

const opsToken = "browser-test-token"

// TestBrowser opens the status page of a running bridge in headless
// Chromium: it signs in, sees the environments and their health, sees a
// deploy's result, a rollout, an operator going down and a dead letter
// appear without a reload, and sees the page say when the bridge is gone.
func TestBrowser(t *testing.T) {
	chrome := chromium(t)
	dir := t.TempDir()

	// A bridge with three environments on fake operators and the mock.
	ns, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	k8s := operatortest.NewServer(operator.Kubernetes)
	t.Cleanup(k8s.Close)
	pm := operatortest.NewServer(operator.Physical)
	t.Cleanup(pm.Close)
	envFile := filepath.Join(dir, "environments.yaml")
	envs := fmt.Sprintf(`- {id: prod-eu, name: production EU, type: k8s, operator_url: %q}
- {id: lab-racks, name: lab machines, type: pm, operator_url: %q}
- {id: dev, name: development, type: mock}
`, k8s.URL, pm.URL)
	if err := os.WriteFile(envFile, []byte(envs), 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	settings := operator.DefaultSettings()
	settings.Timeout = time.Second
	factory, err := operator.NewFactory(settings)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	b, err := bridge.New(nc, factory, bridge.Config{
		Instance: "browser-test", EnvironmentsFile: envFile,
		OperatorTimeout: time.Second, RetryWindow: 5 * time.Second, HealthInterval: time.Second,
		HTTPAddr: addr, OpsToken: opsToken, Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopBridge := context.WithCancel(context.Background())
	bridgeDone := make(chan error, 1)
	go func() { bridgeDone <- b.Run(bctx) }()
	t.Cleanup(func() {
		stopBridge()
		<-bridgeDone
	})
	base := "http://" + addr
	waitFor(t, 30*time.Second, "the bridge ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// The browser.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 1000))
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// The first run starts the browser; it gets no timeout of its own.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("open the page: %v", err)
	}

	shots := os.Getenv(ScreenshotEnv)
	if shots == "" {
		shots = filepath.Join(t.TempDir(), "statuspage.png")
	}
	// step runs actions with a generous deadline; on failure it saves what
	// the browser shows, for the test's artifacts.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			failed := filepath.Join(filepath.Dir(shots), "statuspage-failed.png")
			fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
			defer fcancel()
			if png, serr := chromedp.Run(fctx, chromedp.FullScreenshot(100)); serr == nil {
				_ = os.WriteFile(failed, png, 0o644)
			}
			html, _ := chromedp.Run(fctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("%s: %v\nscreenshot: %s\npage:\n%s", what, err, failed, html)
		}
	}
	// until waits for a JavaScript condition on the page; a poll that a
	// navigation interrupts starts again on the new page.
	until := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		poll := discard(chromedp.Poll[bool](js, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
		for {
			sctx, cancel := context.WithDeadline(ctx, deadline)
			err := chromedp.Do(sctx, poll)
			cancel()
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		step(what, poll) // passes at once, or fails with what the page shows
	}

	// The ops address asks for the token once, with a form.
	step("sign in",
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), opsToken),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#envs")),
	)

	// Every environment, healthy, circuits closed, and the page is live.
	for _, env := range []string{"prod-eu", "lab-racks", "dev"} {
		until(env+" healthy", fmt.Sprintf(`(() => { const r = document.getElementById("env-%s");
			return !!r && r.dataset.state === "healthy" && r.textContent.includes("ms") })()`, env))
	}
	until("the circuits closed", `["prod-eu", "lab-racks"].every(id => document.getElementById("env-" + id).dataset.circuit === "closed")`)
	until("live", `document.getElementById("conn").dataset.state === "live"`)

	// A marker that a reload would wipe.
	step("mark the page", discard(chromedp.Evaluate[bool](`window.sameDocument = true`)))

	// A deploy appears without a reload, and so does its version applied.
	msg, _, err := events.NewDeployRequest("/test/master", "prod-eu", events.DeployRequest{App: "checkout", Version: "v2.4.0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	until("the deploy result", `[...document.querySelectorAll("#results tr")].some(r =>
		r.dataset.outcome === "succeeded" && r.textContent.includes("checkout") && r.textContent.includes("v2.4.0"))`)
	until("the version applied", `[...document.querySelectorAll("#applied tr")].some(r =>
		r.textContent.includes("prod-eu") && r.textContent.includes("checkout") && r.textContent.includes("v2.4.0"))`)

	// Another result arrives: the rows already shown keep their elements
	// (a focused link or a selection in them stays put).
	step("mark the result row", discard(chromedp.Evaluate[bool](`document.querySelector("#results tr[data-outcome]").kept = true`)))
	msg, _, err = events.NewDeployRequest("/test/master", "dev", events.DeployRequest{App: "search", Version: "v1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	until("the second result above the first, the first row kept", `(() => {
		const rows = [...document.querySelectorAll("#results tr")];
		return rows.length === 2 && rows[0].textContent.includes("search") && rows[1].kept === true })()`)

	// A rollout in progress, as the rollout tracker reports it.
	publishProgress(t, js, map[string]any{"request_id": "rollout-1", "environment": "lab-racks", "app": "billing",
		"target":   []map[string]any{{"version": "v7.1", "percent": 0.25}, {"version": "v7.0", "percent": 0.75}},
		"observed": map[string]any{"app": "billing", "versions": []map[string]any{{"version": "v7.1", "percent": 0.1, "healthy": map[string]any{"level": 100}}, {"version": "v7.0", "percent": 0.9, "healthy": map[string]any{"level": 100}}}},
		"phase":    "progressing", "message": "v7.1 at 10% of 25%", "elapsed_ms": 42000})
	until("the rollout", `!!document.getElementById("ro-rollout-1")`)

	// A message that cannot be identified goes to the dead letters.
	if _, err := js.Publish(t.Context(), events.DeployRequestSubject("prod-eu"), []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	until("the dead letter", `document.getElementById("deadletters").textContent.includes("1 message in")`)

	// The physical-machine operator goes down: its environment turns
	// unhealthy, then its circuit opens.
	pm.SetFault(operatortest.Fault{HealthDown: true, Always503: true})
	until("lab-racks unhealthy", `document.getElementById("env-lab-racks").dataset.state === "unhealthy"`)
	until("lab-racks circuit open", `document.getElementById("env-lab-racks").dataset.circuit === "open"`)
	until("the summary", `document.getElementById("summary").textContent.replace(/\s+/g, " ").includes("1 unhealthy 1 circuit open")`)
	until("prod-eu still healthy", `document.getElementById("env-prod-eu").dataset.state === "healthy"`)
	until("no reload happened", `window.sameDocument === true`)

	// Screenshots, light and dark.
	save := func(path, scheme string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if _, err := chromedp.Call(sctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		}); err != nil {
			t.Fatalf("%s colour scheme: %v", scheme, err)
		}
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	dark := filepath.Join(filepath.Dir(shots), "statuspage-dark.png")
	save(shots, "light")
	save(dark, "dark")
	if *update {
		save(filepath.Join("..", "docs", "statuspage.png"), "light")
		save(filepath.Join("..", "docs", "statuspage-dark.png"), "dark")
	}

	// By keyboard: the first Tab reaches the skip link; the filter form,
	// typed into and sent with Enter, narrows the page, which is live again.
	step("tab to the skip link", chromedp.KeyEvent(kb.Tab))
	until("the skip link focused", `document.activeElement.classList.contains("skip")`)
	step("filter by keyboard", chromedp.Focus(chromedp.CSS("#f-env")), chromedp.SendKeys(chromedp.CSS("#f-env"), "lab\r"))
	until("the filtered page", `new URLSearchParams(location.search).get("env") === "lab" &&
		document.querySelectorAll("#envs tr").length === 1 && !!document.getElementById("env-lab-racks")`)
	until("live again", `document.getElementById("conn").dataset.state === "live"`)

	// The bridge stops: the page says its connection is lost.
	stopBridge()
	if err := <-bridgeDone; err != nil {
		t.Fatalf("bridge Run: %v", err)
	}
	bridgeDone <- nil // for the cleanup
	until("connection lost", `document.getElementById("conn").dataset.state === "lost"`)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// discard makes an action that returns a value one that returns none.
func discard[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}
