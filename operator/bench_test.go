package operator_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/boreas/operator-bridge/operator"
)

func BenchmarkClientApply(b *testing.B) {
	for _, kind := range httpKinds {
		b.Run(string(kind), func(b *testing.B) {
			srv := newServer(b, kind)
			c := newClient(b, kind, srv.URL, operator.ClientOptions{})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Apply(b.Context(), canaryReq); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkClientStatus(b *testing.B) {
	for _, kind := range httpKinds {
		b.Run(string(kind), func(b *testing.B) {
			srv := newServer(b, kind)
			c := newClient(b, kind, srv.URL, operator.ClientOptions{})
			if _, err := c.Apply(b.Context(), canaryReq); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Status(b.Context(), "my-app"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkClientStatusParallel(b *testing.B) {
	srv := newServer(b, operator.Kubernetes)
	c := newClient(b, operator.Kubernetes, srv.URL, operator.ClientOptions{})
	if _, err := c.Apply(b.Context(), canaryReq); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Status(b.Context(), "my-app"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkManagerLookup is the route lookup of every request, in tables of
// 1,000 to 100,000 environments: "mix" looks up 4 of them in turn (make
// bench's traffic), "spread" strides through the whole table (every lookup a
// cache miss). Neither should grow with the table beyond the cache misses.
func BenchmarkManagerLookup(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		m := operator.NewManager()
		entries := make([]operator.Entry, n)
		ids := make([]string, n)
		mock := operator.NewMockClient()
		for i := range entries {
			ids[i] = fmt.Sprintf("env-%06d", i)
			entries[i] = operator.Entry{Environment: operator.Environment{ID: ids[i]}, Operator: mock}
		}
		m.Replace(entries)
		for _, c := range []struct {
			name string
			next func(i int) string
		}{
			{"mix", func(i int) string { return ids[(i%4)*(n/4)] }},
			{"spread", func(i int) string { return ids[(i*7919)%n] }},
		} {
			b.Run(fmt.Sprintf("%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := m.Lookup(c.next(i)); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// environmentsDoc is an environments file of n Kubernetes environments on
// 10 operator endpoints, as JSON or YAML.
func environmentsDoc(n int, yaml bool) []byte {
	var b bytes.Buffer
	if !yaml {
		b.WriteString("[\n")
	}
	for i := range n {
		if yaml {
			fmt.Fprintf(&b, "- id: env-%06d\n  name: env %d\n  type: kubernetes\n  operator_url: http://op-%d.example:8081\n", i, i, i%10)
			continue
		}
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `  {"id": "env-%06d", "name": "env %d", "type": "kubernetes", "operator_url": "http://op-%d.example:8081"}`, i, i, i%10)
	}
	if !yaml {
		b.WriteString("\n]\n")
	}
	return b.Bytes()
}

// BenchmarkParseEnvironments is reading an environments file at start: JSON
// of 1,000 and 100,000 environments, and YAML of 100,000.
func BenchmarkParseEnvironments(b *testing.B) {
	for _, c := range []struct {
		n    int
		yaml bool
	}{{1_000, false}, {100_000, false}, {100_000, true}} {
		format := "json"
		if c.yaml {
			format = "yaml"
		}
		data := environmentsDoc(c.n, c.yaml)
		b.Run(fmt.Sprintf("%s/%d", format, c.n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				envs, err := operator.ParseEnvironments(data, "envs")
				if err != nil || len(envs) != c.n {
					b.Fatalf("%d environments, %v", len(envs), err)
				}
			}
		})
	}
}

// BenchmarkFactoryBuild is making the operators and the manager of 1,000
// and 100,000 environments, on 10 endpoints or each on an endpoint of its
// own (a path of one of 10 hosts): "first" with a new factory, as at start,
// "again" with the factory that built them before, as at each change of the
// environments bucket.
func BenchmarkFactoryBuild(b *testing.B) {
	for _, own := range []bool{false, true} {
		for _, n := range []int{1_000, 100_000} {
			envs, err := operator.ParseEnvironments(environmentsDoc(n, false), "envs")
			if err != nil {
				b.Fatal(err)
			}
			where := "10-endpoints"
			if own {
				where = "own-endpoints"
				for i := range envs {
					envs[i].OperatorURL += "/" + envs[i].ID
				}
			}
			for _, again := range []bool{false, true} {
				name := fmt.Sprintf("%s/%d/first", where, n)
				if again {
					name = fmt.Sprintf("%s/%d/again", where, n)
				}
				b.Run(name, func(b *testing.B) {
					newFactory := func() *operator.Factory {
						f, err := operator.NewFactory(operator.DefaultSettings())
						if err != nil {
							b.Fatal(err)
						}
						return f
					}
					f := newFactory()
					b.ReportAllocs()
					for b.Loop() {
						if !again {
							b.StopTimer()
							f = newFactory()
							b.StartTimer()
						}
						m, err := f.Build(envs)
						if err != nil || m.Len() != n {
							b.Fatalf("%d environments, %v", m.Len(), err)
						}
					}
				})
			}
		}
	}
}
