package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/boreas/operator-bridge/operator"
)

// envPrefix is the prefix of every configuration variable (docs/configuration.md).
const envPrefix = "OPERATOR_BRIDGE_"

// configVar names the configuration file of serve (also serve --config).
const configVar = envPrefix + "CONFIG"

// serveConfig is the configuration of serve: every variable of docs/configuration.md
// but CONFIG. Each field's tags say where its value can come from:
//
//   - env: its variable;
//   - alias: the original operator client's variable, read when env is unset;
//   - file: its key in the configuration file, "section.key";
//   - default: its value when nothing sets it (EMBEDDED_NATS_DIR and
//     INSTANCE have defaults that depend on the machine);
//   - secret: never printed;
//   - desc: its meaning, for --help.
//
// A value comes from, in increasing precedence: the default, the file, the
// alias, the variable. A field's type decides how its text is read: string,
// bool, int or time.Duration.
type serveConfig struct {
	NATSURL            string `env:"OPERATOR_BRIDGE_NATS_URL" file:"nats.url" desc:"NATS server URL(s), comma-separated; empty starts an embedded NATS server with JetStream (an error in a Kubernetes pod)"`
	EmbeddedNATSListen string `env:"OPERATOR_BRIDGE_EMBEDDED_NATS_LISTEN" file:"nats.embedded_listen" default:"127.0.0.1:4222" desc:"where the embedded NATS server listens (the nats CLI and the client commands connect there)"`
	EmbeddedNATSDir    string `env:"OPERATOR_BRIDGE_EMBEDDED_NATS_DIR" file:"nats.embedded_dir" desc:"JetStream storage of the embedded NATS server"`

	NATSCreds    string `env:"OPERATOR_BRIDGE_NATS_CREDS" file:"nats.creds" desc:"NATS credentials file (JWT and nkey seed)"`
	NATSNkey     string `env:"OPERATOR_BRIDGE_NATS_NKEY" file:"nats.nkey" desc:"NATS nkey seed file"`
	NATSUser     string `env:"OPERATOR_BRIDGE_NATS_USER" file:"nats.user" desc:"NATS user name"`
	NATSPassword string `env:"OPERATOR_BRIDGE_NATS_PASSWORD" file:"nats.password" secret:"true" desc:"NATS password"`
	NATSToken    string `env:"OPERATOR_BRIDGE_NATS_TOKEN" file:"nats.token" secret:"true" desc:"NATS token"`
	NATSTLSCA    string `env:"OPERATOR_BRIDGE_NATS_TLS_CA" file:"nats.tls_ca" desc:"PEM file of the CAs trusted for TLS to NATS"`
	NATSTLSCert  string `env:"OPERATOR_BRIDGE_NATS_TLS_CERT" file:"nats.tls_cert" desc:"client certificate (PEM) for TLS to NATS"`
	NATSTLSKey   string `env:"OPERATOR_BRIDGE_NATS_TLS_KEY" file:"nats.tls_key" desc:"client key (PEM) for TLS to NATS"`

	K8sOperatorURL  string        `env:"OPERATOR_BRIDGE_K8S_OPERATOR_URL" alias:"MASTER_OPERATOR_K8S_OPERATOR_URL" file:"operator.k8s_operator_url" default:"http://localhost:8081" desc:"default Kubernetes operator"`
	PMOperatorURL   string        `env:"OPERATOR_BRIDGE_PM_OPERATOR_URL" alias:"MASTER_OPERATOR_PM_OPERATOR_URL" file:"operator.pm_operator_url" default:"http://localhost:8082" desc:"default physical-machine operator"`
	UseMock         bool          `env:"OPERATOR_BRIDGE_USE_MOCK" alias:"MASTER_OPERATOR_USE_MOCK" file:"operator.use_mock" default:"false" desc:"every environment uses the in-process mock operator"`
	OperatorToken   string        `env:"OPERATOR_BRIDGE_OPERATOR_TOKEN" file:"operator.token" secret:"true" desc:"bearer token sent on every operator call"`
	OperatorTLSCA   string        `env:"OPERATOR_BRIDGE_OPERATOR_TLS_CA" file:"operator.tls_ca" desc:"PEM file of the CAs trusted for HTTPS operators"`
	OperatorTimeout time.Duration `env:"OPERATOR_BRIDGE_OPERATOR_TIMEOUT" file:"operator.timeout" default:"10s" desc:"bound of one operator call"`

	EnvironmentsFile   string `env:"OPERATOR_BRIDGE_ENVIRONMENTS_FILE" file:"environments.file" desc:"environments file (YAML or JSON)"`
	EnvironmentsBucket string `env:"OPERATOR_BRIDGE_ENVIRONMENTS_BUCKET" file:"environments.bucket" default:"environments" desc:"key-value bucket of environments, watched live; set it empty to turn it off"`
	ManageStreams      bool   `env:"OPERATOR_BRIDGE_MANAGE_STREAMS" file:"jetstream.manage_streams" default:"true" desc:"create or update the streams and the environments bucket at start"`
	Replicas           int    `env:"OPERATOR_BRIDGE_REPLICAS" file:"jetstream.replicas" default:"1" desc:"replica count (1 to 5) of the streams and buckets the bridge creates, 3 on a 3-node cluster; existing ones keep theirs"`

	RetryWindow    time.Duration `env:"OPERATOR_BRIDGE_RETRY_WINDOW" file:"bridge.retry_window" default:"10m" desc:"how long a deploy request is retried before it fails"`
	HealthInterval time.Duration `env:"OPERATOR_BRIDGE_HEALTH_INTERVAL" file:"bridge.health_interval" default:"30s" desc:"period of operator.health events"`
	MaxInFlight    int           `env:"OPERATOR_BRIDGE_MAX_IN_FLIGHT" file:"bridge.max_in_flight" default:"256" desc:"requests handled at once"`
	Instance       string        `env:"OPERATOR_BRIDGE_INSTANCE" file:"bridge.instance" desc:"name of this replica in the source of its events"`

	HTTPAddr string `env:"OPERATOR_BRIDGE_HTTP_ADDR" file:"http.addr" default:"127.0.0.1:8090" desc:"the status page, /healthz, /readyz and /metrics (0.0.0.0:8090 in a container); empty serves nothing"`
	PProf    bool   `env:"OPERATOR_BRIDGE_PPROF" file:"http.pprof" default:"false" desc:"serve Go's profiles under /debug/pprof/ on the ops address"`
	OpsToken string `env:"OPERATOR_BRIDGE_OPS_TOKEN" file:"http.ops_token" secret:"true" desc:"when set, the ops address (the status page, /metrics, /debug/pprof/) needs Authorization: Bearer <token>; /healthz and /readyz stay open"`

	LogLevel  string `env:"OPERATOR_BRIDGE_LOG_LEVEL" file:"log.level" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `env:"OPERATOR_BRIDGE_LOG_FORMAT" file:"log.format" default:"auto" desc:"auto (colour text on a terminal, JSON otherwise), text or json"`

	// origins says where each value came from, by variable name.
	origins map[string]origin
}

// origin is where a setting's value came from.
type origin struct {
	kind string // "default", "file", "alias" or "variable"
	name string // the variable (default, variable), the alias, or the file
	key  string // the file's key
	line int    // the file's line
}

// String says where the value came from, for --print-config.
func (o origin) String() string {
	switch o.kind {
	case "file":
		return fmt.Sprintf("file %s:%d", o.name, o.line)
	case "alias":
		return "alias " + o.name
	}
	return o.kind
}

// label names the setting in an error: the variable read, or the file's
// line and key.
func (o origin) label() string {
	if o.kind == "file" {
		return fmt.Sprintf("%s:%d: %s", o.name, o.line, o.key)
	}
	return o.name
}

// configField is one field of serveConfig with its tags.
type configField struct {
	index                      int
	env, alias, key, def, desc string
	secret                     bool
	typ                        reflect.Type
}

func configFields() []configField {
	t := reflect.TypeFor[serveConfig]()
	var fs []configField
	for i := range t.NumField() {
		f := t.Field(i)
		env := f.Tag.Get("env")
		if env == "" {
			continue
		}
		fs = append(fs, configField{
			index: i, env: env, alias: f.Tag.Get("alias"), key: f.Tag.Get("file"),
			def: f.Tag.Get("default"), desc: f.Tag.Get("desc"), secret: f.Tag.Get("secret") == "true",
			typ: f.Type,
		})
	}
	return fs
}

// machineDefaults are the defaults that depend on the machine.
func machineDefaults() map[string]string {
	return map[string]string{
		envPrefix + "EMBEDDED_NATS_DIR": defaultDataDir(),
		envPrefix + "INSTANCE":          defaultInstance(),
	}
}

// configError lists every problem found in the configuration: a usage
// error (exit 2).
func configError(problems []string) error {
	if len(problems) == 1 {
		return usageError("configuration: %s", problems[0])
	}
	return usageError("configuration:\n  %s", strings.Join(problems, "\n  "))
}

// loadServeConfig reads the configuration of serve: the file at path (none
// when empty), then the variables, which lookup reads. Every value is
// checked; the error lists every problem, each naming the variable or the
// file's line and key.
func loadServeConfig(path string, lookup func(string) (string, bool)) (serveConfig, error) {
	cfg := serveConfig{origins: map[string]origin{}}
	var problems []string
	var file map[string]fileValue
	if path != "" {
		var err error
		if file, err = readConfigFile(path, configFields()); err != nil {
			// Report the file's problems with those of the variables.
			var ce configFileError
			if !errors.As(err, &ce) {
				return cfg, configError([]string{err.Error()})
			}
			problems = append(problems, ce...)
		}
	}
	machine := machineDefaults()
	v := reflect.ValueOf(&cfg).Elem()
	for _, f := range configFields() {
		raw, o := f.def, origin{kind: "default", name: f.env}
		if d, ok := machine[f.env]; ok {
			raw = d
		}
		if fv, ok := file[f.key]; ok {
			raw, o = fv.value, origin{kind: "file", name: path, key: f.key, line: fv.line}
		}
		// An empty variable sets a string to empty (ENVIRONMENTS_BUCKET
		// off, HTTP_ADDR serving nothing) and leaves any other kind alone.
		set := func(name string) bool {
			val, ok := lookup(name)
			return ok && (val != "" || f.typ.Kind() == reflect.String)
		}
		if f.alias != "" && set(f.alias) {
			raw, o = lookupValue(lookup, f.alias), origin{kind: "alias", name: f.alias}
		}
		if set(f.env) {
			raw, o = lookupValue(lookup, f.env), origin{kind: "variable", name: f.env}
		}
		cfg.origins[f.env] = o
		if err := setConfigValue(v.Field(f.index), raw); err != nil {
			problems = append(problems, o.label()+": "+err.Error())
		}
	}
	problems = append(problems, cfg.check(lookup)...)
	if len(problems) > 0 {
		return cfg, configError(problems)
	}
	return cfg, nil
}

func lookupValue(lookup func(string) (string, bool), name string) string {
	v, _ := lookup(name)
	return v
}

// setConfigValue reads raw into v by v's type.
func setConfigValue(v reflect.Value, raw string) error {
	s := strings.TrimSpace(raw)
	switch v.Interface().(type) {
	case string:
		v.SetString(raw)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		v.SetBool(b)
	case int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", raw)
		}
		v.SetInt(int64(n))
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
				return fmt.Errorf("%q is not a duration (write %ss)", raw, s)
			}
			return fmt.Errorf("%q is not a duration (write it like 10s, 5m or 1h30m)", raw)
		}
		v.SetInt(int64(d))
	default:
		panic(fmt.Sprintf("config: no reader for %s", v.Type()))
	}
	return nil
}

// where names the setting of variable name as the problem reports it.
func (c *serveConfig) where(name string) string {
	if o, ok := c.origins[name]; ok {
		return o.label()
	}
	return name
}

// check returns the problems of values that read well but cannot work.
func (c *serveConfig) check(lookup func(string) (string, bool)) []string {
	var problems []string
	add := func(name, format string, args ...any) {
		problems = append(problems, c.where(envPrefix+name)+": "+fmt.Sprintf(format, args...))
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		add("LOG_LEVEL", "%v", err)
	}
	switch strings.ToLower(c.LogFormat) {
	case "auto", "text", "json":
	default:
		add("LOG_FORMAT", "%q: want auto, text or json", c.LogFormat)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"OPERATOR_TIMEOUT", c.OperatorTimeout}, {"RETRY_WINDOW", c.RetryWindow}, {"HEALTH_INTERVAL", c.HealthInterval}} {
		if d.v <= 0 {
			add(d.name, "%s is not positive", d.v)
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		add("REPLICAS", "%d is not between 1 and 5", c.Replicas)
	}
	if c.MaxInFlight <= 0 {
		add("MAX_IN_FLIGHT", "%d is not positive", c.MaxInFlight)
	}
	for _, u := range []struct {
		name string
		v    string
	}{{"K8S_OPERATOR_URL", c.K8sOperatorURL}, {"PM_OPERATOR_URL", c.PMOperatorURL}} {
		if _, err := operator.NewClient(operator.Kubernetes, u.v, operator.ClientOptions{}); err != nil {
			add(u.name, "%v", err)
		}
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			add("HTTP_ADDR", "%q is not host:port (0.0.0.0:8090, say)", c.HTTPAddr)
		}
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		problems = append(problems, c.where(envPrefix+"NATS_TLS_CERT")+" and "+c.where(envPrefix+"NATS_TLS_KEY")+" go together: set both or neither")
	}
	if c.NATSURL != "" && c.NATSUser == "" && c.NATSPassword != "" {
		add("NATS_PASSWORD", "set without %s", c.where(envPrefix+"NATS_USER"))
	}
	if c.NATSURL == "" {
		if host, _ := lookup("KUBERNETES_SERVICE_HOST"); host != "" {
			add("NATS_URL", "empty in a Kubernetes pod (KUBERNETES_SERVICE_HOST is set): the embedded NATS server would read nothing from your NATS cluster; set %sNATS_URL to its address (nats://nats:4222, say)", envPrefix)
		} else if _, _, err := net.SplitHostPort(c.EmbeddedNATSListen); err != nil {
			add("EMBEDDED_NATS_LISTEN", "%q is not host:port", c.EmbeddedNATSListen)
		}
	}
	return problems
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

// printConfigUsage lists every variable with its file key, default and
// meaning.
func printConfigUsage(w io.Writer) {
	machine := machineDefaults()
	machine[envPrefix+"INSTANCE"] = "host name (" + machine[envPrefix+"INSTANCE"] + ")"
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tFILE KEY\tDEFAULT\tMEANING")
	fmt.Fprintf(tw, "  %s\t\t(empty)\ta YAML configuration file (also --config); variables win over it\n", configVar)
	for _, f := range configFields() {
		def, ok := machine[f.env]
		if !ok {
			def = f.def
		}
		if def == "" {
			def = "(empty)"
		}
		desc := f.desc
		if f.alias != "" {
			desc += " (alias " + f.alias + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", f.env, f.key, def, desc)
	}
	tw.Flush()
}

// printConfig writes the effective configuration: each setting's value
// (secrets redacted, user information cut from URLs) and where it came from.
func printConfig(w io.Writer, cfg serveConfig, path string) {
	if path != "" {
		fmt.Fprintf(w, "configuration file: %s\n", path)
	} else {
		fmt.Fprintf(w, "configuration file: none (--config or %s)\n", configVar)
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tFILE KEY\tVALUE\tFROM")
	v := reflect.ValueOf(cfg)
	for _, f := range configFields() {
		val := fmt.Sprint(v.Field(f.index).Interface())
		if d, ok := v.Field(f.index).Interface().(time.Duration); ok {
			val = shortDuration(d)
		}
		switch {
		case f.secret && val != "":
			val = "(redacted)"
		case val == "":
			val = "(empty)"
		case f.env == envPrefix+"NATS_URL":
			val = redactURL(val)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.env, f.key, val, cfg.origins[f.env])
	}
	tw.Flush()
}

// shortDuration writes d without zero units: 10m, not 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
