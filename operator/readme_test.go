package operator_test

import (
	"testing"

	"github.com/boreas/operator-bridge/internal/readme"
)

// The README's Go snippet of this package is useOperators, run by ExampleManager.
func TestREADMESnippet(t *testing.T) {
	readme.Check(t, "../README.md", "example_test.go", "useOperators")
}
