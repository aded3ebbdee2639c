package operator

import (
	"fmt"
	"slices"
	"strings"
)

// Kind is the type of an operator, as written in an environment record's
// "type" field. Use ParseKind to accept the aliases.
type Kind string

// The operator kinds of the contract.
const (
	Kubernetes Kind = "kubernetes" // alias "k8s"
	Physical   Kind = "physical"   // alias "pm"
	Mock       Kind = "mock"       // the in-process MockClient
)

// Routes are the paths of an HTTP operator's three calls. Status holds the
// prefix to which the path-escaped app name is appended.
type Routes struct {
	Apply  string // POST, e.g. "/api/apply"
	Status string // GET prefix, e.g. "/api/status/" + {app}
	Health string // GET, e.g. "/health"
}

// kindSpec is everything the package knows about one operator kind. Adding a
// new operator type means adding one row to kinds (see the package doc).
type kindSpec struct {
	kind    Kind
	aliases []string
	// routes of an HTTP operator; nil for an in-process operator.
	routes *Routes
	// defaultURL is the operator URL used when an environment has none.
	defaultURL func(Settings) string
}

// kinds is the table of every operator kind.
var kinds = []kindSpec{
	{
		kind:       Kubernetes,
		aliases:    []string{"k8s"},
		routes:     &Routes{Apply: "/api/apply", Status: "/api/status/", Health: "/health"},
		defaultURL: func(s Settings) string { return s.K8sOperatorURL },
	},
	{
		kind:       Physical,
		aliases:    []string{"pm"},
		routes:     &Routes{Apply: "/api/deploy", Status: "/api/app/", Health: "/health"},
		defaultURL: func(s Settings) string { return s.PMOperatorURL },
	},
	{
		kind: Mock,
	},
}

func lookupKind(k Kind) (kindSpec, bool) {
	for _, s := range kinds {
		if s.kind == k {
			return s, true
		}
	}
	return kindSpec{}, false
}

// ParseKind returns the kind named by s, ignoring case and surrounding
// spaces and accepting the aliases "k8s" and "pm". The error names the bad
// value and the accepted ones.
func ParseKind(s string) (Kind, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	for _, spec := range kinds {
		if v == string(spec.kind) || slices.Contains(spec.aliases, v) {
			return spec.kind, nil
		}
	}
	var names []string
	for _, spec := range kinds {
		names = append(append(names, string(spec.kind)), spec.aliases...)
	}
	return "", fmt.Errorf("unknown operator type %q (want one of %s)", s, strings.Join(names, ", "))
}

// RoutesFor returns the HTTP routes of kind, and false when kind is not an
// HTTP operator (Mock, or unknown).
func RoutesFor(kind Kind) (Routes, bool) {
	spec, ok := lookupKind(kind)
	if !ok || spec.routes == nil {
		return Routes{}, false
	}
	return *spec.routes, true
}

// String returns the kind's canonical name.
func (k Kind) String() string { return string(k) }
