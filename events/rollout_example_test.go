package events_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/events"
)

// Deploy, then wait until the rollout has converged (or degraded, timed
// out, or was superseded), against a bridge with the mock operator, which
// reports the target at once.
func ExampleClient_WaitRollout() {
	url, stop := mockBridge()
	defer stop()
	nc, err := nats.Connect(url)
	if err != nil {
		panic(err)
	}
	defer nc.Close()

	client, err := events.NewClient(nc, events.WithSource("/master-service/eu-1"))
	if err != nil {
		panic(err)
	}
	defer client.Close()
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	since := time.Now().Add(-time.Minute) // a little before the request, allowing for clock skew
	res, err := client.Deploy(wctx, "env-001", events.DeployRequest{App: "my-app", Version: "v1.2.3",
		Deployments: []events.Deployment{{Version: "v1.2.3", Percent: 0.2}, {Version: "v1.2.2", Percent: 0.8}}})
	if err != nil || res.Outcome != events.Succeeded {
		fmt.Println(res.Outcome, err)
		return
	}
	final, err := client.WaitRollout(wctx, "env-001", res.RequestID, events.ProgressSince(since))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(final.Phase, final.Final)
	fmt.Println(final.Message)
	// Output:
	// converged true
	// converged: v1.2.3 at 20%, v1.2.2 at 80%, health at least 100
}
