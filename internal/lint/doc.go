// Package lint holds tests that enforce the repository's conventions
// (docs STYLE.md, DESIGN.md): the one-way import graph between ringkv's
// packages, and the calls that are banned outside tests. It has no code of
// its own.
package lint
