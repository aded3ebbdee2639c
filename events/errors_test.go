package events

import (
	"fmt"
	"strings"
	"testing"
)

// Validation errors say in words what is allowed; none shows a regular
// expression or the schema library's wording.
func TestValidationErrorsInWords(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"version with a space", `{"app": "my-app", "version": "v 1.0"}`,
			`invalid_data: version: "v 1.0" is not a valid version: 1–128 printable characters, no spaces`},
		{"empty version", `{"app": "my-app", "version": ""}`,
			`invalid_data: version: "" is not a valid version: 1–128 printable characters, no spaces`},
		{"app with a slash", `{"app": "my/app", "version": "v1"}`,
			`invalid_data: app: "my/app" is not a valid app: 1–128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`},
		{"app starting with a dot", `{"app": ".hidden", "version": "v1"}`,
			`invalid_data: app: ".hidden" is not a valid app: 1–128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`},
		{"app too long", `{"app": "` + strings.Repeat("a", 129) + `", "version": "v1"}`,
			`invalid_data: app: "` + strings.Repeat("a", 129) + `" is not a valid app: 1–128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`},
		{"percent written as a percentage", `{"app": "a", "version": "v1", "deployments": [{"version": "v1", "percent": 20}, {"version": "v0", "percent": 80}]}`,
			`invalid_data: deployments[0].percent: 20 is not a valid percent: a fraction from 0 to 1, such as 0.2 for 20%`},
		{"negative percent", `{"app": "a", "version": "v1", "deployments": [{"version": "v1", "percent": -0.5}]}`,
			`invalid_data: deployments[0].percent: -0.5 is not a valid percent: a fraction from 0 to 1, such as 0.2 for 20%`},
		{"percent as a string", `{"app": "a", "version": "v1", "deployments": [{"version": "v1", "percent": "20%"}]}`,
			`invalid_data: deployments[0].percent: is a string, want a number`},
		{"app missing", `{"version": "v1"}`, `invalid_data: app: required`},
		{"app a number", `{"app": 7, "version": "v1"}`, `invalid_data: app: is a number, want a string`},
		{"deployments an object", `{"app": "a", "version": "v1", "deployments": {"v1": 1}}`,
			`invalid_data: deployments: is an object, want an array`},
		{"package a string", `{"app": "a", "version": "v1", "deployments": [{"version": "v1", "percent": 1, "package": "img"}]}`,
			`invalid_data: deployments[0].package: is a string, want an object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"specversion": "1.0", "id": "req-1", "source": "/t", "type": %q, "data": %s}`, TypeDeployRequest, tt.data)
			_, _, err := DecodeDeployRequest("deploy.request.env-001", nil, []byte(body))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

// DeployRequest.Validate finds what the bridge would reject, in the same words.
func TestDeployRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  DeployRequest
		want string // "" for valid
	}{
		{"valid", DeployRequest{App: "my-app", Version: "v1.0"}, ""},
		{"valid split", DeployRequest{App: "my-app", Version: "v2", Deployments: []Deployment{{Version: "v2", Percent: 0.2}, {Version: "v1", Percent: 0.8}}}, ""},
		{"version with a space", DeployRequest{App: "my-app", Version: "v 1.0"},
			`invalid_data: version: "v 1.0" is not a valid version: 1–128 printable characters, no spaces`},
		{"percent over 1", DeployRequest{App: "a", Version: "v1", Deployments: []Deployment{{Version: "v1", Percent: 20}, {Version: "v0", Percent: 80}}},
			`invalid_data: deployments[0].percent: 20 is not a valid percent: a fraction from 0 to 1, such as 0.2 for 20%`},
		{"sum over 1", DeployRequest{App: "a", Version: "v1", Deployments: []Deployment{{Version: "v1", Percent: 0.7}, {Version: "v0", Percent: 0.7}}},
			`invalid_data: deployments: percents add up to 1.4, more than 1`},
		{"version not among the deployments", DeployRequest{App: "a", Version: "v2", Deployments: []Deployment{{Version: "v1", Percent: 1}}},
			`invalid_data: version: "v2" is not among the deployments`},
		{"package not an object", DeployRequest{App: "a", Version: "v1", Deployments: []Deployment{{Version: "v1", Percent: 1, Package: []byte(`[1]`)}}},
			`invalid_data: deployments[0].package: is an array, want an object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate()\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
