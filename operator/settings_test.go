package operator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
)

func TestLoadSettings(t *testing.T) {
	def := operator.DefaultSettings()
	with := func(f func(s *operator.Settings)) operator.Settings {
		s := def
		f(&s)
		return s
	}
	tests := []struct {
		name string
		env  map[string]string
		want operator.Settings
	}{
		{"defaults", nil, def},
		{"prefixed", map[string]string{
			"OPERATOR_BRIDGE_K8S_OPERATOR_URL": "http://k8s:1",
			"OPERATOR_BRIDGE_PM_OPERATOR_URL":  "http://pm:2",
			"OPERATOR_BRIDGE_USE_MOCK":         "true",
			"OPERATOR_BRIDGE_OPERATOR_TOKEN":   "tok",
			"OPERATOR_BRIDGE_OPERATOR_TLS_CA":  "/etc/ca.pem",
			"OPERATOR_BRIDGE_OPERATOR_TIMEOUT": "250ms",
		}, operator.Settings{K8sOperatorURL: "http://k8s:1", PMOperatorURL: "http://pm:2", UseMock: true, Token: "tok", TLSCA: "/etc/ca.pem", Timeout: 250 * time.Millisecond}},
		{"master aliases", map[string]string{
			"MASTER_OPERATOR_K8S_OPERATOR_URL": "http://old-k8s:1",
			"MASTER_OPERATOR_PM_OPERATOR_URL":  "http://old-pm:2",
			"MASTER_OPERATOR_USE_MOCK":         "true",
		}, with(func(s *operator.Settings) {
			s.K8sOperatorURL, s.PMOperatorURL, s.UseMock = "http://old-k8s:1", "http://old-pm:2", true
		})},
		{"prefixed wins over alias", map[string]string{
			"MASTER_OPERATOR_K8S_OPERATOR_URL": "http://old-k8s:1",
			"OPERATOR_BRIDGE_K8S_OPERATOR_URL": "http://new-k8s:1",
			"MASTER_OPERATOR_USE_MOCK":         "true",
			"OPERATOR_BRIDGE_USE_MOCK":         "false",
			"MASTER_OPERATOR_PM_OPERATOR_URL":  "http://old-pm:2",
		}, with(func(s *operator.Settings) { s.K8sOperatorURL, s.PMOperatorURL = "http://new-k8s:1", "http://old-pm:2" })},
		{"unprefixed names ignored", map[string]string{
			"USE_MOCK":         "true",
			"K8S_OPERATOR_URL": "http://stray:1",
			"OPERATOR_TIMEOUT": "1h",
			"OPERATOR_TOKEN":   "stray",
		}, def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := operator.LoadSettings()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadSettingsErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad alias bool", map[string]string{"MASTER_OPERATOR_USE_MOCK": "maybe"}, "MASTER_OPERATOR_USE_MOCK"},
		{"bad bool", map[string]string{"OPERATOR_BRIDGE_USE_MOCK": "maybe"}, "OPERATOR_BRIDGE_USE_MOCK"},
		{"bad duration", map[string]string{"OPERATOR_BRIDGE_OPERATOR_TIMEOUT": "soon"}, "OPERATOR_BRIDGE_OPERATOR_TIMEOUT"},
		{"negative timeout", map[string]string{"OPERATOR_BRIDGE_OPERATOR_TIMEOUT": "-1s"}, "OPERATOR_BRIDGE_OPERATOR_TIMEOUT"},
		{"bad url", map[string]string{"OPERATOR_BRIDGE_PM_OPERATOR_URL": "pm-operator:8082"}, "OPERATOR_BRIDGE_PM_OPERATOR_URL"},
		{"bad alias url", map[string]string{"MASTER_OPERATOR_K8S_OPERATOR_URL": "ftp://k8s"}, "MASTER_OPERATOR_K8S_OPERATOR_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := operator.LoadSettings()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}
