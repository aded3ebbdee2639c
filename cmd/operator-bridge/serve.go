package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/natsembed"
	"github.com/boreas/operator-bridge/operator"
)

const serveUsage = `Usage: operator-bridge [serve] [flags]
       operator-bridge <command> [flags]

operator-bridge consumes deploy requests and status queries from NATS
JetStream, calls the Kubernetes or physical-machine operator of each
environment, and publishes one result per request (see docs/contract.md).

serve (the default command) is configured by environment variables and an
optional YAML file (--config); variables win over the file, the file over
the defaults (docs/configuration.md explains each setting). With
OPERATOR_BRIDGE_NATS_URL empty it starts an embedded NATS server with
JetStream, which the nats CLI and the client commands can reach (in a
Kubernetes pod an empty OPERATOR_BRIDGE_NATS_URL is an error). It checks its
whole configuration before starting anything, logs to stderr and stops
gracefully on SIGINT or SIGTERM.

Commands:
%s
Run 'operator-bridge <command> --help' for a command's flags.

`

func runServe(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("serve")
	configPath := fs.String("config", "", "a YAML configuration `file` (default $"+configVar+")")
	printCfg := fs.Bool("print-config", false, "print the effective configuration and where each value came from, then exit")
	usage := fmt.Sprintf(serveUsage, commandList())
	if err := parseFlags(c, fs, usage, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, "\nEnvironment variables of serve, and their keys in the configuration file:\n")
			printConfigUsage(c.stdout)
			fmt.Fprint(c.stdout, "\nOPERATOR_BRIDGE_* names win over the MASTER_OPERATOR_* aliases when both are set.\n\n"+exitCodesHelp)
		}
		return err
	}
	if fs.NArg() > 0 {
		return usageError("serve: unexpected argument %q", fs.Arg(0))
	}
	path := *configPath
	if path == "" {
		path, _ = os.LookupEnv(configVar)
	}
	cfg, err := loadServeConfig(path, os.LookupEnv)
	if err != nil {
		return err
	}
	if *printCfg {
		printConfig(c.stdout, cfg, path)
	}
	plan, err := prepareServe(cfg)
	if err != nil || *printCfg {
		return err
	}
	level, _ := parseLogLevel(cfg.LogLevel)
	log := c.newLogger(c.stderr, level, cfg.LogFormat)
	tuneGC(c.getenv)
	return serve(ctx, plan, log)
}

// servePlan is a configuration checked before anything starts.
type servePlan struct {
	cfg      serveConfig
	settings operator.Settings
	factory  *operator.Factory
	envs     []operator.Environment // the environments file, read and checked
}

// prepareServe checks what the configuration names: the operators' CA file,
// the environments file and the NATS credentials files. Its errors are
// configuration errors (exit 2).
func prepareServe(cfg serveConfig) (servePlan, error) {
	p := servePlan{cfg: cfg, settings: operator.Settings{
		K8sOperatorURL: cfg.K8sOperatorURL,
		PMOperatorURL:  cfg.PMOperatorURL,
		UseMock:        cfg.UseMock,
		Token:          cfg.OperatorToken,
		TLSCA:          cfg.OperatorTLSCA,
		Timeout:        cfg.OperatorTimeout,
	}}
	var problems []string
	var err error
	if p.factory, err = operator.NewFactory(p.settings); err != nil {
		problems = append(problems, cfg.where(envPrefix+"OPERATOR_TLS_CA")+": "+err.Error())
	}
	if cfg.EnvironmentsFile != "" {
		if p.envs, err = operator.LoadEnvironmentsFile(cfg.EnvironmentsFile); err != nil {
			problems = append(problems, cfg.where(envPrefix+"ENVIRONMENTS_FILE")+": "+err.Error())
		}
	}
	if cfg.NATSURL != "" {
		if _, err := cfg.natsAuth().options(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return p, configError(problems)
	}
	return p, nil
}

func (c serveConfig) natsAuth() natsAuth {
	return natsAuth{
		Creds: c.NATSCreds, Nkey: c.NATSNkey, User: c.NATSUser, Password: c.NATSPassword,
		Token: c.NATSToken, TLSCA: c.NATSTLSCA, TLSCert: c.NATSTLSCert, TLSKey: c.NATSTLSKey,
	}
}

// tuneGC trades memory the bridge has to spare for CPU: the garbage
// collector runs at 200% heap growth instead of Go's 100%, within a soft
// limit of 256 MiB. GOGC and GOMEMLIMIT, when set, win.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
}

// serve runs the bridge until ctx ends.
func serve(ctx context.Context, plan servePlan, log *slog.Logger) error {
	cfg := plan.cfg
	// Both addresses are checked before anything starts.
	if cfg.HTTPAddr != "" {
		if err := checkListen(cfg.HTTPAddr); err != nil {
			return httpAddrError(cfg.HTTPAddr, err)
		}
	}
	urls, readyNote := cfg.NATSURL, ""
	if urls == "" {
		if err := os.MkdirAll(cfg.EmbeddedNATSDir, 0o750); err != nil {
			return fmt.Errorf("embedded NATS storage: %w", err)
		}
		if err := checkListen(cfg.EmbeddedNATSListen); err != nil {
			return fmt.Errorf("embedded NATS server (%sEMBEDDED_NATS_LISTEN=%s): %w", envPrefix, cfg.EmbeddedNATSListen,
				addrInUse(err, fmt.Sprintf("set %sEMBEDDED_NATS_LISTEN=127.0.0.1:4333, or %sNATS_URL=nats://%s to use the server listening there",
					envPrefix, envPrefix, cfg.EmbeddedNATSListen)))
		}
		ns, err := natsembed.Start(natsembed.Config{Listen: cfg.EmbeddedNATSListen, StoreDir: cfg.EmbeddedNATSDir})
		if err != nil {
			return err
		}
		defer ns.Stop()
		urls = ns.ClientURL()
		readyNote = "NATS: the embedded NATS server at " + urls + " (" + envPrefix + "NATS_URL is empty)"
		log.Info("embedded NATS server started ("+envPrefix+"NATS_URL is empty): the bridge reads requests from it alone, not from any other NATS",
			"url", urls, "store_dir", cfg.EmbeddedNATSDir)
	}

	nc, err := connectServe(urls, cfg.natsAuth(), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	log.Info("connected to NATS", "url", redactURL(nc.ConnectedUrl()), "server", nc.ConnectedServerName())

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tp, stopTracing, err := startTracing(ctx, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	b, err := bridge.New(nc, plan.factory, bridge.Config{
		Instance:           cfg.Instance,
		Version:            semver(version),
		ExternalStreams:    !cfg.ManageStreams,
		Replicas:           cfg.Replicas,
		EnvironmentsFile:   cfg.EnvironmentsFile,
		FileEnvironments:   plan.envs,
		EnvironmentsBucket: cfg.EnvironmentsBucket,
		OperatorTimeout:    cfg.OperatorTimeout,
		RetryWindow:        cfg.RetryWindow,
		HealthInterval:     cfg.HealthInterval,
		MaxInFlight:        cfg.MaxInFlight,
		RolloutTimeout:     cfg.RolloutTimeout,
		RolloutPoll:        cfg.RolloutPoll,
		RolloutGrace:       cfg.RolloutGrace,
		HTTPAddr:           cfg.HTTPAddr,
		PProf:              cfg.PProf,
		ReadyNote:          readyNote,
		OpsToken:           cfg.OpsToken,
		Logger:             log,
		Registerer:         reg,
		Gatherer:           reg,
		TracerProvider:     tp,
	})
	if err != nil {
		return usageError("%v", err)
	}
	log.Info("operator-bridge starting", "version", version, "instance", cfg.Instance,
		"use_mock", cfg.UseMock, "environments_file", cfg.EnvironmentsFile,
		"environments_bucket", cfg.EnvironmentsBucket, "http", cfg.HTTPAddr)
	if err := b.Run(ctx); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && cfg.HTTPAddr != "" {
			return httpAddrError(cfg.HTTPAddr, err) // taken since the check
		}
		return fmt.Errorf("bridge: %w", err)
	}
	if err := nc.Drain(); err != nil {
		log.Debug("nats drain", "err", err)
	}
	log.Info("operator-bridge stopped")
	return nil
}

// semverRE is the regular expression semver.org suggests (the micro
// service's check).
var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// semver maps a build version to a semantic version for the micro service:
// "v1.2.3" and "v1.2.3-4-gabcdef" lose the "v"; anything else (dev, a bare
// commit, a dirty tree) becomes 0.0.0-dev+<it, cleaned>.
func semver(v string) string {
	if s := strings.TrimPrefix(v, "v"); semverRE.MatchString(s) {
		return s
	}
	build := strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-', r == '.':
			return r
		}
		return '-'
	}, v)
	build = strings.Trim(strings.ReplaceAll(build, "..", "."), ".")
	if build == "" || build == "dev" {
		return "0.0.0-dev"
	}
	s := "0.0.0-dev+" + build
	if !semverRE.MatchString(s) {
		return "0.0.0-dev"
	}
	return s
}

// httpAddrError explains that the ops HTTP address cannot be listened on.
func httpAddrError(addr string, err error) error {
	return fmt.Errorf("ops HTTP server (%sHTTP_ADDR=%s): %w", envPrefix, addr,
		addrInUse(err, fmt.Sprintf("set %sHTTP_ADDR=127.0.0.1:8091, or set it empty to serve no /healthz, /readyz and /metrics", envPrefix)))
}

// addrInUse adds a way out to a listen error on an address that is taken.
func addrInUse(err error, wayOut string) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	return fmt.Errorf("%w (another process listens there, perhaps another operator-bridge: %s)", err, wayOut)
}

// checkListen fails at once when addr cannot be listened on (in use, say),
// which the embedded server would otherwise find out only after its ready
// timeout.
func checkListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}
