package localrun

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// captureGrace is how long a script's output is still read once its process group and cgroup
// have been killed: only a process that escaped both can still hold the pipe, and what it
// writes after that is not the device's output.
const captureGrace = time.Second

// capture collects one output stream of a script through a pipe: the first bytes in memory,
// for the device's inline copy, and everything in the device's output file, which is created
// when the first byte arrives. A script that writes nothing costs no file: creating two files
// and a directory for each device was most of the cost of running many short scripts, where
// each file-system call costs as much as starting the script.
type capture struct {
	path  string
	keep  int // bytes kept in memory: enough for the inline copy's characters
	log   *slog.Logger
	read  *os.File
	write *os.File // the script's end; the server closes its copy once the script has it
	done  chan struct{}

	// Set by the reading goroutine, read after done is closed.
	head []byte
	more bool // bytes came beyond head
}

// newCapture makes the pipe of one stream whose file is path and whose inline copy has limit
// characters.
func newCapture(path string, limit int, log *slog.Logger) (*capture, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &capture{path: path, keep: 4*limit + 1, log: log, read: r, write: w, done: make(chan struct{})}, nil
}

// start reads the pipe until the script and whatever it started close it.
func (c *capture) start() {
	go func() {
		defer close(c.done)
		defer c.read.Close()
		var file *os.File
		defer func() {
			if file != nil {
				file.Close()
			}
		}()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.read.Read(buf)
			if n > 0 {
				c.keepHead(buf[:n])
				if file == nil {
					file = c.create()
				}
				if file != nil {
					if _, werr := file.Write(buf[:n]); werr != nil {
						c.log.Warn("writing a script's output failed", "path", c.path, "err", werr)
						file.Close()
						file = nil
					}
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
					c.log.Warn("reading a script's output failed", "path", c.path, "err", err)
				}
				return
			}
		}
	}()
}

// keepHead keeps the first c.keep bytes of the stream.
func (c *capture) keepHead(p []byte) {
	room := c.keep - len(c.head)
	if room <= 0 {
		c.more = true
		return
	}
	if len(p) > room {
		c.more = true
		p = p[:room]
	}
	c.head = append(c.head, p...)
}

// create creates the output file, and its directory, at the first byte.
func (c *capture) create() *os.File {
	if err := mkdir(filepath.Dir(c.path)); err != nil {
		c.log.Warn("creating a script's output directory failed", "path", c.path, "err", err)
		return nil
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		c.log.Warn("creating a script's output file failed", "path", c.path, "err", err)
		return nil
	}
	return f
}

// finish waits for the stream's end, at most captureGrace more, and returns its inline copy of
// limit characters and whether the stream held more.
func (c *capture) finish(limit int) (string, bool) {
	_ = c.read.SetReadDeadline(time.Now().Add(captureGrace))
	<-c.done
	s, cut, _ := inline(bytes.NewReader(c.head), limit)
	return s, cut || c.more
}

// abandon closes both ends of a pipe whose script never started.
func (c *capture) abandon() {
	c.write.Close()
	c.read.Close()
}
