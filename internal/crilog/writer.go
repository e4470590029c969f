// Package crilog writes container output in the CRI log format kubelet
// reads:
//
//	<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\n
//
// F marks the end of a line; P a piece of a line that was split because it
// exceeded the maximum line size, or an unterminated tail at end of stream.
package crilog

import (
	"bufio"
	"errors"
	"io"
	"sync"
	"time"
)

// MaxLineSize bounds one log entry's content; longer lines are split into P
// entries, so a container printing without newlines cannot grow memory.
const MaxLineSize = 16 * 1024

// Stream names as written in the log.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// File is a log destination shared by a container's streams. Reopen swaps
// the underlying writer (log rotation) without losing a line.
type File struct {
	mu  sync.Mutex
	w   io.WriteCloser // guarded by mu
	buf []byte         // guarded by mu; reused entry buffer
	now func() time.Time
}

// NewFile writes entries to w.
func NewFile(w io.WriteCloser) *File { return &File{w: w, now: time.Now} }

// Swap replaces the destination and closes the old one.
func (f *File) Swap(w io.WriteCloser) error {
	f.mu.Lock()
	old := f.w
	f.w = w
	f.mu.Unlock()
	return old.Close()
}

// Close closes the destination.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w.Close()
}

func (f *File) entry(stream string, partial bool, content []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	tag := "F"
	if partial {
		tag = "P"
	}
	b := f.buf[:0]
	b = f.now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, ' ')
	b = append(b, tag...)
	b = append(b, ' ')
	b = append(b, content...)
	b = append(b, '\n')
	f.buf = b
	_, err := f.w.Write(b)
	return err
}

// Copy reads r until EOF and writes its lines to f as stream entries. It
// returns nil at EOF. Write errors are returned only after r is drained, so
// a full disk never blocks the container on a full pipe.
func (f *File) Copy(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, MaxLineSize)
	var writeErr error
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			writeErr = errors.Join(writeErr, f.entry(stream, false, line[:len(line)-1]))
		case errors.Is(err, bufio.ErrBufferFull):
			writeErr = errors.Join(writeErr, f.entry(stream, true, line))
		case errors.Is(err, io.EOF):
			if len(line) > 0 {
				writeErr = errors.Join(writeErr, f.entry(stream, true, line))
			}
			return writeErr
		default:
			if len(line) > 0 {
				writeErr = errors.Join(writeErr, f.entry(stream, true, line))
			}
			return errors.Join(writeErr, err)
		}
	}
}
