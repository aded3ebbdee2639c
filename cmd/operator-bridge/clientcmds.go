package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

const clientHelp = `
Connection: --nats and the auth flags default to the OPERATOR_BRIDGE_NATS_*
variables that serve reads; without OPERATOR_BRIDGE_NATS_URL, --nats is where
serve's embedded server listens (OPERATOR_BRIDGE_EMBEDDED_NATS_LISTEN,
default 127.0.0.1:4222).

` + exitCodesHelp

const deployUsage = `Usage: operator-bridge deploy --env ENV --app APP --version V [--deployments V=P,V=P] [--package JSON] [--timeout 30s] [--no-wait] [--progress auto|on|off]

Publishes a deploy request on deploy.request.<env> and waits for its result.
--deployments splits traffic between versions: V=P with P a fraction (0.2) or
a percentage (20%); a bare number over 1 is refused (write 20% or 0.2);
--version must be among them. --package (a JSON object) is passed to the
operator with --version's deployment. A request the bridge would reject (a
version with spaces, percents adding up to more than 1) is refused before it
is sent, with exit code 2.

Exit code 0 only when the deploy succeeded; 1 when it failed, was rejected
or superseded; 3 when no result came within --timeout; 130 when Ctrl-C
stopped the wait. In both of the last two the request stays stored and
queued, the bridge still applies it (or fails it once its retry window is
spent), and 'watch --env ENV' shows its result.

On a terminal, a deploy with no result after 2s shows that the request is
stored (its DEPLOY stream sequence), the operator's health as the bridge
sees it (its last error, the circuit state), and the time spent and left of
the retry window (--retry-window, the bridge's RETRY_WINDOW).
` + clientHelp

func runDeploy(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("deploy")
	var cf clientFlags
	cf.register(fs, c, 30*time.Second)
	env := fs.String("env", "", "environment `ID` (required)")
	app := fs.String("app", "", "app name (required)")
	ver := fs.String("version", "", "version to deploy (required)")
	deps := fs.String("deployments", "", "traffic split `V=P,V=P` (P a fraction or a percentage)")
	pkg := fs.String("package", "", "package `JSON` object for --version's deployment")
	noWait := fs.Bool("no-wait", false, "publish and return without waiting for the result")
	id := fs.String("id", "", "event id (default: a new UUID); re-sending an id within 2 minutes is stored once")
	window := 10 * time.Minute
	if v, err := time.ParseDuration(c.getenv(envPrefix + "RETRY_WINDOW")); err == nil && v > 0 {
		window = v
	}
	retryWindow := fs.Duration("retry-window", window, "the bridge's RETRY_WINDOW, for the progress shown ($"+envPrefix+"RETRY_WINDOW)")
	progress := fs.String("progress", "auto", "progress of a slow deploy on stderr: auto (on a terminal), on or off")
	if err := parseFlags(c, fs, deployUsage, args); err != nil {
		return err
	}
	if *progress != "auto" && *progress != "on" && *progress != "off" {
		return usageError("deploy: --progress %q: want auto, on or off", *progress)
	}
	if err := requireFlags(fs, "env", "app", "version"); err != nil {
		return err
	}
	if !events.ValidEnvironmentID(*env) {
		return usageError("deploy: --env %q is not an environment ID (1-64 of A-Z a-z 0-9 _ -)", *env)
	}
	req := events.DeployRequest{App: *app, Version: *ver}
	var err error
	if req.Deployments, err = parseDeployments(*deps, *ver, *pkg); err != nil {
		return usageError("deploy: %v", err)
	}
	if err := req.Validate(); err != nil { // what the bridge would reject
		if e, ok := errors.AsType[*events.Error](err); ok {
			return usageError("deploy: %s", e.Info().Message)
		}
		return usageError("deploy: %v", err)
	}

	bc, closeSession, err := cf.session("deploy")
	if err != nil {
		return err
	}
	defer closeSession()
	wctx, cancel := cf.callContext(ctx)
	defer cancel()
	pub, err := bc.publishDeploy(wctx, *env, *id, req)
	if err != nil {
		if wctx.Err() != nil { // publishing ran out of time
			err = withCode(exitTimeout, fmt.Errorf("request %s not stored on %s within %s: %w", pub.ID, pub.Subject, cf.timeout, err))
		} else if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = fmt.Errorf("%w: no stream stores %s (has a bridge started on this NATS?)", err, pub.Subject)
		}
		return cf.explain(err)
	}
	if *noWait {
		if cf.json {
			return writeJSON(c.stdout, pub)
		}
		fmt.Fprintf(c.stdout, "published request %s to %s (%s #%d)\n", pub.ID, pub.Subject, events.StreamDeploy, pub.Sequence)
		return nil
	}
	var view *progressView
	if !cf.json && (*progress == "on" || *progress == "auto" && isTerminal(c.stderr)) {
		view = &progressView{w: c.stderr, p: palette{on: c.useColor(c.stderr)}, redraw: isTerminal(c.stderr), retryWindow: *retryWindow, env: *env}
	}
	res, err := bc.waitDeploy(wctx, *env, req, pub, view)
	p := palette{on: !cf.json && c.useColor(c.stdout)}
	if err != nil {
		if r := cf.refusal(); r != nil {
			return r
		}
		follow := fmt.Sprintf("follow it with: %s watch --env %s", selfCommand(), *env)
		if ctx.Err() != nil { // Ctrl-C
			return withCode(exitInterrupted, fmt.Errorf("stopped waiting: request %s stays queued (%s #%d): the bridge still applies it, or fails it once the retry window is spent; %s",
				pub.ID, events.StreamDeploy, pub.Sequence, follow))
		}
		if wctx.Err() != nil {
			return withCode(exitTimeout, fmt.Errorf("no result within %s: request %s stays queued (%s #%d) and the bridge retries it until %s; %s",
				cf.timeout, pub.ID, events.StreamDeploy, pub.Sequence, pub.Stored.Add(*retryWindow).Local().Format("15:04:05"), follow))
		}
		return err
	}
	if cf.json {
		if err := writeJSON(c.stdout, res); err != nil {
			return err
		}
	} else {
		printDeployResult(c.stdout, p, res)
	}
	if res.Outcome != events.Succeeded {
		return withCode(exitFailed, nil)
	}
	return nil
}

// parseDeployments reads --deployments ("v2=0.2,v1=80%") and puts --package
// on the deployment of version.
func parseDeployments(s, version, pkg string) ([]events.Deployment, error) {
	var raw json.RawMessage
	if pkg != "" {
		if err := json.Unmarshal([]byte(pkg), &raw); err != nil || !strings.HasPrefix(strings.TrimSpace(pkg), "{") {
			return nil, fmt.Errorf("--package %q is not a JSON object", pkg)
		}
	}
	if s == "" {
		if raw == nil {
			return nil, nil
		}
		return []events.Deployment{{Version: version, Percent: 1, Package: raw}}, nil
	}
	var out []events.Deployment
	found := false
	for _, item := range strings.Split(s, ",") {
		v, ps, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("--deployments item %q: want VERSION=PERCENT", item)
		}
		scale := 1.0
		if strings.HasSuffix(ps, "%") {
			ps, scale = strings.TrimSuffix(ps, "%"), 0.01
		}
		f, err := strconv.ParseFloat(ps, 64)
		if err != nil {
			return nil, fmt.Errorf("--deployments item %q: %q is not a number (write a percent as 20%% or 0.2)", item, ps)
		}
		if scale == 1 && f > 1 {
			return nil, fmt.Errorf("--deployments item %q: %s is more than 1: write a percent as %s%% or %s", item, ps, ps, strconv.FormatFloat(f/100, 'g', -1, 64))
		}
		d := events.Deployment{Version: v, Percent: f * scale}
		if v == version {
			d.Package, found = raw, true
		}
		out = append(out, d)
	}
	if !found {
		return nil, fmt.Errorf("--deployments must include --version %q", version)
	}
	return out, nil
}

func printDeployResult(w io.Writer, p palette, r events.DeployResult) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "outcome\t%s\n", outcomeText(p, r.Outcome))
	fmt.Fprintf(tw, "environment\t%s\n", r.Environment)
	fmt.Fprintf(tw, "app\t%s\n", r.App)
	fmt.Fprintf(tw, "version\t%s\n", r.Version)
	if r.Operator != "" {
		fmt.Fprintf(tw, "operator\t%s\n", r.Operator)
	}
	fmt.Fprintf(tw, "attempts\t%d\n", r.Attempts)
	fmt.Fprintf(tw, "duration\t%s\n", time.Duration(r.DurationMS)*time.Millisecond)
	if r.Message != "" {
		fmt.Fprintf(tw, "message\t%s\n", r.Message)
	}
	if r.Error != nil {
		retry := "not retryable"
		if r.Error.Retryable {
			retry = "retryable"
		}
		fmt.Fprintf(tw, "error\t%s: %s (%s)\n", p.red(string(r.Error.Code)), r.Error.Message, retry)
	}
	fmt.Fprintf(tw, "request\t%s\n", p.dim(r.RequestID))
	tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

const statusUsage = `Usage: operator-bridge status --env ENV --app APP

Asks the bridge (operator-bridge.status.<env>) for an app's status: its
versions with their traffic share, nodes and health. Exit code 0 when the
operator answered, 1 when the answer is degraded (operator down, unknown or
inactive environment), 3 when no bridge answered.
` + clientHelp

func runStatus(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("status")
	var cf clientFlags
	cf.register(fs, c, 15*time.Second)
	env := fs.String("env", "", "environment `ID` (required)")
	app := fs.String("app", "", "app name (required)")
	if err := parseFlags(c, fs, statusUsage, args); err != nil {
		return err
	}
	if err := requireFlags(fs, "env", "app"); err != nil {
		return err
	}
	bc, closeSession, err := cf.session("status")
	if err != nil {
		return err
	}
	defer closeSession()
	rctx, cancel := cf.callContext(ctx)
	defer cancel()
	sr, err := bc.status(rctx, *env, *app)
	if err != nil {
		return cf.explain(err)
	}
	if cf.json {
		if err := writeJSON(c.stdout, sr); err != nil {
			return err
		}
	} else {
		printStatus(c.stdout, palette{on: c.useColor(c.stdout)}, sr)
	}
	if sr.Degraded {
		return withCode(exitFailed, nil)
	}
	return nil
}

func printStatus(w io.Writer, p palette, sr events.StatusResult) {
	fmt.Fprintf(w, "%s %s  %s %s  operator %s  %s\n", p.dim("environment"), sr.Environment, p.dim("app"), sr.App,
		orDash(sr.Operator), healthText(p, sr.Status.Healthy.Level))
	if sr.Degraded {
		msg := "degraded"
		if sr.Error != nil {
			msg += ": " + string(sr.Error.Code) + ": " + sr.Error.Message
		}
		fmt.Fprintln(w, p.red(msg))
	}
	if len(sr.Status.Versions) == 0 {
		fmt.Fprintln(w, "no versions deployed")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tPERCENT\tHEALTH\tNODES")
	for _, v := range sr.Status.Versions {
		var nodes []string
		for _, n := range v.Nodes {
			nodes = append(nodes, fmt.Sprintf("%s(%d)", n.Node, n.Healthy.Level))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", v.Version, percentText(v.Percent), v.Healthy.Level, orDash(strings.Join(nodes, " ")))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

const envsUsage = `Usage: operator-bridge envs [--wide] [--json]

Lists the environments the bridge knows (operator-bridge.environments): their
operator type and endpoint, whether they are active, and their last health.
A health error is cut to 40 characters; --wide and --json show it in full.
` + clientHelp

func runEnvs(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("envs")
	var cf clientFlags
	cf.register(fs, c, 10*time.Second)
	wide := fs.Bool("wide", false, "show health errors in full (the table cuts them short)")
	if err := parseFlags(c, fs, envsUsage, args); err != nil {
		return err
	}
	bc, closeSession, err := cf.session("envs")
	if err != nil {
		return err
	}
	defer closeSession()
	rctx, cancel := cf.callContext(ctx)
	defer cancel()
	envs, err := bc.environments(rctx)
	if err != nil {
		return cf.explain(err)
	}
	if cf.json {
		if envs == nil {
			envs = []events.EnvironmentInfo{}
		}
		return writeJSON(c.stdout, envs)
	}
	p := palette{on: c.useColor(c.stdout)}
	if len(envs) == 0 {
		fmt.Fprintln(c.stdout, "no environments registered")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTYPE\tENDPOINT\tACTIVE\tHEALTH\tCHECKED")
	for _, e := range envs {
		health, checked := "unknown", "-"
		if e.Health != nil {
			if e.Health.Healthy {
				health = p.green(fmt.Sprintf("healthy %dms", e.Health.LatencyMS))
			} else {
				msg := e.Health.Error
				if !*wide {
					msg = shorten(msg, healthWidth)
				}
				health = p.red("unhealthy: " + msg)
			}
			checked = e.Health.CheckedAt.Local().Format("15:04:05")
		}
		active := "yes"
		if !e.Active {
			active = p.yellow("no")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, orDash(e.Name), e.Type, e.Endpoint, active, health, checked)
	}
	return tw.Flush()
}

// healthWidth is how much of a health error the envs table shows without
// --wide; a dial error runs to 150 characters.
const healthWidth = 40

// shorten cuts s to n characters, marking the cut with "…".
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

const watchUsage = `Usage: operator-bridge watch [--from new|all|last|DURATION|TIME|SEQ] [--env ENV | --subjects S,S]

Follows the bridge's events live, one line each (JSON lines with --json):
deploy results, status results and operator health by default. --from
replays history: all of it, the last event of each subject, the last 15m,
everything since an RFC 3339 time, or from a stream sequence (applied to each
stream watched). --env follows one environment's results and health. Each
stream is read in order; events of different streams are interleaved as they
arrive. --count and --for bound the watch; otherwise
it runs until Ctrl-C.
` + clientHelp

func runWatch(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("watch")
	var cf clientFlags
	cf.register(fs, c, 0)
	from := fs.String("from", "new", "start at `new|all|last|DURATION|TIME|SEQ`: new events only, all stored, each subject's last, DURATION ago (15m), since an RFC 3339 TIME, or from a stream SEQuence")
	subjects := fs.String("subjects", "deploy.result.>,status.result.>,operator.health.>", "comma-separated `subjects` to follow")
	env := fs.String("env", "", "follow only this environment `ID`'s deploy results, status results and health")
	count := fs.Int("count", 0, "stop after `N` events (0: no limit)")
	dur := fs.Duration("for", 0, "stop after this long (0: until Ctrl-C)")
	if err := parseFlags(c, fs, watchUsage, args); err != nil {
		return err
	}
	start, err := parseFrom(*from, time.Now())
	if err != nil {
		return usageError("watch: %v", err)
	}
	if *env != "" {
		if !events.ValidEnvironmentID(*env) {
			return usageError("watch: --env %q is not an environment ID (1-64 of A-Z a-z 0-9 _ -)", *env)
		}
		*subjects = strings.Join([]string{events.DeployResultSubject(*env), events.StatusResultSubject(*env), events.HealthSubject(*env)}, ",")
	}
	var subs []string
	for _, s := range strings.Split(*subjects, ",") {
		if s = strings.TrimSpace(s); s != "" {
			subs = append(subs, s)
		}
	}
	if len(subs) == 0 {
		return usageError("watch: --subjects is empty")
	}
	bc, closeSession, err := cf.session("watch")
	if err != nil {
		return err
	}
	defer closeSession()
	wctx, cancel := cf.untilRefused(ctx)
	defer cancel()
	if *dur > 0 {
		wctx, cancel = context.WithTimeout(wctx, *dur)
		defer cancel()
	}
	out := make(chan watchItem, 64) // smooths bursts from the consumers; printing is the bottleneck
	if err := bc.watch(wctx, subs, start, out); err != nil {
		return err
	}
	p := palette{on: !cf.json && c.useColor(c.stdout)}
	if !cf.json && c.useColor(c.stderr) {
		fmt.Fprintf(c.stderr, "watching %s from %s (Ctrl-C to stop)\n", strings.Join(subs, ", "), *from)
	}
	n := 0
	for {
		select {
		case <-wctx.Done():
			return cf.refusal() // else Ctrl-C or --for: a watch ends well
		case w := <-out:
			if w.Err != nil {
				return cf.explain(watchError(w.Stream, w.Err))
			}
			if cf.json {
				if err := writeWatchedJSON(c.stdout, w); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(c.stdout, eventLine(p, w.Subject, w.Header, w.Data))
			}
			n++
			if *count > 0 && n >= *count {
				return nil
			}
		}
	}
}

// watchError explains a watch that failed: a missing stream, or NATS gone.
func watchError(stream string, err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("watch: stream %s not found (has a bridge started on this NATS?)", stream)
	}
	if isTimeout(err) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return withCode(exitTimeout, err)
	}
	return err
}

func writeWatchedJSON(w io.Writer, m watchItem) error {
	line := struct {
		Stream   string          `json:"stream"`
		Sequence uint64          `json:"seq"`
		Subject  string          `json:"subject"`
		Stored   time.Time       `json:"stored"`
		Event    json.RawMessage `json:"event,omitempty"`
		Raw      string          `json:"raw,omitempty"`
	}{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject, Stored: m.Stored}
	if json.Valid(m.Data) {
		line.Event = m.Data
	} else {
		line.Raw = string(m.Data)
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
