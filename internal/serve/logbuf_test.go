package serve

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is a writer safe to read while the log writes to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestTheLogIsBufferedButWarningsAreNot: info lines reach the output together within the flush
// delay; a warning reaches it at once, with the lines before it.
func TestTheLogIsBufferedButWarningsAreNot(t *testing.T) {
	t.Parallel()
	out := &syncBuf{}
	log, _ := newLogger(out, Config{LogLevel: "info"})
	log.Info("request", "path", "/tasks/1")
	log.Info("request", "path", "/tasks/2")
	if got := out.String(); got != "" {
		t.Errorf("info lines were written one by one: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "msg=request") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the buffered lines never came out: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	log.Info("request", "path", "/tasks/3")
	log.Warn("store slow")
	if got := out.String(); !strings.Contains(got, "/tasks/3") || !strings.Contains(got, "store slow") {
		t.Errorf("a warning did not flush the log: %q", got)
	}
}
