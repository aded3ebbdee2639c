package operator

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// SettingsPrefix is the prefix of the environment variables of Settings.
const SettingsPrefix = "OPERATOR_BRIDGE"

// Settings are the operator settings of docs/configuration.md, read from
// OPERATOR_BRIDGE_* environment variables by LoadSettings.
type Settings struct {
	// K8sOperatorURL is the Kubernetes operator of environments without an
	// operator_url. Alias: MASTER_OPERATOR_K8S_OPERATOR_URL.
	K8sOperatorURL string `envconfig:"K8S_OPERATOR_URL" default:"http://localhost:8081"`
	// PMOperatorURL is the physical-machine operator of environments without
	// an operator_url. Alias: MASTER_OPERATOR_PM_OPERATOR_URL.
	PMOperatorURL string `envconfig:"PM_OPERATOR_URL" default:"http://localhost:8082"`
	// UseMock gives every environment the in-process mock operator.
	// Alias: MASTER_OPERATOR_USE_MOCK.
	UseMock bool `envconfig:"USE_MOCK" default:"false"`
	// Token is sent as a bearer token on every operator call.
	Token string `envconfig:"OPERATOR_TOKEN"`
	// TLSCA is a PEM file of the CAs trusted for HTTPS operators; empty
	// means the system roots.
	TLSCA string `envconfig:"OPERATOR_TLS_CA"`
	// Timeout bounds one operator call.
	Timeout time.Duration `envconfig:"OPERATOR_TIMEOUT" default:"10s"`
}

// DefaultSettings returns the settings used when no variable is set.
func DefaultSettings() Settings {
	return Settings{
		K8sOperatorURL: "http://localhost:8081",
		PMOperatorURL:  "http://localhost:8082",
		Timeout:        DefaultTimeout,
	}
}

// settingVars lists each setting's variable (after the prefix), its alias
// from the original master-service (if any), and how to set it from a value.
var settingVars = []struct {
	name  string
	alias string
	set   func(s *Settings, v string) error
	reset func(s, def *Settings)
}{
	{"K8S_OPERATOR_URL", "MASTER_OPERATOR_K8S_OPERATOR_URL",
		func(s *Settings, v string) error { s.K8sOperatorURL = v; return nil },
		func(s, d *Settings) { s.K8sOperatorURL = d.K8sOperatorURL }},
	{"PM_OPERATOR_URL", "MASTER_OPERATOR_PM_OPERATOR_URL",
		func(s *Settings, v string) error { s.PMOperatorURL = v; return nil },
		func(s, d *Settings) { s.PMOperatorURL = d.PMOperatorURL }},
	{"USE_MOCK", "MASTER_OPERATOR_USE_MOCK",
		func(s *Settings, v string) (err error) { s.UseMock, err = strconv.ParseBool(v); return err },
		func(s, d *Settings) { s.UseMock = d.UseMock }},
	{"OPERATOR_TOKEN", "", nil, func(s, d *Settings) { s.Token = d.Token }},
	{"OPERATOR_TLS_CA", "", nil, func(s, d *Settings) { s.TLSCA = d.TLSCA }},
	{"OPERATOR_TIMEOUT", "", nil, func(s, d *Settings) { s.Timeout = d.Timeout }},
}

// LoadSettings reads the settings from the OPERATOR_BRIDGE_* environment
// variables. MASTER_OPERATOR_K8S_OPERATOR_URL, MASTER_OPERATOR_PM_OPERATOR_URL
// and MASTER_OPERATOR_USE_MOCK are accepted as aliases; when both a variable
// and its alias are set, the OPERATOR_BRIDGE_ one wins. Unprefixed names
// (USE_MOCK, OPERATOR_TIMEOUT, ...) are ignored. The result is validated.
func LoadSettings() (Settings, error) {
	var s Settings
	if err := envconfig.Process(SettingsPrefix, &s); err != nil {
		return Settings{}, fmt.Errorf("operator settings: %w", err)
	}
	// envconfig falls back to a field's unprefixed tag name; the contract
	// knows only the prefixed names and the MASTER_OPERATOR_ aliases.
	def := DefaultSettings()
	used := make(map[string]string) // variable name -> the variable actually read
	for _, v := range settingVars {
		used[v.name] = SettingsPrefix + "_" + v.name
		if _, ok := os.LookupEnv(SettingsPrefix + "_" + v.name); ok {
			continue
		}
		if val, ok := os.LookupEnv(v.alias); ok && v.alias != "" {
			if err := v.set(&s, val); err != nil {
				return Settings{}, fmt.Errorf("operator settings: %s=%q: %w", v.alias, val, err)
			}
			used[v.name] = v.alias
			continue
		}
		v.reset(&s, &def)
	}
	if err := s.validate(used); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// Validate checks the operator URLs and the timeout. It does not read the
// CA file; NewFactory does.
func (s Settings) Validate() error { return s.validate(nil) }

// validate names each problem by its variable: used[name], else the
// prefixed name.
func (s Settings) validate(used map[string]string) error {
	name := func(n string) string {
		if v, ok := used[n]; ok {
			return v
		}
		return SettingsPrefix + "_" + n
	}
	var errs []error
	if _, err := parseOperatorURL(s.K8sOperatorURL); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name("K8S_OPERATOR_URL"), err))
	}
	if _, err := parseOperatorURL(s.PMOperatorURL); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name("PM_OPERATOR_URL"), err))
	}
	if s.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("%s: %s is not positive", name("OPERATOR_TIMEOUT"), s.Timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("operator settings: %w", err)
	}
	return nil
}
