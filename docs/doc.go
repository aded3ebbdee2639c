// Package docs holds operator-bridge's documentation as Markdown files:
// contract.md (the wire contract), operators.md (the operator HTTP API and
// environments), configuration.md, operations.md and reliability.md.
//
// It has no code. Its test checks that every relative link in the
// repository's Markdown files points at a file or folder inside the
// repository, and that every #anchor into a Markdown file names one of its
// headings.
package docs
