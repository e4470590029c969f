package api

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// FuzzFrameReader reads frames from arbitrary bytes, as the monitor reads a
// client's stream and the daemon the monitor's. ReadFrame must never panic
// or allocate for a frame: every payload lies in the caller's buffer, at
// most MaxFramePayload bytes, and a longer frame is refused. Then the same
// bytes, taken as a list of writes, go through a FrameWriter and must read
// back as the same frames: one per MaxFramePayload bytes of each write,
// kinds and payloads intact.
func FuzzFrameReader(f *testing.F) {
	// frame is a frame of kind and p; header its first 5 bytes alone.
	frame := func(kind byte, p []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{kind}, uint32(len(p))), p...)
	}
	header := func(kind byte, n int) []byte { return frame(kind, make([]byte, n))[:5] }
	var seed []byte
	seed = append(seed, frame(FrameStdout, []byte("hello"))...)
	seed = append(seed, frame(FrameResize, []byte{0, 80, 0, 24})...)
	seed = append(seed, frame(FrameExit, []byte{0xff, 0xff, 0xff, 0xff})...)
	for _, s := range [][]byte{
		nil,
		seed,
		frame(FrameStdinClose, nil),
		header(FrameStdin, 10),                   // payload missing
		append(header(FrameStdin, 10), "abc"...), // payload cut short
		{FrameStdout, 0, 0},                      // header cut short
		{FrameStdin, 0xff, 0xff, 0xff, 0xff},     // 4 GiB
		header(FrameError, MaxFramePayload+1),    // one byte too many
		append(frame(FrameStderr, []byte("abc")), "def"...),
		{'x', 255, 'i', 3, 'a', 'b', 'c', 'o', 0, 'e', 255},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		buf := make([]byte, MaxFramePayload)
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			kind, p, err := ReadFrame(r, buf)
			if err != nil {
				if (err == io.EOF) != (before == 0) {
					t.Fatalf("%v with %d bytes unread: io.EOF is for a stream ending between frames", err, before)
				}
				break
			}
			if len(p) > MaxFramePayload || (len(p) > 0 && &p[0] != &buf[0]) {
				t.Fatalf("payload of %d bytes outside the caller's buffer", len(p))
			}
			if consumed := before - r.Len(); consumed != 5+len(p) {
				t.Fatalf("frame of %d bytes consumed %d", len(p), consumed)
			}
			switch kind {
			case FrameExit:
				ParseExit(p)
			case FrameResize:
				ParseResize(p)
			}
		}

		// The round trip: data is a list of writes, each a kind byte, a
		// length byte n and n payload bytes (fewer at the end). The first
		// two times, n = 255 stands instead for a write of
		// 2*MaxFramePayload+1 copies of the next byte, which goes out as
		// three frames (only twice: an input must not cost gigabytes).
		type write struct {
			kind byte
			p    []byte
		}
		var writes []write
		for big := 0; len(data) >= 2; {
			kind, n := data[0], int(data[1])
			data = data[2:]
			var p []byte
			if n == 255 && big < 2 {
				big++
				p = bytes.Repeat(data[:min(len(data), 1)], 2*MaxFramePayload+1)
				n = 1
			} else {
				p = data[:min(len(data), n)]
			}
			data = data[min(len(data), n):]
			writes = append(writes, write{kind, p})
		}
		var stream bytes.Buffer
		fw := NewFrameWriter(&stream)
		for _, w := range writes {
			if err := fw.Write(w.kind, w.p); err != nil {
				t.Fatal(err)
			}
		}
		for i, w := range writes {
			rest := w.p
			for first := true; first || len(rest) > 0; first = false {
				kind, p, err := ReadFrame(&stream, buf)
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				n := min(len(rest), MaxFramePayload)
				if kind != w.kind || !bytes.Equal(p, rest[:n]) {
					t.Fatalf("write %d: frame %q of %d bytes, want %q of %d", i, kind, len(p), w.kind, n)
				}
				rest = rest[n:]
			}
		}
		if stream.Len() != 0 {
			t.Fatalf("%d bytes left after the last frame", stream.Len())
		}
	})
}
