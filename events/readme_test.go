package events_test

import (
	"testing"

	"github.com/boreas/operator-bridge/internal/readme"
)

// The README's Go snippet of this package is publishDeploys, run by ExampleClient.
func TestREADMESnippet(t *testing.T) {
	readme.Check(t, "../README.md", "example_test.go", "publishDeploys")
}
