// Command operator-bridge runs the bridge between NATS JetStream deploy
// events and the deployment operators (serve, the default), a self-contained
// demo, a fake operator, and client commands that speak the wire contract
// (deploy, status, watch, envs, bench).
//
// main only wires: run does the work and is what the tests call end to end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/boreas/operator-bridge/operator"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	operator.Version = version // the User-Agent of operator calls
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// Exit codes scripts can trust.
const (
	exitOK      = 0
	exitFailed  = 1 // a runtime error, or a request that did not succeed
	exitUsage   = 2 // bad flags, arguments or configuration
	exitTimeout = 3 // a timeout, or NATS could not be reached
	// exitInterrupted: Ctrl-C stopped deploy's wait; the request stays
	// queued (128 + SIGINT, as shells report it).
	exitInterrupted = 130
)

// exitError carries an exit code with an error. A nil err means the command
// already said everything it had to say.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is a bad flag, argument or setting: exit code 2.
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// withCode gives err an exit code (err nil: exit silently with code).
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// exitCode reports err on stderr and returns the process's exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	code := exitFailed
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
	}
	fmt.Fprintf(stderr, "operator-bridge: %v\n", err)
	if code == exitUsage {
		fmt.Fprintf(stderr, "Run '%s' for usage.\n", helpFor(err.Error()))
	}
	return code
}

// helpFor is the help command for a usage error: the command's own --help
// when the message starts with its name ("deploy: ...").
func helpFor(msg string) string {
	name, _, _ := strings.Cut(msg, ":")
	for _, cmd := range commands() {
		if cmd.name == name && name != "serve" {
			return "operator-bridge " + name + " --help"
		}
	}
	return "operator-bridge help"
}

// requireFlags fails when any of the named flags of fs was left empty,
// naming the ones missing.
func requireFlags(fs *flag.FlagSet, names ...string) error {
	var missing, all []string
	for _, n := range names {
		all = append(all, "--"+n)
		if fs.Lookup(n).Value.String() == "" {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	verb := "is"
	if len(missing) > 1 {
		verb = "are"
	}
	return usageError("%s: %s %s missing (%s needs %s)", fs.Name(), andList(missing), verb, fs.Name(), andList(all))
}

// andList writes a, b and c.
func andList(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// nearest is the command name closest to name, if one is close enough to
// be a typo of it.
func nearest(name string) string {
	best, bestDist := "", 3
	for _, cmd := range commands() {
		if d := editDistance(strings.ToLower(name), cmd.name); d < bestDist {
			best, bestDist = cmd.name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// cli is what every command gets from run.
type cli struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the bridge (the default command)", runServe},
		{"demo", "embedded NATS, fake operators, the bridge and sample traffic", runDemo},
		{"deploy", "publish a deploy request and wait for its result", runDeploy},
		{"status", "show an app's versions, nodes and health in an environment", runStatus},
		{"watch", "follow deploy results, status results and health events", runWatch},
		{"envs", "list the registered environments, their operators and health", runEnvs},
		{"bench", "load-test a running bridge and check one result per request", runBench},
		{"fake-operator", "run a fake Kubernetes or physical-machine operator", runFakeOperator},
		{"version", "print the version", runVersion},
	}
}

// run runs the command named by args (serve when there is none).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c := &cli{getenv: getenv, stdout: stdout, stderr: stderr}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	switch name {
	case "help":
		if len(args) > 0 {
			return run(ctx, []string{args[0], "--help"}, getenv, stdout, stderr)
		}
		return runServe(ctx, c, []string{"--help"})
	case "--version":
		return runVersion(ctx, c, nil)
	}
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd.run(ctx, c, args)
		}
	}
	if near := nearest(name); near != "" {
		return usageError("unknown command %q: did you mean %q?", name, near)
	}
	return usageError("unknown command %q", name)
}

// selfCommand is how to run this program again from the shell it was
// started in, for the commands it suggests.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "operator-bridge"
	}
	onPath, _ := exec.LookPath("operator-bridge")
	_, err = os.Stat(filepath.Join("cmd", "operator-bridge"))
	return selfCommandFor(exe, onPath, err == nil)
}

// selfCommandFor is "go run ./cmd/operator-bridge" for an executable that
// go run built (in a go-build folder, gone when it ends; the package path
// outside the repository's root), "operator-bridge" when that is it on the
// PATH, else the executable's absolute path.
func selfCommandFor(exe, onPath string, atRepoRoot bool) string {
	if strings.Contains(filepath.ToSlash(exe), "/go-build") {
		if atRepoRoot {
			return "go run ./cmd/operator-bridge"
		}
		return "go run github.com/boreas/operator-bridge/cmd/operator-bridge"
	}
	if onPath != "" && sameFile(onPath, exe) {
		return "operator-bridge"
	}
	return exe
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// commandList is the list of commands for the usage text.
func commandList() string {
	var b strings.Builder
	for _, cmd := range commands() {
		fmt.Fprintf(&b, "  %-14s %s\n", cmd.name, cmd.summary)
	}
	return b.String()
}

const exitCodesHelp = `Exit codes:
  0    success
  1    failed: a runtime error, or the request did not succeed
  2    usage: bad flags, arguments or configuration
  3    timeout, or NATS could not be reached
  130  deploy: Ctrl-C stopped the wait; the request stays queued
`

// newFlagSet returns a flag set whose errors and help come back to run.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args; --help prints usage and the flags to stdout.
func parseFlags(c *cli, fs *flag.FlagSet, usage string, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(c.stdout, usage)
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if b.Len() == 0 {
			return flag.ErrHelp // a command without flags
		}
		fmt.Fprintln(c.stdout, "\nFlags:")
		// Show the --long form, which the usage texts use.
		fmt.Fprint(c.stdout, strings.ReplaceAll("\n"+b.String(), "\n  -", "\n  --")[1:])
		return flag.ErrHelp
	}
	if err != nil {
		return usageError("%s: %v", fs.Name(), err)
	}
	return nil
}

func runVersion(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet("version")
	if err := parseFlags(c, fs, "Usage: operator-bridge version\n", args); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "operator-bridge %s\n", version)
	return nil
}
