package events_test

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/events"
)

// A deploy request in binary mode: attributes in ce- headers (any case,
// percent-encoded), the data in the body.
func ExampleDecodeDeployRequest() {
	h := nats.Header{
		"ce-specversion": {"1.0"},
		"Ce-Id":          {"req-42"},
		"ce-source":      {"/master-service/eu%2D1"},
		"ce-type":        {events.TypeDeployRequest},
		"Content-Type":   {"application/json"},
	}
	body := []byte(`{"app": "my-app", "version": "v1.2.3", "deployments": [
		{"version": "v1.2.3", "percent": 0.2}, {"version": "v1.2.2", "percent": 0.8}]}`)

	env, req, err := events.DecodeDeployRequest("deploy.request.env-001", h, body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(env.ID, env.Environment, env.Source, env.Mode)
	for _, d := range req.Effective() {
		fmt.Println(d.Version, d.Percent)
	}
	// Output:
	// req-42 env-001 /master-service/eu-1 binary
	// v1.2.3 0.2
	// v1.2.2 0.8
}

// An invalid request that can still be answered: the error names the
// contract's code and the field, and the Envelope keeps the request's id.
func ExampleError() {
	body := []byte(`{"specversion": "1.0", "id": "req-7", "source": "/ms", "type": "io.boreas.deploy.request.v1",
		"data": {"app": "my-app", "version": "v2", "deployments": [{"version": "v2", "percent": 0.7}, {"version": "v1", "percent": 0.7}]}}`)
	env, _, err := events.DecodeDeployRequest("deploy.request.env-001", nil, body)
	var e *events.Error
	if errors.As(err, &e) {
		fmt.Println(env.ID, e.Code, e.Field)
	}
	fmt.Println(err)

	_, _, err = events.DecodeDeployRequest("deploy.request.env-001", nil, []byte(`{"app": "my-app"}`))
	fmt.Println(errors.Is(err, events.ErrUnidentifiable))
	// Output:
	// req-7 invalid_data deployments
	// invalid_data: deployments: percents add up to 1.4, more than 1
	// true
}
