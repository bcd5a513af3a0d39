package localrun

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Output streams a device's script writes, each kept whole on disk.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// safeElement reports whether s can be used as one path element under the data directory: the
// domain's local id rule, which keeps every id a name that cannot climb out.
func safeElement(s string) bool { return task.ValidLocalID(s) }

// outputDir is where a device's full output is kept: DataDir/output/<task>/<device>.
func (r *Runner) outputDir(taskID, deviceID string) string {
	return filepath.Join(r.cfg.DataDir, "output", taskID, deviceID)
}

// workDir is a device's working directory: DataDir/work/<task>/<device>.
func (r *Runner) workDir(taskID, deviceID string) string {
	return filepath.Join(r.cfg.DataDir, "work", taskID, deviceID)
}

// OpenOutput opens the full stdout or stderr ("stdout" or "stderr") that a device's script
// wrote, which may be longer than the inline copy reported with the device. It can be read
// while the script still runs. It returns a task.CodeNotFound error when the device never
// started here or its output is gone, and task.CodeInvalid for an unknown stream.
func (r *Runner) OpenOutput(taskID, deviceID, stream string) (io.ReadCloser, error) {
	if stream != StreamStdout && stream != StreamStderr {
		return nil, task.Errorf(task.CodeInvalid, "unknown output stream %q: use %q or %q", stream, StreamStdout, StreamStderr)
	}
	if !safeElement(taskID) || !safeElement(deviceID) {
		return nil, task.Errorf(task.CodeNotFound, "no %s output for device %s of task %s", stream, deviceID, taskID)
	}
	f, err := os.Open(filepath.Join(r.outputDir(taskID, deviceID), stream))
	if errors.Is(err, fs.ErrNotExist) {
		// A stream's file is made at its first byte: a device that started here (its working
		// directory says so) and has none wrote nothing there.
		if _, werr := os.Stat(r.workDir(taskID, deviceID)); werr == nil {
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, task.Errorf(task.CodeNotFound, "no %s output for device %s of task %s", stream, deviceID, taskID)
	}
	if err != nil {
		return nil, fmt.Errorf("localrun: open %s of %s/%s: %w", stream, taskID, deviceID, err)
	}
	return f, nil
}

// FollowOutput opens a device's output to be read while its script writes it, for a follow
// (httpapi.OutputFollower): the file grows under the reader, which returns io.EOF at its
// current end and more after that once more is written. A stream with no file yet, whose
// script has written nothing so far, is followed all the same: its reader opens the file once
// the first byte has made it (see capture).
func (r *Runner) FollowOutput(_ context.Context, taskID, deviceID, stream string) (io.ReadCloser, error) {
	f, err := r.OpenOutput(taskID, deviceID, stream)
	if err != nil {
		return nil, err
	}
	if _, ok := f.(*os.File); ok {
		return f, nil
	}
	return &laterFile{path: filepath.Join(r.outputDir(taskID, deviceID), stream)}, nil
}

// laterFile reads a file that may not exist yet: until it does, it is empty.
type laterFile struct {
	path string
	f    *os.File
}

func (l *laterFile) Read(p []byte) (int, error) {
	if l.f == nil {
		f, err := os.Open(l.path)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		l.f = f
	}
	return l.f.Read(p)
}

func (l *laterFile) Close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

// inline reads the first limit characters of a script's output, the way the devices endpoint
// shows them, and reports whether the output holds more. Bytes that are not UTF-8 count as one
// character each and read as U+FFFD, so the copy is always valid text.
func inline(f io.Reader, limit int) (string, bool, error) {
	br := bufio.NewReader(f)
	var b strings.Builder
	for range limit {
		r, _, err := br.ReadRune()
		if err == io.EOF {
			return b.String(), false, nil
		}
		if err != nil {
			return b.String(), false, err
		}
		b.WriteRune(r)
	}
	_, err := br.ReadByte()
	if err == io.EOF {
		return b.String(), false, nil
	}
	return b.String(), err == nil, err
}

// inlineFile is inline of the output file at path.
func inlineFile(path string, limit int) (string, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	return inline(f, limit)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
