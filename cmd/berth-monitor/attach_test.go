package main

import (
	"bytes"
	"io"
	"os"
	"syscall"
	"testing"
)

// A stdin_once stdin closes when the first client's stdin ends; later
// writes fail instead of blocking.
func TestContainerStdinOnce(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := &containerStdin{w: w, once: true}
	if err := s.write([]byte("echo hi\n")); err != nil {
		t.Fatal(err)
	}
	s.clientDone()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "echo hi\n" {
		t.Fatalf("container read %q, %v; want the line then end of file", got, err)
	}
	if err := s.write([]byte("more")); err == nil {
		t.Error("write after stdin_once closed it succeeded")
	}
}

// Without stdin_once a client going leaves stdin open for the next one.
func TestContainerStdinStaysOpen(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := &containerStdin{w: w}
	s.clientDone()
	if err := s.write([]byte("x")); err != nil {
		t.Fatalf("stdin closed after a client left: %v", err)
	}
	s.close()
}

type eioReader struct{ data []byte }

func (e *eioReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, syscall.EIO
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

// A pty master's EIO after the last slave closed reads as end of stream,
// and what was read reaches attached clients.
func TestTeeReaderEIOIsEOF(t *testing.T) {
	var hub attachHub
	tr := teeReader{r: &eioReader{data: []byte("out")}, hub: &hub}
	got, err := io.ReadAll(tr)
	if err != nil || !bytes.Equal(got, []byte("out")) {
		t.Fatalf("read %q, %v; want the output and a clean end", got, err)
	}
}
