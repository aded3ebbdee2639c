package operator_test

import (
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
