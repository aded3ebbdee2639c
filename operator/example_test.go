package operator_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

func ExampleClient() {
	srv := operatortest.NewServer(operator.Physical)
	defer srv.Close()

	c, err := operator.NewClient(operator.Physical, srv.URL, operator.ClientOptions{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	resp, err := c.Apply(ctx, operator.ApplyRequest{
		App:     "my-app",
		Version: "v1.2.3",
		Deployments: []operator.Deployment{
			{Version: "v1.2.3", Percent: 0.2},
			{Version: "v1.2.2", Percent: 0.8},
		},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Message)

	st, err := c.Status(ctx, "my-app")
	if err != nil {
		panic(err)
	}
	for _, v := range st.Versions {
		fmt.Printf("%s %.0f%% on %d nodes, health %d\n", v.Version, v.Percent*100, len(v.Nodes), v.Healthy.Level)
	}
	fmt.Println(srv.Requests()[0].Method, srv.Requests()[0].Path)
	// Output:
	// applied v1.2.3 to my-app
	// v1.2.3 20% on 3 nodes, health 100
	// v1.2.2 80% on 3 nodes, health 100
	// POST /api/deploy
}

func ExampleError() {
	srv := operatortest.NewServer(operator.Kubernetes)
	defer srv.Close()
	srv.SetFault(operatortest.Fault{FailTimes: 1}) // one 503, then success

	c := operator.NewK8sClient(srv.URL)
	_, err := c.Status(context.Background(), "my-app")
	var oe *operator.Error
	if errors.As(err, &oe) {
		fmt.Println(oe.Reason, oe.StatusCode, oe.Retryable(), oe.Reason.Code())
	}
	_, err = c.Status(context.Background(), "my-app")
	fmt.Println(err)
	// Output:
	// unavailable 503 true operator_unavailable
	// <nil>
}

func ExampleFactory() {
	k8s := operatortest.NewServer(operator.Kubernetes)
	defer k8s.Close()

	s := operator.DefaultSettings()
	s.K8sOperatorURL = k8s.URL
	f, err := operator.NewFactory(s)
	if err != nil {
		panic(err)
	}
	envs, err := operator.ParseEnvironments([]byte(`
- {id: env-001, name: prod-k8s, type: k8s}
- {id: env-002, name: dev, type: mock}
- {id: env-003, name: old, type: pm, active: false}
`), "environments.yaml")
	if err != nil {
		panic(err)
	}
	m, err := f.Build(envs)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, id := range []string{"env-001", "env-002", "env-003", "env-404"} {
		_, err := m.Apply(ctx, id, operator.ApplyRequest{App: "my-app", Version: "v2"})
		e, _ := m.Lookup(id)
		fmt.Printf("%s %s: %v\n", id, e.Environment.Type, err)
	}
	fmt.Println(k8s.Applied("my-app"))
	// Output:
	// env-001 kubernetes: <nil>
	// env-002 mock: <nil>
	// env-003 physical: environment inactive "env-003"
	// env-404 : unknown environment "env-404"
	// [v2]
}

func ExampleMockClient() {
	m := operator.NewMockClient()
	ctx := context.Background()
	m.Apply(ctx, operator.ApplyRequest{App: "shop", Version: "v7"})
	st, _ := m.Status(ctx, "shop")
	fmt.Println(st.App, st.Healthy.Level, st.Versions[0].Version, st.Versions[0].Percent, st.Versions[0].Nodes[0].Node)

	m.FailNext(1, operator.Unavailable) // for demos: the next call fails
	_, err := m.Status(ctx, "shop")
	fmt.Println(err)
	// Output:
	// shop 100 v7 1 shop-v7-1
	// status on mock operator mock: unavailable (HTTP 503): mock operator told to fail
}

// The README's tour of the package: the factory, the manager, an
// environment made in Go (a literal is an active environment) and a client.
func ExampleManager() {
	if err := useOperators(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// applied v1.2.3 to my-app
	// my-app v1.2.3 100
	// env-001: applied v1.2.3 to my-app
	// healthy
}

func useOperators(ctx context.Context) error {
	k8s := operatortest.NewServer(operator.Kubernetes) // a fake Kubernetes operator; yours has a URL
	defer k8s.Close()

	// operator.LoadSettings() reads the OPERATOR_BRIDGE_* and MASTER_OPERATOR_* variables.
	settings := operator.DefaultSettings()
	factory, err := operator.NewFactory(settings) // one pooled client per endpoint; USE_MOCK applied here
	if err != nil {
		return err
	}
	envs, err := operator.ParseEnvironments([]byte(`[{id: env-001, type: mock}]`), "inline") // or operator.LoadEnvironmentsFile("envs.yaml")
	if err != nil {
		return err
	}
	manager, err := factory.Build(envs) // InitializeOperators
	if err != nil {
		return err
	}

	// A literal is an active environment (Inactive: true turns it off).
	env := operator.Environment{ID: "env-9", Type: operator.Kubernetes, OperatorURL: k8s.URL}
	op, err := factory.New(env) // CreateOperatorFromEnvironment
	if err != nil {
		return err
	}
	manager.RegisterOperator(env, op) // or manager.Replace(entries) as a whole

	resp, err := manager.Apply(ctx, "env-9", operator.ApplyRequest{App: "my-app", Version: "v1.2.3"})
	var oe *operator.Error
	if errors.As(err, &oe) && oe.Retryable() { // 5xx, timeouts, refused: retryable; 4xx, success:false, garbage: not
		return fmt.Errorf("try again later: %w", err)
	} else if err != nil {
		return err
	}
	fmt.Println(resp.Message)

	st, err := manager.Status(ctx, "env-9", "my-app") // GetApplicationStatus
	if err != nil {
		return err
	}
	fmt.Println(st.App, st.Versions[0].Version, st.Healthy.Level)

	resp, err = manager.Apply(ctx, "env-001", operator.ApplyRequest{App: "my-app", Version: "v1.2.3"})
	if err != nil {
		return err
	}
	fmt.Println("env-001:", resp.Message)

	client := operator.NewK8sClient(k8s.URL) // or NewPMClient, NewMockClient, NewClient(kind, url, opts)
	if err := client.HealthCheck(ctx); err != nil {
		return err
	}
	fmt.Println("healthy")
	return nil
}
