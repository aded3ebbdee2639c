package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestErrorCodes(t *testing.T) {
	retryable := map[ErrorCode]bool{
		CodeInvalidEvent: false, CodeInvalidData: false, CodeUnknownEnvironment: false, CodeEnvironmentInactive: false,
		CodeOperatorRejected: false, CodeOperatorInvalidResponse: false, CodeOperatorUnavailable: true,
		CodeOperatorTimeout: true, CodeSuperseded: false,
	}
	for code, want := range retryable {
		if code.Retryable() != want || !code.Valid() {
			t.Errorf("%s: Retryable %v Valid %v", code, code.Retryable(), code.Valid())
		}
	}
	if ErrorCode("boom").Valid() {
		t.Error("boom is a valid code")
	}
}

func TestEffective(t *testing.T) {
	r := DeployRequest{App: "a", Version: "v2"}
	if diff := cmp.Diff([]Deployment{{Version: "v2", Percent: 1}}, r.Effective()); diff != "" {
		t.Error(diff)
	}
	r.Deployments = []Deployment{{Version: "v2", Percent: 0.5}, {Version: "v1", Percent: 0.5}}
	if diff := cmp.Diff(r.Deployments, r.Effective()); diff != "" {
		t.Error(diff)
	}
}

func TestCodeOfAndInfo(t *testing.T) {
	e := &Error{Code: CodeInvalidData, Field: "app", Message: "missing"}
	wrapped := fmt.Errorf("handling: %w", e)
	if CodeOf(wrapped) != CodeInvalidData || CodeOf(errors.New("x")) != CodeInvalidEvent || CodeOf(nil) != "" {
		t.Errorf("CodeOf: %q %q %q", CodeOf(wrapped), CodeOf(errors.New("x")), CodeOf(nil))
	}
	if diff := cmp.Diff(&ErrorInfo{Code: CodeInvalidData, Message: "app: missing"}, e.Info()); diff != "" {
		t.Error(diff)
	}
	if e.Error() != "invalid_data: app: missing" {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestDataJSONNames(t *testing.T) {
	// Field names are the contract's snake_case; error is left out on success.
	b, err := json.Marshal(DeployResult{RequestID: "r", DurationMS: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"request_id":"r","environment":"","app":"","version":"","operator":"","outcome":"","success":false,"message":"","attempts":0,"duration_ms":3}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	b, err = json.Marshal(EnvironmentInfo{ID: "e"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"e","name":"","type":"","endpoint":"","active":false,"health":null}`; string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
