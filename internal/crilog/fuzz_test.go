package crilog

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// FuzzCopy copies arbitrary output through File.Copy, fed in reads of at
// most chunk bytes (0: all at once). Every entry written must parse as a
// CRI log line, "<RFC3339Nano> <stdout|stderr> <P|F> <content>", with at
// most MaxLineSize bytes of content; and kubelet's reassembly of the
// contents (P pieces joined, F ending a line) must give back the output.
func FuzzCopy(f *testing.F) {
	for _, s := range []string{
		"", "hello\n", "hello\n\nworld\n", "tail", "\n", "\r\n", "a b c\td\n",
		"2026-01-02T03:04:05Z stdout F fake\n", "\x00\xff\n",
		strings.Repeat("x", MaxLineSize-1) + "\n",
		strings.Repeat("x", MaxLineSize) + "\n",
		strings.Repeat("x", MaxLineSize+1) + "\n" + strings.Repeat("y", 2*MaxLineSize),
	} {
		f.Add([]byte(s), uint16(0), false)
		f.Add([]byte(s), uint16(7), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16, stderr bool) {
		stream := Stdout
		if stderr {
			stream = Stderr
		}
		var out buffer
		lf := NewFile(&out)
		var r io.Reader = bytes.NewReader(data)
		if chunk > 0 {
			r = &chunkReader{data: data, n: int(chunk)}
		}
		if err := lf.Copy(stream, r); err != nil {
			t.Fatalf("Copy: %v", err)
		}
		log := out.Bytes()
		if len(log) > 0 && log[len(log)-1] != '\n' {
			t.Fatalf("log does not end with a newline: %q", log)
		}
		var got []byte
		for n, line := range bytes.SplitAfter(log, []byte("\n")) {
			if len(line) == 0 {
				break // after the last newline
			}
			ts, rest, ok1 := bytes.Cut(line[:len(line)-1], []byte(" "))
			s, rest, ok2 := bytes.Cut(rest, []byte(" "))
			tag, content, ok3 := bytes.Cut(rest, []byte(" "))
			if !ok1 || !ok2 || !ok3 {
				t.Fatalf("entry %d %q: not <time> <stream> <tag> <content>", n, line)
			}
			if _, err := time.Parse(time.RFC3339Nano, string(ts)); err != nil {
				t.Errorf("entry %d %q: timestamp: %v", n, line, err)
			}
			if string(s) != stream {
				t.Errorf("entry %d %q: stream %q, want %q", n, line, s, stream)
			}
			if len(content) > MaxLineSize {
				t.Errorf("entry %d: %d bytes of content, more than %d", n, len(content), MaxLineSize)
			}
			got = append(got, content...)
			switch string(tag) {
			case "F":
				got = append(got, '\n')
			case "P":
			default:
				t.Fatalf("entry %d %q: tag %q", n, line, tag)
			}
		}
		if !bytes.Equal(got, data) {
			t.Errorf("reassembled log differs from the output:\n got %q\nwant %q", got, data)
		}
	})
}

// chunkReader returns at most n bytes per Read, as a pipe may.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.data)
	r.data = r.data[k:]
	return k, nil
}
