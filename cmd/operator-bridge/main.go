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
	"os/signal"
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
		fmt.Fprintln(stderr, "Run 'operator-bridge help' for usage.")
	}
	return code
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
	return usageError("unknown command %q", name)
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
  0  success
  1  failed: a runtime error, or the request did not succeed
  2  usage: bad flags, arguments or configuration
  3  timeout, or NATS could not be reached
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
