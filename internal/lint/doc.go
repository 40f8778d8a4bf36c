// Package lint holds tests that enforce the repository's conventions
// (docs STYLE.md, DESIGN.md): the one-way import graph between ringkv's
// packages, the calls that are banned outside tests, and the packages that
// must stay sequential (their tests run without -race). It has no code of
// its own.
package lint
