// Command residency shows which parts of a running process's executable
// are resident (mapped into its page tables, hence in its RSS): per ELF
// section, and for .text per Go module or package of the function at each
// resident page. The file-backed part of a Go daemon's RSS is this; the
// kernel maps a file's pages around each one a process touches
// (fault-around, 64 kB), so what matters is how many places in the binary
// are ever run, not how much of it is.
//
//	go run ./bench/residency -pid $(pgrep -xo berth) [-top 30]
//
// It needs the executable's symbol table: build the daemon without -s
// (go build -tags nri_no_wasm,grpcnotrace -o /tmp/berth ./cmd/berth).
package main

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	pid := flag.Int("pid", 0, "the process to look at")
	top := flag.Int("top", 30, "packages to list")
	flag.Parse()
	if err := run(*pid, *top); err != nil {
		fmt.Fprintln(os.Stderr, "bench/residency:", err)
		os.Exit(1)
	}
}

func run(pid, top int) error {
	proc := fmt.Sprintf("/proc/%d", pid)
	exe, err := os.Readlink(proc + "/exe")
	if err != nil {
		return err
	}
	f, err := elf.Open(exe)
	if err != nil {
		return err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return fmt.Errorf("%s: %w (built with -s?)", exe, err)
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].Value < syms[j].Value })
	pages, err := residentPages(proc, exe)
	if err != nil {
		return err
	}
	bySection := map[string]int{}
	byPackage := map[string]int{}
	for _, addr := range pages {
		sec := sectionAt(f, addr)
		bySection[sec]++
		if sec == ".text" {
			// The function covering the middle of the page.
			if i := sort.Search(len(syms), func(i int) bool { return syms[i].Value > addr+2048 }) - 1; i >= 0 {
				byPackage[packageOf(syms[i].Name)]++
			}
		}
	}
	fmt.Printf("%s (pid %d): %d kB of the executable resident\n", exe, pid, len(pages)*4)
	for _, s := range f.Sections {
		if n := bySection[s.Name]; n > 0 {
			fmt.Printf("  %-14s %7d kB resident of %7d kB\n", s.Name, n*4, s.Size/1024)
		}
	}
	fmt.Printf("  .text by package (top %d):\n", top)
	for i, kv := range sortedByCount(byPackage) {
		if i == top {
			break
		}
		fmt.Printf("    %6d kB  %s\n", kv.n*4, kv.name)
	}
	return nil
}

// residentPages are the addresses of the executable's pages that are
// present in the process's page tables (/proc/PID/pagemap bit 63).
func residentPages(proc, exe string) ([]uint64, error) {
	maps, err := os.Open(proc + "/maps")
	if err != nil {
		return nil, err
	}
	defer maps.Close()
	pagemap, err := os.Open(proc + "/pagemap")
	if err != nil {
		return nil, err
	}
	defer pagemap.Close()
	var pages []uint64
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("maps: %q", sc.Text())
		}
		entries := make([]byte, (end-start)/4096*8)
		if _, err := pagemap.ReadAt(entries, int64(start/4096*8)); err != nil {
			return nil, fmt.Errorf("pagemap: %w", err)
		}
		for i := 0; i < len(entries); i += 8 {
			if binary.LittleEndian.Uint64(entries[i:])&(1<<63) != 0 {
				pages = append(pages, start+uint64(i/8)*4096)
			}
		}
	}
	return pages, sc.Err()
}

// sectionAt names the loaded section holding addr.
func sectionAt(f *elf.File, addr uint64) string {
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Addr <= addr && addr < s.Addr+s.Size {
			return s.Name
		}
	}
	return "(between sections)"
}

// packageOf reduces a Go symbol to its import path's first three elements
// (a module, mostly): "github.com/containerd/containerd/v2/core/...".
func packageOf(sym string) string {
	path := sym
	if i := strings.Index(path, ".("); i > 0 {
		path = path[:i]
	}
	slash := strings.LastIndex(path, "/")
	if dot := strings.Index(path[slash+1:], "."); dot > 0 {
		path = path[:slash+1+dot]
	}
	parts := strings.Split(path, "/")
	return strings.Join(parts[:min(len(parts), 3)], "/")
}

type count struct {
	name string
	n    int
}

func sortedByCount(m map[string]int) []count {
	var out []count
	for name, n := range m {
		out = append(out, count{name, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n > out[j].n || out[i].n == out[j].n && out[i].name < out[j].name })
	return out
}
