// Package syncbuf is a goroutine-safe bytes.Buffer for tests that collect
// what servers and child processes write.
package syncbuf

import (
	"bytes"
	"sync"
)

type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Bytes returns a copy of everything written so far.
func (s *Buffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

func (s *Buffer) String() string { return string(s.Bytes()) }
