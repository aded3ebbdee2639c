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

serve (the default command) is configured by environment variables
(docs/configuration.md explains each one). With
OPERATOR_BRIDGE_NATS_URL empty it starts an embedded NATS server with
JetStream, which the nats CLI and the client commands can reach. It logs to
stderr and stops gracefully on SIGINT or SIGTERM.

Commands:
%s
Run 'operator-bridge <command> --help' for a command's flags.

Environment variables of serve:
`

func runServe(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("serve")
	usage := fmt.Sprintf(serveUsage, commandList())
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, usage)
			printConfigUsage(c.stdout)
			fmt.Fprint(c.stdout, "\nOPERATOR_BRIDGE_* names win over the MASTER_OPERATOR_* aliases when both are set.\n\n"+exitCodesHelp)
			return err
		}
		return usageError("serve: %v", err)
	}
	if fs.NArg() > 0 {
		return usageError("serve: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadServeConfig()
	if err != nil {
		return err
	}
	settings, err := operator.LoadSettings()
	if err != nil {
		return usageError("%v", err)
	}
	level, _ := parseLogLevel(cfg.LogLevel)
	log := c.newLogger(c.stderr, level, cfg.LogFormat)
	tuneGC(c.getenv)
	return serve(ctx, cfg, settings, log)
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
func serve(ctx context.Context, cfg serveConfig, settings operator.Settings, log *slog.Logger) error {
	factory, err := operator.NewFactory(settings)
	if err != nil {
		return usageError("%v", err)
	}

	// Both addresses are checked before anything starts.
	if cfg.HTTPAddr != "" {
		if err := checkListen(cfg.HTTPAddr); err != nil {
			return httpAddrError(cfg.HTTPAddr, err)
		}
	}
	urls := cfg.NATSURL
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
		log.Info("embedded NATS server started", "url", urls, "store_dir", cfg.EmbeddedNATSDir)
	}

	nc, err := connectServe(urls, natsAuth{
		Creds: cfg.NATSCreds, Nkey: cfg.NATSNkey, User: cfg.NATSUser, Password: cfg.NATSPassword,
		Token: cfg.NATSToken, TLSCA: cfg.NATSTLSCA, TLSCert: cfg.NATSTLSCert, TLSKey: cfg.NATSTLSKey,
	}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	log.Info("connected to NATS", "url", redactURL(nc.ConnectedUrl()), "server", nc.ConnectedServerName())

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b, err := bridge.New(nc, factory, bridge.Config{
		Instance:           cfg.Instance,
		Version:            semver(version),
		ExternalStreams:    !cfg.ManageStreams,
		Replicas:           cfg.Replicas,
		EnvironmentsFile:   cfg.EnvironmentsFile,
		EnvironmentsBucket: cfg.EnvironmentsBucket,
		OperatorTimeout:    cfg.OperatorTimeout,
		RetryWindow:        cfg.RetryWindow,
		HealthInterval:     cfg.HealthInterval,
		MaxInFlight:        cfg.MaxInFlight,
		RolloutTimeout:     cfg.RolloutTimeout,
		RolloutPoll:        cfg.RolloutPoll,
		RolloutGrace:       cfg.RolloutGrace,
		HTTPAddr:           cfg.HTTPAddr,
		Logger:             log,
		Registerer:         reg,
		Gatherer:           reg,
	})
	if err != nil {
		return usageError("%v", err)
	}
	log.Info("operator-bridge starting", "version", version, "instance", cfg.Instance,
		"use_mock", settings.UseMock, "environments_file", cfg.EnvironmentsFile,
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
