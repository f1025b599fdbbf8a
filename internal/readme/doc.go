// Package readme holds a test that keeps the README honest: every test it
// names as the enforcer of a promise must exist. It has no code.
package readme
