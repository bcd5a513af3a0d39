package serve

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// logFlushDelay is how long an info line may wait in the log's buffer.
const logFlushDelay = 50 * time.Millisecond

// logBufferSize is the buffer of the server's log; a full buffer is written at once.
const logBufferSize = 64 << 10

// bufferedLog gathers the server's log lines and writes them together, within logFlushDelay:
// the server logs every request, and one write system call per line, each under the log's
// lock, cost a status read more than answering it. A warning or an error is written at once,
// with everything before it (see flushOnWarn), so that what explains a failure is never left
// in the buffer.
type bufferedLog struct {
	mu      sync.Mutex
	w       *bufio.Writer
	pending bool // a flush is scheduled
}

func newBufferedLog(w io.Writer) *bufferedLog {
	return &bufferedLog{w: bufio.NewWriterSize(w, logBufferSize)}
}

// Write implements io.Writer; each call is one whole line from the log handler.
func (b *bufferedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.w.Write(p)
	if !b.pending && b.w.Buffered() > 0 {
		b.pending = true
		time.AfterFunc(logFlushDelay, func() { _ = b.Flush() })
	}
	return n, err
}

// Flush writes what the buffer holds.
func (b *bufferedLog) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = false
	return b.w.Flush()
}

// flushOnWarn writes the log at once after each record of level warn or above.
type flushOnWarn struct {
	slog.Handler
	log *bufferedLog
}

func (h flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		_ = h.log.Flush()
	}
	return err
}

func (h flushOnWarn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushOnWarn{h.Handler.WithAttrs(attrs), h.log}
}

func (h flushOnWarn) WithGroup(name string) slog.Handler {
	return flushOnWarn{h.Handler.WithGroup(name), h.log}
}
