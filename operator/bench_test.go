package operator_test

import (
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
