package api

import (
	"bytes"
	"io"
	"sync"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	big := bytes.Repeat([]byte("x"), MaxFramePayload+10)
	if err := fw.Write(FrameStdout, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := fw.Write(FrameStderr, big); err != nil { // split in two frames
		t.Fatal(err)
	}
	if err := fw.WriteResize(80, 24); err != nil {
		t.Fatal(err)
	}
	if err := fw.WriteExit(-1); err != nil {
		t.Fatal(err)
	}
	rbuf := make([]byte, MaxFramePayload)
	var stderr []byte
	for _, want := range []byte{FrameStdout, FrameStderr, FrameStderr, FrameResize, FrameExit} {
		kind, p, err := ReadFrame(&buf, rbuf)
		if err != nil || kind != want {
			t.Fatalf("frame %q: got %q, %v", want, kind, err)
		}
		switch kind {
		case FrameStdout:
			if string(p) != "hello" {
				t.Errorf("stdout %q", p)
			}
		case FrameStderr:
			stderr = append(stderr, p...)
		case FrameResize:
			if w, h, err := ParseResize(p); err != nil || w != 80 || h != 24 {
				t.Errorf("resize %d×%d, %v", w, h, err)
			}
		case FrameExit:
			if code, err := ParseExit(p); err != nil || code != -1 {
				t.Errorf("exit %d, %v", code, err)
			}
		}
	}
	if !bytes.Equal(stderr, big) {
		t.Errorf("split frame reassembled to %d bytes, want %d", len(stderr), len(big))
	}
	if _, _, err := ReadFrame(&buf, rbuf); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

func TestReadFrameRefusesOversize(t *testing.T) {
	hdr := []byte{FrameStdin, 0xff, 0xff, 0xff, 0xff}
	if _, _, err := ReadFrame(bytes.NewReader(hdr), make([]byte, MaxFramePayload)); err == nil {
		t.Fatal("a 4 GiB frame was accepted")
	}
}

// Frames written from several goroutines never interleave.
func TestFrameWriterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fw.Write(FrameStdout, bytes.Repeat([]byte{byte('a' + i)}, 100))
			}
		})
	}
	wg.Wait()
	rbuf := make([]byte, MaxFramePayload)
	for n := 0; ; n++ {
		_, p, err := ReadFrame(&buf, rbuf)
		if err == io.EOF {
			if n != 800 {
				t.Fatalf("%d frames, want 800", n)
			}
			return
		}
		if err != nil || len(p) != 100 || !bytes.Equal(p, bytes.Repeat(p[:1], 100)) {
			t.Fatalf("frame %d torn: %q, %v", n, p, err)
		}
	}
}
