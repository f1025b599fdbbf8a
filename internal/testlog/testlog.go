// Package testlog holds what tests use to read what a component logged:
// a buffer safe to write from many goroutines while a test reads it.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is a concurrency-safe bytes.Buffer.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
