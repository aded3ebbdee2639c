package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// envPrefix is the prefix of every configuration variable (docs/configuration.md).
const envPrefix = "OPERATOR_BRIDGE_"

// serveConfig is the configuration of serve: every variable of docs/configuration.md.
// The tags carry the full variable names, so envconfig never falls back to
// an unprefixed name. The operator settings (K8S_OPERATOR_URL ... OPERATOR_TLS_CA)
// are listed here for --help and checked here, but they are read by
// operator.LoadSettings, which also takes the MASTER_OPERATOR_* aliases.
type serveConfig struct {
	NATSURL            string `envconfig:"OPERATOR_BRIDGE_NATS_URL" desc:"NATS server URL(s), comma-separated; empty starts an embedded NATS server with JetStream"`
	EmbeddedNATSListen string `envconfig:"OPERATOR_BRIDGE_EMBEDDED_NATS_LISTEN" default:"127.0.0.1:4222" desc:"where the embedded NATS server listens (the nats CLI and the client commands connect there)"`
	EmbeddedNATSDir    string `envconfig:"OPERATOR_BRIDGE_EMBEDDED_NATS_DIR" desc:"JetStream storage of the embedded NATS server"`

	NATSCreds    string `envconfig:"OPERATOR_BRIDGE_NATS_CREDS" desc:"NATS credentials file (JWT and nkey seed)"`
	NATSNkey     string `envconfig:"OPERATOR_BRIDGE_NATS_NKEY" desc:"NATS nkey seed file"`
	NATSUser     string `envconfig:"OPERATOR_BRIDGE_NATS_USER" desc:"NATS user name"`
	NATSPassword string `envconfig:"OPERATOR_BRIDGE_NATS_PASSWORD" desc:"NATS password"`
	NATSToken    string `envconfig:"OPERATOR_BRIDGE_NATS_TOKEN" desc:"NATS token"`
	NATSTLSCA    string `envconfig:"OPERATOR_BRIDGE_NATS_TLS_CA" desc:"PEM file of the CAs trusted for TLS to NATS"`
	NATSTLSCert  string `envconfig:"OPERATOR_BRIDGE_NATS_TLS_CERT" desc:"client certificate (PEM) for TLS to NATS"`
	NATSTLSKey   string `envconfig:"OPERATOR_BRIDGE_NATS_TLS_KEY" desc:"client key (PEM) for TLS to NATS"`

	K8sOperatorURL  string        `envconfig:"OPERATOR_BRIDGE_K8S_OPERATOR_URL" default:"http://localhost:8081" desc:"default Kubernetes operator (alias MASTER_OPERATOR_K8S_OPERATOR_URL)"`
	PMOperatorURL   string        `envconfig:"OPERATOR_BRIDGE_PM_OPERATOR_URL" default:"http://localhost:8082" desc:"default physical-machine operator (alias MASTER_OPERATOR_PM_OPERATOR_URL)"`
	UseMock         bool          `envconfig:"OPERATOR_BRIDGE_USE_MOCK" default:"false" desc:"every environment uses the in-process mock operator (alias MASTER_OPERATOR_USE_MOCK)"`
	OperatorToken   string        `envconfig:"OPERATOR_BRIDGE_OPERATOR_TOKEN" desc:"bearer token sent on every operator call"`
	OperatorTLSCA   string        `envconfig:"OPERATOR_BRIDGE_OPERATOR_TLS_CA" desc:"PEM file of the CAs trusted for HTTPS operators"`
	OperatorTimeout time.Duration `envconfig:"OPERATOR_BRIDGE_OPERATOR_TIMEOUT" default:"10s" desc:"bound of one operator call"`

	EnvironmentsFile   string `envconfig:"OPERATOR_BRIDGE_ENVIRONMENTS_FILE" desc:"environments file (YAML or JSON)"`
	EnvironmentsBucket string `envconfig:"OPERATOR_BRIDGE_ENVIRONMENTS_BUCKET" default:"environments" desc:"key-value bucket of environments, watched live; set it empty to turn it off"`
	ManageStreams      bool   `envconfig:"OPERATOR_BRIDGE_MANAGE_STREAMS" default:"true" desc:"create or update the streams and the environments bucket at start"`
	Replicas           int    `envconfig:"OPERATOR_BRIDGE_REPLICAS" default:"1" desc:"replica count (1 to 5) of the streams and buckets the bridge creates, 3 on a 3-node cluster; existing ones keep theirs"`

	RetryWindow    time.Duration `envconfig:"OPERATOR_BRIDGE_RETRY_WINDOW" default:"10m" desc:"how long a deploy request is retried before it fails"`
	HealthInterval time.Duration `envconfig:"OPERATOR_BRIDGE_HEALTH_INTERVAL" default:"30s" desc:"period of operator.health events"`
	MaxInFlight    int           `envconfig:"OPERATOR_BRIDGE_MAX_IN_FLIGHT" default:"256" desc:"requests handled at once"`
	RolloutTimeout time.Duration `envconfig:"OPERATOR_BRIDGE_ROLLOUT_TIMEOUT" default:"10m" desc:"how long a rollout is followed before timed_out (a request's rollout.timeout overrides it)"`
	RolloutPoll    time.Duration `envconfig:"OPERATOR_BRIDGE_ROLLOUT_POLL" default:"5s" desc:"status calls per tracked rollout: one per this interval (with jitter)"`
	RolloutGrace   time.Duration `envconfig:"OPERATOR_BRIDGE_ROLLOUT_GRACE" default:"2m" desc:"how long a target version may stay below min_healthy before degraded"`
	HTTPAddr       string        `envconfig:"OPERATOR_BRIDGE_HTTP_ADDR" default:"127.0.0.1:8090" desc:"/healthz, /readyz and /metrics; empty serves nothing"`
	LogLevel       string        `envconfig:"OPERATOR_BRIDGE_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat      string        `envconfig:"OPERATOR_BRIDGE_LOG_FORMAT" default:"auto" desc:"auto (colour text on a terminal, JSON otherwise), text or json"`
	Instance       string        `envconfig:"OPERATOR_BRIDGE_INSTANCE" desc:"name of this replica in the source of its events"`
}

// loadServeConfig reads serveConfig from the process environment and fills
// the defaults that depend on the machine. Every error is a usage error.
func loadServeConfig() (serveConfig, error) {
	var cfg serveConfig
	if err := envconfig.Process("", &cfg); err != nil {
		return cfg, usageError("configuration: %v", err)
	}
	// envconfig cannot tell an empty variable from an unset one; for the
	// bucket, empty means "off".
	if v, ok := os.LookupEnv(envPrefix + "ENVIRONMENTS_BUCKET"); ok {
		cfg.EnvironmentsBucket = v
	}
	if cfg.EmbeddedNATSDir == "" {
		cfg.EmbeddedNATSDir = defaultDataDir()
	}
	if cfg.Instance == "" {
		cfg.Instance = defaultInstance()
	}
	var problems []string
	if _, err := parseLogLevel(cfg.LogLevel); err != nil {
		problems = append(problems, err.Error())
	}
	switch strings.ToLower(cfg.LogFormat) {
	case "auto", "text", "json":
	default:
		problems = append(problems, fmt.Sprintf("%sLOG_FORMAT=%q: want auto, text or json", envPrefix, cfg.LogFormat))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"OPERATOR_TIMEOUT", cfg.OperatorTimeout}, {"RETRY_WINDOW", cfg.RetryWindow}, {"HEALTH_INTERVAL", cfg.HealthInterval},
		{"ROLLOUT_TIMEOUT", cfg.RolloutTimeout}, {"ROLLOUT_POLL", cfg.RolloutPoll}, {"ROLLOUT_GRACE", cfg.RolloutGrace}} {
		if d.v <= 0 {
			problems = append(problems, fmt.Sprintf("%s%s=%s: must be positive", envPrefix, d.name, d.v))
		}
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		problems = append(problems, fmt.Sprintf("%sREPLICAS=%d: want 1 to 5", envPrefix, cfg.Replicas))
	}
	if cfg.MaxInFlight <= 0 {
		problems = append(problems, fmt.Sprintf("%sMAX_IN_FLIGHT=%d: must be positive", envPrefix, cfg.MaxInFlight))
	}
	if (cfg.NATSTLSCert == "") != (cfg.NATSTLSKey == "") {
		problems = append(problems, envPrefix+"NATS_TLS_CERT and "+envPrefix+"NATS_TLS_KEY go together")
	}
	if cfg.NATSURL != "" && cfg.NATSUser == "" && cfg.NATSPassword != "" {
		problems = append(problems, envPrefix+"NATS_PASSWORD is set without "+envPrefix+"NATS_USER")
	}
	if len(problems) > 0 {
		return cfg, usageError("configuration: %s", strings.Join(problems, "; "))
	}
	return cfg, nil
}

// defaultDataDir is where the embedded server keeps JetStream by default.
func defaultDataDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "operator-bridge", "jetstream")
	}
	return filepath.Join(".data", "jetstream")
}

func defaultInstance() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "operator-bridge"
}

// printConfigUsage lists every variable with its default and meaning.
func printConfigUsage(w io.Writer) {
	dynamic := map[string]string{
		envPrefix + "EMBEDDED_NATS_DIR": defaultDataDir(),
		envPrefix + "INSTANCE":          "host name (" + defaultInstance() + ")",
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	t := reflect.TypeFor[serveConfig]()
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("envconfig")
		def, ok := dynamic[name]
		if !ok {
			def = f.Tag.Get("default")
		}
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, def, f.Tag.Get("desc"))
	}
	tw.Flush()
}
